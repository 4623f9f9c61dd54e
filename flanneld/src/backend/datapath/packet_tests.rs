use super::*;

/// A TCP/IPv4 packet from `src` to `dst` with `payload` bytes of payload and a valid header
/// checksum.
pub(crate) fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, ttl: u8, payload: usize) -> Vec<u8> {
    let total = 20 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = ttl;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum::of(&p[..20]);
    checksum::store(&mut p, 10, c);
    p
}

const NET: &str = "10.244.0.0/16";

#[test]
fn parse_rejects_what_is_not_a_whole_ipv4_packet() {
    let good = ipv4([10, 244, 1, 2], [10, 244, 2, 3], PROTO_TCP, 64, 30);
    assert_eq!(parse(&good).unwrap().total_len, 50);
    assert_eq!(parse(&[]), Err(DropReason::Truncated));
    assert_eq!(parse(&good[..19]), Err(DropReason::Truncated));
    assert_eq!(
        parse(&good[..49]),
        Err(DropReason::Truncated),
        "shorter than Total Length"
    );
    let mut v6 = good.clone();
    v6[0] = 0x60;
    assert_eq!(parse(&v6), Err(DropReason::NotIp));
    let mut bad_ihl = good.clone();
    bad_ihl[0] = 0x44;
    assert_eq!(parse(&bad_ihl), Err(DropReason::Truncated));
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(
        parse(&padded).unwrap().total_len,
        50,
        "padding is not part of the packet"
    );
}

#[test]
fn inbound_packets_lose_one_ttl_and_keep_a_valid_checksum() {
    let net: Ipv4Net = NET.parse().unwrap();
    let mut p = ipv4([10, 244, 2, 3], [10, 244, 1, 2], PROTO_TCP, 64, 10);
    p.extend_from_slice(&[0xee; 4]);
    assert_eq!(accept_inbound(&mut p, net), Ok(30));
    assert_eq!(p[8], 63);
    assert!(header_checksum_ok(&p));

    let mut last_hop = ipv4([10, 244, 2, 3], [10, 244, 1, 2], PROTO_TCP, 1, 10);
    assert_eq!(
        accept_inbound(&mut last_hop, net),
        Err(DropReason::TtlExpired)
    );
    let mut outside = ipv4([10, 244, 2, 3], [192, 168, 1, 1], PROTO_TCP, 64, 10);
    assert_eq!(
        accept_inbound(&mut outside, net),
        Err(DropReason::OutsideNetwork)
    );
}

#[test]
fn unknown_destinations_get_net_unreachable_quoting_the_packet() {
    let orig = ipv4([10, 244, 1, 5], [10, 244, 9, 9], PROTO_TCP, 64, 100);
    let mut out = [0u8; ICMP_ERROR_MAX];
    let own = Ipv4Addr::new(10, 244, 1, 0);
    let n = net_unreachable(&orig, own, &mut out).expect("an error is due");
    let icmp = &out[..n];
    let h = parse(icmp).unwrap();
    assert_eq!(
        (h.src, h.dst, h.ttl, h.protocol),
        (own, Ipv4Addr::new(10, 244, 1, 5), ICMP_TTL, PROTO_ICMP)
    );
    assert!(header_checksum_ok(icmp));
    assert_eq!((icmp[20], icmp[21]), (3, 0), "destination net unreachable");
    assert_eq!(checksum::of(&icmp[20..]), 0, "ICMP checksum");
    assert_eq!(
        &icmp[28..],
        &orig[..28],
        "header and 8 bytes of the original"
    );

    let echo = ipv4([10, 244, 1, 5], [10, 244, 9, 9], PROTO_ICMP, 64, 16);
    assert_eq!(
        net_unreachable(&echo, own, &mut out),
        None,
        "never about ICMP"
    );
    let mut fragment = orig.clone();
    fragment[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    assert_eq!(
        net_unreachable(&fragment, own, &mut out),
        None,
        "never about later fragments"
    );
    let tiny = ipv4([10, 244, 1, 5], [10, 244, 9, 9], PROTO_TCP, 64, 3);
    let n = net_unreachable(&tiny, own, &mut out).unwrap();
    assert_eq!(n, 28 + 23, "quotes no more than the packet has");
}

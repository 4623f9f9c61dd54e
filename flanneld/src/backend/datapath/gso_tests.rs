use super::*;
use crate::backend::datapath::packet::{header_checksum_ok, parse};

/// A TSO super-packet as the TUN device hands it over: TCP/IPv4 with a timestamp option,
/// `payload` bytes, `flags` on the TCP header.
pub(crate) fn super_packet(payload: usize, flags: u8) -> Vec<u8> {
    let tcp_len = 32;
    let total = 20 + tcp_len + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = PROTO_TCP;
    p[12..16].copy_from_slice(&[10, 244, 1, 2]);
    p[16..20].copy_from_slice(&[10, 244, 2, 3]);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..28].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    p[28..32].copy_from_slice(&77u32.to_be_bytes());
    p[32] = (tcp_len as u8 / 4) << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    p[40..52].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, b) in p[52..].iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    p
}

fn tcp_checksum_ok(p: &[u8]) -> bool {
    let src = [p[12], p[13], p[14], p[15]];
    let dst = [p[16], p[17], p[18], p[19]];
    let sum = checksum::add(
        checksum::pseudo_v4(src, dst, PROTO_TCP, (p.len() - 20) as u16),
        &p[20..],
    );
    checksum::fold(sum) == 0xffff
}

fn tso(mss: u16) -> VnetHdr {
    VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        hdr_len: 52,
        gso_size: mss,
        csum_start: 20,
        csum_offset: 16,
    }
}

#[test]
fn vnet_header_round_trips() {
    let h = tso(1400);
    let mut b = [0u8; VNET_HDR_LEN];
    h.write(&mut b);
    assert_eq!(VnetHdr::parse(&b), Some(h));
    assert_eq!(VnetHdr::parse(&b[..9]), None);
}

#[test]
fn super_packets_become_valid_mss_sized_packets_at_a_fixed_stride() {
    let mut p = super_packet(10_000, TCP_ACK | TCP_PSH | TCP_FIN);
    let payload = p[52..].to_vec();
    let mut out = vec![0u8; 3 * MAX_IP_PACKET];
    let Wire::Segmented {
        stride,
        count,
        total,
    } = to_wire(&tso(1400), &mut p, &mut out).unwrap()
    else {
        panic!("not segmented");
    };
    assert_eq!((stride, count, total), (1452, 8, 7 * 1452 + 52 + 200));
    let mut joined = Vec::new();
    for i in 0..count {
        let seg = &out[i * stride..(i * stride + stride).min(total)];
        let h = parse(seg).unwrap();
        assert_eq!(h.total_len, seg.len());
        assert!(header_checksum_ok(seg), "segment {i} IP checksum");
        assert!(tcp_checksum_ok(seg), "segment {i} TCP checksum");
        assert_eq!(u16::from_be_bytes([seg[4], seg[5]]), 0x1234 + i as u16);
        let seq = u32::from_be_bytes(seg[24..28].try_into().unwrap());
        assert_eq!(
            seq,
            0xffff_fff0u32.wrapping_add(1400 * i as u32),
            "sequence wraps"
        );
        let last = i + 1 == count;
        assert_eq!(
            seg[33],
            if last {
                TCP_ACK | TCP_PSH | TCP_FIN
            } else {
                TCP_ACK
            }
        );
        assert_eq!(&seg[40..52], &p[40..52], "options copied");
        joined.extend_from_slice(&seg[52..]);
    }
    assert_eq!(joined, payload);
}

#[test]
fn small_or_plain_packets_stay_in_place_with_checksums_completed() {
    let mut p = super_packet(500, TCP_ACK);
    let mut out = vec![0u8; 100];
    assert_eq!(
        to_wire(&tso(1400), &mut p, &mut out),
        Ok(Wire::InPlace { len: 552 })
    );
    assert!(tcp_checksum_ok(&p) && header_checksum_ok(&p));

    // NEEDS_CSUM without GSO: the field holds the pseudo-header sum.
    let mut q = super_packet(300, TCP_ACK);
    let pseudo = checksum::fold(checksum::pseudo_v4(
        [10, 244, 1, 2],
        [10, 244, 2, 3],
        PROTO_TCP,
        332,
    ));
    checksum::store(&mut q, 36, pseudo);
    let hdr = VnetHdr {
        gso_type: VNET_GSO_NONE,
        ..tso(0)
    };
    assert_eq!(
        to_wire(&hdr, &mut q, &mut out),
        Ok(Wire::InPlace { len: 352 })
    );
    assert!(tcp_checksum_ok(&q));
}

#[test]
fn malformed_offload_requests_are_refused() {
    let mut out = vec![0u8; 3 * MAX_IP_PACKET];
    let mut p = super_packet(5000, TCP_ACK);
    assert_eq!(
        to_wire(&tso(0), &mut p, &mut out),
        Err(DropReason::BadOffload)
    );
    let mut udp = super_packet(5000, TCP_ACK);
    udp[9] = 17;
    assert_eq!(
        to_wire(&tso(1400), &mut udp, &mut out),
        Err(DropReason::BadOffload)
    );
    let bad_type = VnetHdr {
        gso_type: 4,
        ..tso(1400)
    };
    assert_eq!(
        to_wire(&bad_type, &mut p, &mut out),
        Err(DropReason::BadOffload)
    );
    let far = VnetHdr {
        gso_type: VNET_GSO_NONE,
        csum_start: 9000,
        ..tso(1400)
    };
    assert_eq!(to_wire(&far, &mut p, &mut out), Err(DropReason::BadOffload));
    let mut small_out = vec![0u8; 4000];
    assert_eq!(
        to_wire(&tso(1400), &mut p, &mut small_out),
        Err(DropReason::BadOffload)
    );
}

#[test]
fn segments_coalesce_back_into_the_original_super_packet() {
    let original = super_packet(10_000, TCP_ACK | TCP_PSH);
    let mut p = original.clone();
    let mut out = vec![0u8; 3 * MAX_IP_PACKET];
    let Wire::Segmented {
        stride,
        count,
        total,
    } = to_wire(&tso(1400), &mut p, &mut out).unwrap()
    else {
        panic!("not segmented");
    };
    let segs: Vec<&[u8]> = (0..count)
        .map(|i| &out[i * stride..(i * stride + stride).min(total)])
        .collect();
    let first = TcpSegment::parse(segs[0]).unwrap();
    let mut run = TcpRun::start(first);
    let mut last_psh = false;
    for s in &segs[1..] {
        let seg = TcpSegment::parse(s).unwrap();
        assert!(run.try_extend(segs[0], s, &seg));
        last_psh = seg.psh;
    }
    assert_eq!((run.count, run.payload), (count, 10_000));
    // Nothing joins after the pushed, shorter last segment.
    assert!(!run.try_extend(segs[0], segs[1], &TcpSegment::parse(segs[1]).unwrap()));

    let mut hdr = [0u8; RUN_HEADER_MAX];
    let n = run_header(&run, segs[0], last_psh, &mut hdr);
    let v = VnetHdr::parse(&hdr).unwrap();
    assert_eq!(
        (
            v.gso_type,
            v.gso_size,
            v.hdr_len,
            v.csum_start,
            v.csum_offset
        ),
        (VNET_GSO_TCPV4, 1400, 52, 20, 16)
    );
    let mut merged = hdr[VNET_HDR_LEN..n].to_vec();
    for s in &segs {
        merged.extend_from_slice(&s[52..]);
    }
    assert_eq!(merged.len(), original.len());
    assert!(header_checksum_ok(&merged));
    assert_eq!(merged[33], TCP_ACK | TCP_PSH);
    assert_eq!(&merged[52..], &original[52..]);
    // Completing the partial checksum gives the checksum of the whole packet.
    let sum = checksum::add(0, &merged[20..]);
    checksum::store(&mut merged, 36, !checksum::fold(sum));
    assert!(tcp_checksum_ok(&merged));
}

#[test]
fn runs_stop_at_gaps_other_flows_and_non_data_segments() {
    let mut p = super_packet(4200, TCP_ACK);
    let mut out = vec![0u8; 3 * MAX_IP_PACKET];
    let Wire::Segmented { stride, .. } = to_wire(&tso(1400), &mut p, &mut out).unwrap() else {
        panic!("not segmented");
    };
    let s0 = out[..stride].to_vec();
    let s2 = out[2 * stride..3 * stride].to_vec();
    let mut run = TcpRun::start(TcpSegment::parse(&s0).unwrap());
    assert!(
        !run.try_extend(&s0, &s2, &TcpSegment::parse(&s2).unwrap()),
        "sequence gap"
    );
    let mut other_port = out[stride..2 * stride].to_vec();
    other_port[23] ^= 1;
    assert!(!run.try_extend(&s0, &other_port, &TcpSegment::parse(&other_port).unwrap()));
    let mut syn = s0.clone();
    syn[33] = 0x02;
    assert_eq!(TcpSegment::parse(&syn), None);
    let mut fragment = s0.clone();
    fragment[6] = 0x20;
    assert_eq!(TcpSegment::parse(&fragment), None);
    assert_eq!(TcpSegment::parse(&s0[..52]), None, "no payload");
}

#[test]
fn in_place_segmentation_emits_exactly_what_copying_segmentation_writes() {
    for (payload, mss, flags) in [
        (40_000, 1448, TCP_ACK | TCP_PSH | TCP_FIN),
        (1448 * 3, 1448, TCP_ACK | TCP_CWR),
        (1000, 1448, TCP_ACK | TCP_PSH),
        (65_000, 536, TCP_ACK),
    ] {
        let original = super_packet(payload, flags);
        let mut copy = original.clone();
        let mut out = vec![0u8; 3 * MAX_IP_PACKET];
        let want: Vec<Vec<u8>> = match to_wire(&tso(mss), &mut copy, &mut out).unwrap() {
            Wire::InPlace { len } => vec![copy[..len].to_vec()],
            Wire::Segmented { stride, total, .. } => {
                out[..total].chunks(stride).map(<[u8]>::to_vec).collect()
            }
        };
        let mut in_place = original.clone();
        let mut got = Vec::new();
        let n = for_each_wire_packet(&tso(mss), &mut in_place, |p| got.push(p.to_vec())).unwrap();
        assert_eq!(n, want.len(), "{payload}/{mss}");
        assert_eq!(got, want, "{payload}/{mss}");
        assert!(got
            .iter()
            .all(|p| tcp_checksum_ok(p) && header_checksum_ok(p)));
    }
    // A plain packet is handed over once, its partial checksum completed.
    let mut plain = super_packet(100, TCP_ACK);
    let n = for_each_wire_packet(&VnetHdr::default(), &mut plain, |_| {}).unwrap();
    assert_eq!(n, 1);
    let mut bad = super_packet(100, TCP_ACK);
    bad[0] = 0x60;
    assert!(for_each_wire_packet(&tso(1448), &mut bad, |_| {}).is_err());
}

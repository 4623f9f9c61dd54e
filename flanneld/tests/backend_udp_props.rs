//! Property tests of the udp backend's pure forwarding functions: whatever bytes arrive from
//! the wire or the TUN device, nothing panics, and what goes out is well-formed.

use std::net::{Ipv4Addr, SocketAddrV4};

use flanneld::backend::datapath::checksum;
use flanneld::backend::datapath::gso::{
    self, TcpRun, TcpSegment, VnetHdr, Wire, MAX_IP_PACKET, RUN_HEADER_MAX, VNET_HDR_LEN,
};
use flanneld::backend::datapath::packet::{self, ICMP_ERROR_MAX, PROTO_TCP};
use flanneld::backend::udp::RouteTable;
use ipnet::Ipv4Net;
use proptest::prelude::*;

fn network() -> Ipv4Net {
    "10.244.0.0/16".parse().unwrap()
}

fn tcp_checksum_ok(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let src = [p[12], p[13], p[14], p[15]];
    let dst = [p[16], p[17], p[18], p[19]];
    let pseudo = checksum::pseudo_v4(src, dst, PROTO_TCP, (p.len() - ihl) as u16);
    checksum::fold(checksum::add(pseudo, &p[ihl..])) == 0xffff
}

/// A TCP/IPv4 super-packet as the TUN device would produce it (checksums not filled in).
fn super_packet(payload: &[u8], option_words: usize, flags: u8, seq: u32) -> Vec<u8> {
    let tcp_len = 20 + 4 * option_words;
    let mut p = vec![0u8; 20 + tcp_len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + tcp_len + payload.len()) as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = PROTO_TCP;
    p[12..16].copy_from_slice(&[10, 244, 1, 2]);
    p[16..20].copy_from_slice(&[10, 244, 2, 3]);
    p[20..24].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[32] = ((tcp_len / 4) as u8) << 4;
    p[33] = flags;
    for (i, b) in p[40..].iter_mut().enumerate() {
        *b = 1 + i as u8; // NOP-like filler, distinct per byte
    }
    p.extend_from_slice(payload);
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn inbound_checks_never_panic_and_keep_headers_valid(mut bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let before = bytes.clone();
        let _ = packet::parse(&bytes);
        if let Ok(len) = packet::accept_inbound(&mut bytes, network()) {
            let h = packet::parse(&bytes).unwrap();
            prop_assert!(len <= bytes.len() && len == h.total_len);
            prop_assert!(network().contains(&h.dst));
            prop_assert_eq!(h.ttl + 1, before[8]);
            prop_assert_eq!(packet::header_checksum_ok(&bytes), packet::header_checksum_ok(&before));
            prop_assert_eq!(&bytes[..8], &before[..8]);
            prop_assert_eq!(&bytes[12..], &before[12..]);
        }
    }

    #[test]
    fn icmp_errors_are_well_formed(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut out = [0u8; ICMP_ERROR_MAX];
        if let Some(n) = packet::net_unreachable(&bytes, Ipv4Addr::new(10, 244, 1, 0), &mut out) {
            let icmp = &out[..n];
            let h = packet::parse(icmp).unwrap();
            prop_assert_eq!(h.total_len, n);
            prop_assert!(packet::header_checksum_ok(icmp));
            prop_assert_eq!(checksum::of(&icmp[20..]), 0);
            prop_assert_eq!(h.dst, packet::parse(&bytes).unwrap().src);
        }
    }

    #[test]
    fn tun_frames_never_panic_and_segments_are_valid(
        vnet in proptest::collection::vec(any::<u8>(), VNET_HDR_LEN),
        mut bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        tcp in any::<bool>(),
        gso in any::<bool>(),
    ) {
        let mut hdr = VnetHdr::parse(&vnet).unwrap();
        if tcp && bytes.len() >= 40 {
            // Steer some inputs into the segmentation path.
            bytes[0] = 0x45;
            bytes[9] = PROTO_TCP;
            bytes[32] = 0x50;
            hdr.gso_type = if gso { gso::VNET_GSO_TCPV4 } else { gso::VNET_GSO_NONE };
            hdr.gso_size %= 1500;
        }
        let mut out = vec![0u8; 3 * MAX_IP_PACKET];
        if let Ok(Wire::Segmented { stride, count, total }) = gso::to_wire(&hdr, &mut bytes, &mut out) {
            prop_assert!(count > 1 && total <= out.len());
            for i in 0..count {
                let seg = &out[i * stride..(i * stride + stride).min(total)];
                prop_assert!(packet::header_checksum_ok(seg));
                prop_assert!(tcp_checksum_ok(seg));
            }
        }
    }

    #[test]
    fn segmenting_then_coalescing_restores_the_stream(
        payload in proptest::collection::vec(any::<u8>(), 1..20_000),
        mss in 100usize..1460,
        option_words in 0usize..10,
        psh in any::<bool>(),
        seq in any::<u32>(),
    ) {
        let flags = 0x10 | if psh { 0x08 } else { 0 };
        let mut p = super_packet(&payload, option_words, flags, seq);
        let hdr_len = 40 + 4 * option_words;
        let vnet = VnetHdr { gso_type: gso::VNET_GSO_TCPV4, gso_size: mss as u16, ..VnetHdr::default() };
        let mut out = vec![0u8; 3 * MAX_IP_PACKET];
        let segs: Vec<Vec<u8>> = match gso::to_wire(&vnet, &mut p, &mut out).unwrap() {
            Wire::InPlace { len } => vec![p[..len].to_vec()],
            Wire::Segmented { stride, count, total } => (0..count)
                .map(|i| out[i * stride..(i * stride + stride).min(total)].to_vec())
                .collect(),
        };
        prop_assert_eq!(segs.len(), payload.len().div_ceil(mss));
        let mut stream = Vec::new();
        for s in &segs {
            prop_assert!(packet::header_checksum_ok(s) && tcp_checksum_ok(s));
            prop_assert!(s.len() <= hdr_len + mss);
            stream.extend_from_slice(&s[hdr_len..]);
        }
        prop_assert_eq!(&stream, &payload);

        let first = TcpSegment::parse(&segs[0]).unwrap();
        let mut run = TcpRun::start(first);
        let mut last_psh = first.psh;
        for s in &segs[1..] {
            let seg = TcpSegment::parse(s).unwrap();
            prop_assert!(run.try_extend(&segs[0], s, &seg));
            last_psh = seg.psh;
        }
        prop_assert_eq!(last_psh, psh);
        let mut header = [0u8; RUN_HEADER_MAX];
        let n = gso::run_header(&run, &segs[0], last_psh, &mut header);
        let mut merged = header[VNET_HDR_LEN..n].to_vec();
        for s in &segs {
            merged.extend_from_slice(&s[hdr_len..]);
        }
        prop_assert_eq!(merged.len(), p.len());
        prop_assert!(packet::header_checksum_ok(&merged));
        prop_assert_eq!(&merged[hdr_len..], &payload[..]);
    }

    #[test]
    fn coalescing_arbitrary_packets_never_panics(
        a in proptest::collection::vec(any::<u8>(), 0..200),
        b in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        if let (Some(sa), Some(sb)) = (TcpSegment::parse(&a), TcpSegment::parse(&b)) {
            let mut run = TcpRun::start(sa);
            if run.try_extend(&a, &b, &sb) {
                let mut header = [0u8; RUN_HEADER_MAX];
                let n = gso::run_header(&run, &a, sb.psh, &mut header);
                prop_assert!(n <= RUN_HEADER_MAX);
            }
        }
    }

    #[test]
    fn route_lookup_is_longest_prefix_match(
        routes in proptest::collection::vec((any::<u32>(), 8u8..=32, any::<u8>()), 0..20),
        dst in any::<u32>(),
    ) {
        let entries: Vec<(Ipv4Net, SocketAddrV4)> = routes
            .iter()
            .map(|(ip, len, host)| {
                let net = Ipv4Net::new(Ipv4Addr::from(*ip), *len).unwrap().trunc();
                (net, SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, *host), 8285))
            })
            .collect();
        let table = RouteTable::new(entries.clone());
        let dst = Ipv4Addr::from(dst);
        let best = entries
            .iter()
            .filter(|(n, _)| n.contains(&dst))
            .map(|(n, _)| n.prefix_len())
            .max();
        match table.lookup(dst) {
            None => prop_assert_eq!(best, None),
            Some(peer) => {
                let len = best.unwrap();
                prop_assert!(entries.iter().any(|(n, p)| n.prefix_len() == len && n.contains(&dst) && *p == peer));
                prop_assert!(table.is_peer(*peer.ip()));
            }
        }
    }
}

//! Two engines talking through function calls instead of sockets: the protocol's behaviour
//! (handshake, queueing, replay window, roaming, cryptokey routing, cookies under load) and
//! how every kind of bad datagram is counted, without root or a kernel.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;

use super::*;
use crate::backend::datapath::packet::IPV4_MIN_HEADER;
use crate::backend::datapath::{Port, Space};
use crate::backend::wireguard::plan::PeerConfig;
use crate::backend::wireguard::userspace::peers::{Peer, PeerTable};
use crate::metrics::CounterSnapshot;

struct Node {
    engine: Engine,
    addr: SocketAddr,
    subnet: IpNet,
    local: Local,
}

fn node(seed: u8, ip: [u8; 4], subnet: &str) -> Node {
    let engine = Engine::new(StaticSecret::from([seed; 32]));
    let local = engine.local();
    Node {
        engine,
        addr: SocketAddr::new(Ipv4Addr::from(ip).into(), 51820),
        subnet: subnet.parse().unwrap(),
        local,
    }
}

/// Makes `b` the only peer of `a` (index 1), reached at `b.addr`.
fn peer_with(a: &mut Node, b: &Node, psk: Option<[u8; 32]>) {
    let key = b.engine.public_key();
    let cfg = PeerConfig {
        public_key: key,
        endpoint: Some(b.addr),
        allowed_ips: vec![b.subnet],
        psk: psk.map(WgKey),
        keepalive: 0,
    };
    let tunn = a.engine.tunn(1, &key, cfg.psk.as_ref(), 0);
    let peer = Arc::new(Peer::new(1, &cfg, tunn));
    a.engine
        .peers
        .publish(PeerTable::new(vec![(peer, vec![b.subnet])]));
    a.engine.refresh(&mut a.local);
}

fn outbox() -> Outbox {
    Outbox::new(Port::default(), 1 << 20, 512)
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

/// An IPv4 UDP packet from `src` to `dst` with `payload` bytes.
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    crate::backend::datapath::packet::tests::ipv4(src, dst, 17, 64, payload)
}

/// Sends `pkt` from `a`'s TUN device; returns the datagrams `a` puts on the wire.
fn send(a: &mut Node, pkt: &[u8]) -> (Vec<(SocketAddr, Vec<u8>)>, Tally) {
    let mut out = outbox();
    let mut tally = Tally::default();
    let tun = devnull();
    let sink = TunSink {
        fd: &tun,
        mode: crate::backend::datapath::TunMode {
            vnet_hdr: false,
            tso: false,
        },
    };
    let mut buf = pkt.to_vec();
    a.engine.outbound(
        &mut a.local,
        &VnetHdr::default(),
        &mut buf,
        &mut out,
        &sink,
        &mut tally,
    );
    (out.drain(), tally)
}

/// What `b` does with a datagram from `src`: the packet for its TUN device (if any), the
/// datagrams it answers with, and its counters.
struct Received {
    pkt: Option<Vec<u8>>,
    replies: Vec<(SocketAddr, Vec<u8>)>,
    tally: Tally,
}

fn receive(b: &mut Node, src: SocketAddr, dgram: &[u8]) -> Received {
    let mut replies = outbox();
    let mut tally = Tally::default();
    let mut space_buf = vec![0u8; 2 << 16];
    let mut space = Space::new(&mut space_buf);
    let mut d = dgram.to_vec();
    let pkt = b
        .engine
        .inbound(
            &mut b.local,
            src,
            &mut d,
            &mut space,
            &mut replies,
            &mut tally,
        )
        .map(|p| {
            assert!(
                p.verified,
                "decrypted packets need no checksum verification"
            );
            p.pkt.to_vec()
        });
    Received {
        pkt,
        replies: replies.drain(),
        tally,
    }
}

fn drops(t: &Tally) -> CounterSnapshot {
    let c = DatapathCounters::default();
    let mut t2 = Tally {
        drops: t.drops,
        ..Default::default()
    };
    c.flush(&mut t2);
    c.snapshot()
}

/// Two nodes that completed a handshake through `a` sending `first` to `b`. Returns the
/// datagram that carried `first` and what `b` delivered.
fn connected(psk: Option<[u8; 32]>) -> (Node, Node) {
    let mut a = node(1, [192, 168, 1, 1], "10.244.1.0/24");
    let mut b = node(2, [192, 168, 1, 2], "10.244.2.0/24");
    peer_with(&mut a, &b, psk);
    peer_with(&mut b, &a, psk);
    let first = ipv4([10, 244, 1, 5], [10, 244, 2, 7], 100);
    let (wire, _) = send(&mut a, &first);
    assert_eq!(wire.len(), 1, "no session yet: one handshake initiation");
    assert_eq!((wire[0].0, wire[0].1[0], wire[0].1.len()), (b.addr, 1, 148));
    let r = receive(&mut b, a.addr, &wire[0].1);
    assert!(r.pkt.is_none());
    assert_eq!(r.replies.len(), 1, "a handshake response");
    assert_eq!(
        (r.replies[0].0, r.replies[0].1[0], r.replies[0].1.len()),
        (a.addr, 2, 92)
    );
    let r = receive(&mut a, b.addr, &r.replies[0].1);
    // A keepalive confirms the session, then the packet that waited for it.
    assert_eq!(
        r.replies.len(),
        2,
        "{:?}",
        r.replies.iter().map(|d| d.1.len()).collect::<Vec<_>>()
    );
    assert_eq!(r.replies[0].1.len(), 32, "keepalive");
    let data = r.replies[1].1.clone();
    assert_eq!(data[0], 4);
    let keepalive = receive(&mut b, a.addr, &r.replies[0].1);
    assert!(keepalive.pkt.is_none() && keepalive.replies.is_empty());
    let got = receive(&mut b, a.addr, &data);
    assert_eq!(
        got.pkt.as_deref(),
        Some(&first[..]),
        "the queued packet arrives intact"
    );
    (a, b)
}

#[test]
fn handshake_queues_then_delivers_both_ways_with_and_without_psk() {
    for psk in [None, Some([9; 32])] {
        let (mut a, mut b) = connected(psk);
        let stats = |n: &Node| n.engine.peers.load().peers[0].stats(vec![]);
        assert_eq!(stats(&a).handshakes, 1);
        assert_eq!(stats(&b).handshakes, 1);
        assert!(stats(&a).last_handshake.is_some());
        // Established: packets go straight out as data, both ways.
        let back = ipv4([10, 244, 2, 7], [10, 244, 1, 5], 1400);
        let (wire, tally) = send(&mut b, &back);
        assert_eq!(wire.len(), 1);
        assert_eq!(wire[0].1.len(), back.len() + DATA_OVERHEAD);
        assert_eq!((tally.packets_out, tally.bytes_out), (1, back.len() as u64));
        assert_eq!(
            receive(&mut a, b.addr, &wire[0].1).pkt.as_deref(),
            Some(&back[..])
        );
        assert!(stats(&a).rx_bytes > 0 && stats(&b).tx_bytes > 0);
    }
}

#[test]
fn mismatched_psk_never_completes() {
    let mut a = node(1, [192, 168, 1, 1], "10.244.1.0/24");
    let mut b = node(2, [192, 168, 1, 2], "10.244.2.0/24");
    peer_with(&mut a, &b, Some([1; 32]));
    peer_with(&mut b, &a, Some([2; 32]));
    let (wire, _) = send(&mut a, &ipv4([10, 244, 1, 5], [10, 244, 2, 7], 10));
    let r = receive(&mut b, a.addr, &wire[0].1);
    let resp = &r.replies[0].1;
    let r = receive(&mut a, b.addr, resp);
    assert!(
        r.replies.is_empty(),
        "a response under another PSK is refused"
    );
    assert_eq!(drops(&r.tally).dropped(DropReason::HandshakeFailed), 1);
}

#[test]
fn replayed_and_forged_data_is_dropped_and_counted() {
    let (mut a, mut b) = connected(None);
    let pkt = ipv4([10, 244, 1, 5], [10, 244, 2, 7], 200);
    let (wire, _) = send(&mut a, &pkt);
    let dgram = wire[0].1.clone();
    assert!(receive(&mut b, a.addr, &dgram).pkt.is_some());
    let again = receive(&mut b, a.addr, &dgram);
    assert!(again.pkt.is_none());
    assert_eq!(drops(&again.tally).dropped(DropReason::Replayed), 1);

    let mut tampered = dgram.clone();
    *tampered.last_mut().unwrap() ^= 1;
    tampered[8] = tampered[8].wrapping_add(7); // a fresh counter, so the tag is what fails
    let r = receive(&mut b, a.addr, &tampered);
    assert_eq!(drops(&r.tally).dropped(DropReason::DecryptFailed), 1);

    let mut unknown = dgram.clone();
    unknown[4..8].copy_from_slice(&0x7777_7700u32.to_le_bytes());
    let r = receive(&mut b, a.addr, &unknown);
    assert_eq!(drops(&r.tally).dropped(DropReason::UnknownSession), 1);

    // An oversized datagram with a live session index: refused by its tag, nothing kept.
    let mut big = vec![0u8; 60_000];
    big[..16].copy_from_slice(&dgram[..16]);
    big[8] = 200;
    let r = receive(&mut b, a.addr, &big);
    assert_eq!(drops(&r.tally).dropped(DropReason::DecryptFailed), 1);

    // Garbage, truncated messages and wrong lengths for their type.
    for (bytes, why) in [
        (vec![], "empty"),
        (vec![4, 0, 0], "shorter than a header"),
        (vec![9; 100], "unknown type"),
        (vec![1, 0, 0, 0, 1, 2, 3], "truncated initiation"),
        (vec![1; 149], "reserved bytes set"),
        (
            vec![2, 0, 0, 0].into_iter().chain([0; 100]).collect(),
            "response of the wrong length",
        ),
        (dgram[..20].to_vec(), "data shorter than its overhead"),
    ] {
        let r = receive(&mut b, a.addr, &bytes);
        assert!(r.pkt.is_none() && r.replies.is_empty(), "{why}");
        assert_eq!(drops(&r.tally).dropped(DropReason::Malformed), 1, "{why}");
    }
}

#[test]
fn the_endpoint_follows_authenticated_datagrams_only() {
    let (mut a, mut b) = connected(None);
    let endpoint = |n: &Node| n.engine.peers.load().peers[0].stats(vec![]).endpoint;
    let (wire, _) = send(&mut a, &ipv4([10, 244, 1, 5], [10, 244, 2, 7], 64));
    let roamed: SocketAddr = "192.168.9.9:40000".parse().unwrap();
    assert!(receive(&mut b, roamed, &wire[0].1).pkt.is_some());
    assert_eq!(
        endpoint(&b),
        Some(roamed),
        "a authenticated from a new address: roam"
    );
    // The same datagram again, from an attacker's address: replayed, endpoint kept.
    let attacker: SocketAddr = "192.168.6.6:1".parse().unwrap();
    assert!(receive(&mut b, attacker, &wire[0].1).pkt.is_none());
    assert_eq!(endpoint(&b), Some(roamed));
    // b's reply goes where a is now.
    let (out, _) = send(&mut b, &ipv4([10, 244, 2, 7], [10, 244, 1, 5], 64));
    assert_eq!(out[0].0, roamed);
}

#[test]
fn a_peer_may_only_send_from_its_allowed_ips() {
    let (mut a, mut b) = connected(None);
    // a routes by destination, so it encrypts a packet whose source is not a's subnet...
    let (wire, _) = send(&mut a, &ipv4([10, 244, 9, 9], [10, 244, 2, 7], 64));
    // ...and b, which allows a only 10.244.1.0/24, refuses it.
    let r = receive(&mut b, a.addr, &wire[0].1);
    assert!(r.pkt.is_none());
    assert_eq!(drops(&r.tally).dropped(DropReason::DisallowedSource), 1);
}

#[test]
fn no_route_and_not_ip_are_counted_on_the_way_out() {
    let (mut a, _b) = connected(None);
    let (wire, t) = send(&mut a, &ipv4([10, 244, 1, 5], [10, 244, 3, 7], 64));
    assert!(wire.is_empty());
    assert_eq!(drops(&t).dropped(DropReason::NoRoute), 1);
    let (wire, t) = send(&mut a, &[0x20; 40]);
    assert!(wire.is_empty());
    assert_eq!(drops(&t).dropped(DropReason::NotIp), 1);
    let (_, t) = send(
        &mut a,
        &ipv4([10, 244, 1, 5], [10, 244, 2, 7], 64)[..IPV4_MIN_HEADER - 1],
    );
    assert_eq!(drops(&t).dropped(DropReason::Truncated), 1);
}

/// A stranger who knows `target`'s public key (it is in every lease): its initiations carry a
/// valid MAC1, so only the rate limit stands between them and a Diffie-Hellman each.
fn stranger(seed: u8, target: &Node) -> Tunn {
    Tunn::new(
        StaticSecret::from([seed; 32]),
        PublicKey::from(target.engine.public_key().0),
        None,
        None,
        seed.into(),
        None,
    )
}

#[test]
fn a_handshake_flood_turns_on_cookies_and_a_cookie_lets_a_sender_through() {
    let (_a, mut b) = connected(None);
    let from: SocketAddr = "192.168.5.5:5555".parse().unwrap();
    let mut buf = vec![0u8; 256];
    let (mut cookies, mut unknown, mut bad_mac) = (0, 0, 0);
    let mut last_cookie = None;
    let mut flooder = stranger(50, &b);
    for _ in 0..(2 * HANDSHAKE_RATE_LIMIT) {
        let TunnResult::WriteToNetwork(init) = flooder.format_handshake_initiation(&mut buf, true)
        else {
            panic!("no initiation");
        };
        let init = init.to_vec();
        let r = receive(&mut b, from, &init);
        let d = drops(&r.tally);
        unknown += d.dropped(DropReason::UnknownPeer);
        bad_mac += d.dropped(DropReason::BadMac);
        if d.dropped(DropReason::UnderLoad) == 1 {
            assert_eq!(r.tally.cookie_replies, 1);
            assert_eq!(r.replies.len(), 1);
            assert_eq!(
                (r.replies[0].0, r.replies[0].1[0], r.replies[0].1.len()),
                (from, 3, 64)
            );
            cookies += 1;
            last_cookie = Some(r.replies[0].1.clone());
        }
    }
    assert_eq!(bad_mac, 0);
    assert!(
        unknown >= HANDSHAKE_RATE_LIMIT - 5 && unknown <= HANDSHAKE_RATE_LIMIT,
        "the first {HANDSHAKE_RATE_LIMIT} per second are processed: {unknown}"
    );
    assert_eq!(
        cookies + unknown,
        2 * HANDSHAKE_RATE_LIMIT,
        "every other one got a cookie"
    );
    // The flooder takes the cookie; its next initiation carries MAC2 and passes the load
    // check (it then fails only because it is nobody's peer).
    let _ = flooder.decapsulate(Some(b.addr.ip()), &last_cookie.unwrap(), &mut buf);
    let TunnResult::WriteToNetwork(init) = flooder.format_handshake_initiation(&mut buf, true)
    else {
        panic!("no initiation");
    };
    let r = receive(&mut b, from, &init.to_vec());
    let d = drops(&r.tally);
    assert_eq!(
        (
            d.dropped(DropReason::UnderLoad),
            d.dropped(DropReason::UnknownPeer)
        ),
        (0, 1)
    );
    // The same cookie from another address does not count: MAC2 binds the source.
    let TunnResult::WriteToNetwork(init) = flooder.format_handshake_initiation(&mut buf, true)
    else {
        panic!("no initiation");
    };
    let r = receive(&mut b, "192.168.5.6:5555".parse().unwrap(), &init.to_vec());
    assert_eq!(drops(&r.tally).dropped(DropReason::UnderLoad), 1);
}

#[test]
fn initiations_with_a_wrong_mac_cost_nothing() {
    let (_a, mut b) = connected(None);
    let other = node(7, [192, 168, 1, 7], "10.244.7.0/24");
    // MAC1 keyed with someone else's public key.
    let mut t = stranger(60, &other);
    let mut buf = vec![0u8; 256];
    let TunnResult::WriteToNetwork(init) = t.format_handshake_initiation(&mut buf, true) else {
        panic!("no initiation");
    };
    let r = receive(&mut b, "192.168.5.5:1".parse().unwrap(), &init.to_vec());
    assert_eq!(drops(&r.tally).dropped(DropReason::BadMac), 1);
    assert!(r.replies.is_empty());
}

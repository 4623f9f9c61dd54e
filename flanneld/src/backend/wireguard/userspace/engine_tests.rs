//! Two engines talking through function calls instead of sockets ([`super::super::probe`]):
//! the protocol's behaviour (handshake, queueing, replay window, roaming, cryptokey routing,
//! cookies under load) and how every kind of bad datagram is counted, without root.

use std::net::SocketAddr;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::super::probe::{connected_pair, Outcome, ProbeNode};
use super::*;
use crate::backend::datapath::packet::IPV4_MIN_HEADER;

/// An IPv4 UDP packet from `src` to `dst` with `payload` bytes.
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: usize) -> Vec<u8> {
    crate::backend::datapath::packet::tests::ipv4(src, dst, 17, 64, payload)
}

fn first() -> Vec<u8> {
    ipv4([10, 244, 1, 5], [10, 244, 2, 7], 100)
}

fn dropped(o: &Outcome, why: DropReason) -> u64 {
    o.counters.dropped(why)
}

/// Checks the handshake exchange `connected_pair` ran and that the queued packet arrived.
fn connected(psk: Option<[u8; 32]>) -> (ProbeNode, ProbeNode) {
    let (a, mut b, exchange) = connected_pair(psk, &first());
    let sizes: Vec<(u8, usize)> = exchange.iter().map(|d| (d[0], d.len())).collect();
    assert_eq!(
        sizes,
        [
            (1, 148),
            (2, 92),
            (4, 32),
            (4, first().len() + DATA_OVERHEAD)
        ],
        "initiation, response, keepalive, then the packet that waited for the session"
    );
    // Replaying the queued packet's datagram shows it was delivered the first time.
    let again = b.receive(a.addr, &exchange[3]);
    assert_eq!(dropped(&again, DropReason::Replayed), 1);
    (a, b)
}

#[test]
fn handshake_queues_then_delivers_both_ways_with_and_without_psk() {
    for psk in [None, Some([9; 32])] {
        let (mut a, mut b) = connected(psk);
        assert_eq!(a.peer_stats()[0].handshakes, 1);
        assert_eq!(b.peer_stats()[0].handshakes, 1);
        assert!(a.peer_stats()[0].last_handshake.is_some());
        // Established: packets go straight out as data, both ways.
        let back = ipv4([10, 244, 2, 7], [10, 244, 1, 5], 1400);
        let out = b.send(&back);
        assert_eq!(out.sent.len(), 1);
        assert_eq!(out.sent[0].1.len(), back.len() + DATA_OVERHEAD);
        assert_eq!(
            (out.counters.packets_out, out.counters.bytes_out),
            (1, back.len() as u64)
        );
        let got = a.receive(b.addr, &out.sent[0].1);
        assert_eq!(got.delivered.as_deref(), Some(&back[..]));
        assert!(a.peer_stats()[0].rx_bytes > 0 && b.peer_stats()[0].tx_bytes > 0);
    }
}

#[test]
fn mismatched_psk_never_completes() {
    let mut a = ProbeNode::new(
        1,
        "192.168.1.1:51820".parse().unwrap(),
        "10.244.1.0/24".parse().unwrap(),
    );
    let mut b = ProbeNode::new(
        2,
        "192.168.1.2:51820".parse().unwrap(),
        "10.244.2.0/24".parse().unwrap(),
    );
    a.add_peer(&b, Some([1; 32]));
    b.add_peer(&a, Some([2; 32]));
    let init = a.send(&first()).sent;
    let resp = b.receive(a.addr, &init[0].1).sent;
    let r = a.receive(b.addr, &resp[0].1);
    assert!(r.sent.is_empty(), "a response under another PSK is refused");
    assert_eq!(dropped(&r, DropReason::HandshakeFailed), 1);
}

#[test]
fn replayed_and_forged_data_is_dropped_and_counted() {
    let (mut a, mut b) = connected(None);
    let pkt = ipv4([10, 244, 1, 5], [10, 244, 2, 7], 200);
    let dgram = a.send(&pkt).sent[0].1.clone();
    assert_eq!(
        b.receive(a.addr, &dgram).delivered.as_deref(),
        Some(&pkt[..])
    );
    let again = b.receive(a.addr, &dgram);
    assert!(again.delivered.is_none());
    assert_eq!(dropped(&again, DropReason::Replayed), 1);

    let mut tampered = dgram.clone();
    *tampered.last_mut().unwrap() ^= 1;
    tampered[8] = tampered[8].wrapping_add(7); // a fresh counter, so the tag is what fails
    let r = b.receive(a.addr, &tampered);
    assert_eq!(dropped(&r, DropReason::DecryptFailed), 1);

    let mut unknown = dgram.clone();
    unknown[4..8].copy_from_slice(&0x7777_7700u32.to_le_bytes());
    let r = b.receive(a.addr, &unknown);
    assert_eq!(dropped(&r, DropReason::UnknownSession), 1);

    // An oversized datagram with a live session index: refused by its tag, nothing kept.
    let mut big = vec![0u8; 60_000];
    big[..16].copy_from_slice(&dgram[..16]);
    big[8] = 200;
    let r = b.receive(a.addr, &big);
    assert_eq!(dropped(&r, DropReason::DecryptFailed), 1);

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
        let r = b.receive(a.addr, &bytes);
        assert!(r.delivered.is_none() && r.sent.is_empty(), "{why}");
        assert_eq!(dropped(&r, DropReason::Malformed), 1, "{why}");
    }
}

#[test]
fn the_endpoint_follows_authenticated_datagrams_only() {
    let (mut a, mut b) = connected(None);
    let dgram = a.send(&ipv4([10, 244, 1, 5], [10, 244, 2, 7], 64)).sent[0]
        .1
        .clone();
    let roamed: SocketAddr = "192.168.9.9:40000".parse().unwrap();
    assert!(b.receive(roamed, &dgram).delivered.is_some());
    assert_eq!(
        b.peer_stats()[0].endpoint,
        Some(roamed),
        "authenticated from a new address"
    );
    // The same datagram again, from an attacker's address: replayed, endpoint kept.
    let attacker: SocketAddr = "192.168.6.6:1".parse().unwrap();
    assert!(b.receive(attacker, &dgram).delivered.is_none());
    assert_eq!(b.peer_stats()[0].endpoint, Some(roamed));
    // b's reply goes where a is now.
    let out = b.send(&ipv4([10, 244, 2, 7], [10, 244, 1, 5], 64));
    assert_eq!(out.sent[0].0, roamed);
}

#[test]
fn a_peer_may_only_send_from_its_allowed_ips() {
    let (mut a, mut b) = connected(None);
    // a routes by destination, so it encrypts a packet whose source is not a's subnet...
    let out = a.send(&ipv4([10, 244, 9, 9], [10, 244, 2, 7], 64));
    // ...and b, which allows a only 10.244.1.0/24, refuses it.
    let r = b.receive(a.addr, &out.sent[0].1);
    assert!(r.delivered.is_none());
    assert_eq!(dropped(&r, DropReason::DisallowedSource), 1);
}

#[test]
fn no_route_and_not_ip_are_counted_on_the_way_out() {
    let (mut a, _b) = connected(None);
    let out = a.send(&ipv4([10, 244, 1, 5], [10, 244, 3, 7], 64));
    assert!(out.sent.is_empty());
    assert_eq!(dropped(&out, DropReason::NoRoute), 1);
    let out = a.send(&[0x20; 40]);
    assert!(out.sent.is_empty());
    assert_eq!(dropped(&out, DropReason::NotIp), 1);
    let out = a.send(&ipv4([10, 244, 1, 5], [10, 244, 2, 7], 64)[..IPV4_MIN_HEADER - 1]);
    assert_eq!(dropped(&out, DropReason::Truncated), 1);
}

/// A stranger who knows `target`'s public key (it is in every lease): its initiations carry a
/// valid MAC1, so only the rate limit stands between them and a Diffie-Hellman each.
fn stranger(seed: u8, target: &ProbeNode) -> Tunn {
    Tunn::new(
        StaticSecret::from([seed; 32]),
        PublicKey::from(target.public_key().0),
        None,
        None,
        seed.into(),
        None,
    )
}

fn initiation(t: &mut Tunn) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    match t.format_handshake_initiation(&mut buf, true) {
        TunnResult::WriteToNetwork(init) => init.to_vec(),
        other => panic!("no initiation: {other:?}"),
    }
}

#[test]
fn a_handshake_flood_turns_on_cookies_and_a_cookie_lets_a_sender_through() {
    let (_a, mut b) = connected(None);
    let from: SocketAddr = "192.168.5.5:5555".parse().unwrap();
    let (mut cookies, mut unknown, mut bad_mac) = (0, 0, 0);
    let mut last_cookie = None;
    let mut flooder = stranger(50, &b);
    for _ in 0..(2 * HANDSHAKE_RATE_LIMIT) {
        let r = b.receive(from, &initiation(&mut flooder));
        unknown += dropped(&r, DropReason::UnknownPeer);
        bad_mac += dropped(&r, DropReason::BadMac);
        if dropped(&r, DropReason::UnderLoad) == 1 {
            assert_eq!(r.cookie_replies, 1);
            assert_eq!(r.sent.len(), 1);
            assert_eq!(
                (r.sent[0].0, r.sent[0].1[0], r.sent[0].1.len()),
                (from, 3, 64)
            );
            cookies += 1;
            last_cookie = Some(r.sent[0].1.clone());
        }
    }
    assert_eq!(bad_mac, 0);
    assert!(
        (HANDSHAKE_RATE_LIMIT - 5..=HANDSHAKE_RATE_LIMIT).contains(&unknown),
        "the first {HANDSHAKE_RATE_LIMIT} per second are processed: {unknown}"
    );
    assert_eq!(
        cookies + unknown,
        2 * HANDSHAKE_RATE_LIMIT,
        "every other one got a cookie"
    );
    // The flooder takes the cookie; its next initiation carries MAC2 and passes the load
    // check (it then fails only because it is nobody's peer).
    let mut buf = vec![0u8; 256];
    let _ = flooder.decapsulate(Some(b.addr.ip()), &last_cookie.unwrap(), &mut buf);
    let r = b.receive(from, &initiation(&mut flooder));
    assert_eq!(
        (
            dropped(&r, DropReason::UnderLoad),
            dropped(&r, DropReason::UnknownPeer)
        ),
        (0, 1)
    );
    // The same cookie from another address does not count: MAC2 binds the source.
    let r = b.receive(
        "192.168.5.6:5555".parse().unwrap(),
        &initiation(&mut flooder),
    );
    assert_eq!(dropped(&r, DropReason::UnderLoad), 1);
}

#[test]
fn initiations_with_a_wrong_mac_cost_nothing() {
    let (_a, mut b) = connected(None);
    let other = ProbeNode::new(
        7,
        "192.168.1.7:51820".parse().unwrap(),
        "10.244.7.0/24".parse().unwrap(),
    );
    // MAC1 keyed with someone else's public key.
    let r = b.receive(
        "192.168.5.5:1".parse().unwrap(),
        &initiation(&mut stranger(60, &other)),
    );
    assert_eq!(dropped(&r, DropReason::BadMac), 1);
    assert!(r.sent.is_empty());
}

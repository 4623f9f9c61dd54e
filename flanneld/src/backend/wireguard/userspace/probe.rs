//! The userspace engine without sockets or a TUN device: a node whose datagrams are function
//! calls. The engine's tests and the fuzzer drive the real datagram path through it.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use boringtun::x25519::StaticSecret;
use ipnet::IpNet;

use super::engine::{Engine, Local};
use super::peers::{Peer, PeerTable};
use crate::backend::datapath::gso::VnetHdr;
use crate::backend::datapath::{Outbox, Port, Space, Transform, TunMode, TunSink};
use crate::backend::wireguard::plan::PeerConfig;
use crate::metrics::wireguard::PeerStats;
use crate::metrics::{CounterSnapshot, DatapathCounters, Tally};
use crate::subnet::WgKey;

/// What a node did with one input.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The packet for its TUN device, if one came out.
    pub delivered: Option<Vec<u8>>,
    /// Datagrams it sent, with their destinations.
    pub sent: Vec<(SocketAddr, Vec<u8>)>,
    pub counters: CounterSnapshot,
    /// Cookie replies among `sent`.
    pub cookie_replies: u64,
}

pub struct ProbeNode {
    engine: Engine,
    local: Local,
    pub addr: SocketAddr,
    pub subnet: IpNet,
    /// Stands in for the TUN device (no ICMP is written on this path).
    devnull: OwnedFd,
    space: Vec<u8>,
    next_index: u32,
}

fn outcome(tally: Tally, sent: Vec<(SocketAddr, Vec<u8>)>, delivered: Option<Vec<u8>>) -> Outcome {
    let counters = DatapathCounters::default();
    let cookie_replies = tally.cookie_replies;
    let mut tally = tally;
    counters.flush(&mut tally);
    Outcome {
        delivered,
        sent,
        counters: counters.snapshot(),
        cookie_replies,
    }
}

impl ProbeNode {
    /// A node whose private key is 32 bytes of `seed`.
    pub fn new(seed: u8, addr: SocketAddr, subnet: IpNet) -> ProbeNode {
        let engine = Engine::new(StaticSecret::from([seed; 32]));
        let local = engine.local();
        ProbeNode {
            engine,
            local,
            addr,
            subnet,
            devnull: std::fs::File::open("/dev/null").expect("/dev/null").into(),
            space: vec![0; 2 << 16],
            next_index: 1,
        }
    }

    pub fn public_key(&self) -> WgKey {
        self.engine.public_key()
    }

    /// Adds `other` as a peer at its address, allowed its subnet (the peer list is replaced).
    pub fn add_peer(&mut self, other: &ProbeNode, psk: Option<[u8; 32]>) {
        let key = other.public_key();
        let cfg = PeerConfig {
            public_key: key,
            endpoint: Some(other.addr),
            allowed_ips: vec![other.subnet],
            psk: psk.map(WgKey),
            keepalive: 0,
        };
        let index = self.next_index;
        self.next_index += 1;
        let tunn = self.engine.tunn(index, &key, cfg.psk.as_ref(), 0);
        let peer = Arc::new(Peer::new(index, &cfg, tunn));
        self.engine
            .peers
            .publish(PeerTable::new(vec![(peer, vec![other.subnet])]));
        self.engine.refresh(&mut self.local);
    }

    fn outbox() -> Outbox {
        Outbox::new(Port::default(), 1 << 20, 512)
    }

    /// `pkt` read from the TUN device.
    pub fn send(&mut self, pkt: &[u8]) -> Outcome {
        let mut out = Self::outbox();
        let mut tally = Tally::default();
        let sink = TunSink {
            fd: &self.devnull,
            mode: TunMode {
                vnet_hdr: false,
                tso: false,
            },
        };
        let mut buf = pkt.to_vec();
        self.engine.outbound(
            &mut self.local,
            &VnetHdr::default(),
            &mut buf,
            &mut out,
            &sink,
            &mut tally,
        );
        outcome(tally, out.drain(), None)
    }

    /// A datagram from `src`.
    pub fn receive(&mut self, src: SocketAddr, dgram: &[u8]) -> Outcome {
        let mut replies = Self::outbox();
        let mut tally = Tally::default();
        let mut space = Space::new(&mut self.space);
        let mut d = dgram.to_vec();
        let delivered = self
            .engine
            .inbound(
                &mut self.local,
                src,
                &mut d,
                &mut space,
                &mut replies,
                &mut tally,
            )
            .map(|p| {
                debug_assert!(p.verified);
                p.pkt.to_vec()
            });
        outcome(tally, replies.drain(), delivered)
    }

    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let table = self.engine.peers.load();
        table
            .peers
            .iter()
            .zip(&table.allowed)
            .map(|(p, a)| p.stats(a.clone()))
            .collect()
    }
}

/// Two nodes (192.168.1.1 with 10.244.1.0/24, 192.168.1.2 with 10.244.2.0/24) that know each
/// other, after `a` sent `first` to `b` through a complete handshake. Returns the nodes and
/// the datagrams of that exchange in order (initiation, response, keepalive, data).
pub fn connected_pair(psk: Option<[u8; 32]>, first: &[u8]) -> (ProbeNode, ProbeNode, Vec<Vec<u8>>) {
    let mut a = ProbeNode::new(
        1,
        "192.168.1.1:51820".parse().expect("address"),
        "10.244.1.0/24".parse().expect("subnet"),
    );
    let mut b = ProbeNode::new(
        2,
        "192.168.1.2:51820".parse().expect("address"),
        "10.244.2.0/24".parse().expect("subnet"),
    );
    a.add_peer(&b, psk);
    b.add_peer(&a, psk);
    let mut exchange = Vec::new();
    let init = a.send(first).sent;
    let response = b.receive(a.addr, &init[0].1).sent;
    let confirm = a.receive(b.addr, &response[0].1).sent;
    exchange.push(init[0].1.clone());
    exchange.push(response[0].1.clone());
    for (_, d) in &confirm {
        b.receive(a.addr, d);
        exchange.push(d.clone());
    }
    (a, b, exchange)
}

//! The userspace device's peers: each with its WireGuard state machine (boringtun's `Tunn`),
//! its endpoint and counters, and the snapshot the forwarding threads route by (allowed IPs
//! → peer, session index → peer, public key → peer).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use boringtun::noise::Tunn;
use ipnet::IpNet;

use crate::backend::wireguard::PeerConfig;
use crate::metrics::wireguard::PeerStats;
use crate::subnet::WgKey;

/// What the forwarding threads change under the peer's lock.
pub(super) struct PeerState {
    pub tunn: Tunn,
    /// Where datagrams for this peer go: from its lease, then from the source of the last
    /// authenticated datagram it sent (WireGuard's roaming).
    pub endpoint: Option<SocketAddr>,
}

pub(super) struct Peer {
    /// Upper 24 bits of every session index this peer's `Tunn` hands out.
    pub index: u32,
    pub public_key: WgKey,
    /// What the peer was built from; a different key, PSK or keepalive makes a new peer.
    pub psk: Option<WgKey>,
    pub keepalive: u16,
    state: Mutex<PeerState>,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
    handshakes: AtomicU64,
    /// Unix time of the last completed handshake in nanoseconds; 0 before the first.
    last_handshake: AtomicU64,
}

impl Peer {
    pub fn new(index: u32, cfg: &PeerConfig, tunn: Tunn) -> Peer {
        Peer {
            index,
            public_key: cfg.public_key,
            psk: cfg.psk,
            keepalive: cfg.keepalive,
            state: Mutex::new(PeerState {
                tunn,
                endpoint: cfg.endpoint,
            }),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            last_handshake: AtomicU64::new(0),
        }
    }

    /// The peer's state; a thread that panicked while holding it left plain data behind.
    pub fn lock(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn received(&self, bytes: usize) {
        self.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.tx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn handshake_completed(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.last_handshake.store(now, Ordering::Relaxed);
    }

    pub fn stats(&self, allowed_ips: Vec<IpNet>) -> PeerStats {
        let last = self.last_handshake.load(Ordering::Relaxed);
        PeerStats {
            public_key: self.public_key.to_base64(),
            allowed_ips,
            endpoint: self.lock().endpoint,
            last_handshake: (last != 0).then(|| UNIX_EPOCH + std::time::Duration::from_nanos(last)),
            handshakes: self.handshakes.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct V4Route {
    net: u32,
    mask: u32,
    peer: usize,
}

#[derive(Debug, Clone, Copy)]
struct V6Route {
    net: u128,
    mask: u128,
    peer: usize,
}

/// Which peer serves what, as one immutable snapshot.
#[derive(Default)]
pub(super) struct PeerTable {
    pub peers: Vec<Arc<Peer>>,
    /// The allowed IPs of `peers[i]`.
    pub allowed: Vec<Vec<IpNet>>,
    v4: Vec<V4Route>,
    v6: Vec<V6Route>,
    by_index: HashMap<u32, usize>,
    by_key: HashMap<WgKey, usize>,
}

impl PeerTable {
    pub fn new(entries: Vec<(Arc<Peer>, Vec<IpNet>)>) -> PeerTable {
        let mut t = PeerTable::default();
        for (i, (peer, allowed)) in entries.into_iter().enumerate() {
            for net in &allowed {
                match net {
                    IpNet::V4(n) => t.v4.push(V4Route {
                        net: u32::from(n.network()),
                        mask: u32::from(n.netmask()),
                        peer: i,
                    }),
                    IpNet::V6(n) => t.v6.push(V6Route {
                        net: u128::from(n.network()),
                        mask: u128::from(n.netmask()),
                        peer: i,
                    }),
                }
            }
            t.by_index.insert(peer.index, i);
            t.by_key.insert(peer.public_key, i);
            t.peers.push(peer);
            t.allowed.push(allowed);
        }
        // Longest prefix first makes the first match the best one.
        t.v4.sort_by(|a, b| b.mask.cmp(&a.mask).then(a.net.cmp(&b.net)));
        t.v6.sort_by(|a, b| b.mask.cmp(&a.mask).then(a.net.cmp(&b.net)));
        t
    }

    /// The peer whose allowed IPs hold `ip`: where a packet to `ip` goes, and the only peer a
    /// packet from `ip` may come from. A node's subnets all have the same length, so the scan
    /// is short and stays in cache; callers look up once per super-packet.
    pub fn route(&self, ip: IpAddr) -> Option<&Arc<Peer>> {
        let i = match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find(|r| a & r.mask == r.net)?.peer
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find(|r| a & r.mask == r.net)?.peer
            }
        };
        self.peers.get(i)
    }

    /// The peer a message with receiver index `receiver` was sent to.
    pub fn by_session(&self, receiver: u32) -> Option<&Arc<Peer>> {
        self.by_index
            .get(&(receiver >> 8))
            .and_then(|i| self.peers.get(*i))
    }

    pub fn by_key(&self, key: &WgKey) -> Option<&Arc<Peer>> {
        self.by_key.get(key).and_then(|i| self.peers.get(*i))
    }
}

//! The userspace WireGuard device: a TUN device named like the kernel's, the shared datapath
//! underneath, the [`engine`] on top, and a timer thread that drives every peer's handshake
//! retries, rekeying and keepalives.

mod engine;
mod peers;
pub mod probe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use boringtun::noise::TunnResult;
use boringtun::x25519::StaticSecret;
use ipnet::IpNet;

use self::engine::Engine;
use self::peers::{Peer, PeerTable};
use super::plan::PeerConfig;
use super::{Device, Observed, Observer, PeerChanges, WireguardError};
use crate::backend::datapath::{Datapath, DatapathConfig, Outbox};
use crate::metrics::wireguard::{DeviceStats, Implementation};
use crate::metrics::Tally;
use crate::subnet::WgKey;

/// How often every peer's timers are looked at (boringtun's own device uses the same).
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Session indices carry the peer in their upper 24 bits.
const MAX_PEER_INDEX: u32 = (1 << 24) - 1;

/// What a peer was last configured with, to tell a lease change from roaming.
struct Configured {
    peer: Arc<Peer>,
    endpoint: Option<SocketAddr>,
    allowed_ips: Vec<IpNet>,
}

pub(crate) struct UserspaceDevice {
    name: String,
    index: u32,
    port: u16,
    engine: Arc<Engine>,
    configured: HashMap<WgKey, Configured>,
    next_index: u32,
    stop: Arc<AtomicBool>,
    timers: Option<JoinHandle<()>>,
    /// Held for its drop, which comes last: it stops the forwarding threads and removes
    /// the TUN device.
    _datapath: Datapath,
}

impl UserspaceDevice {
    /// Creates the TUN device `name` and starts forwarding on `listen`.
    pub fn create(
        name: &str,
        private: &WgKey,
        listen: Vec<SocketAddr>,
        workers: usize,
        nl: &mut netops::netlink::Handle,
    ) -> Result<UserspaceDevice, WireguardError> {
        let engine = Arc::new(Engine::new(StaticSecret::from(private.0)));
        let port = listen.first().map_or(0, |a| a.port());
        let datapath = Datapath::start(
            &DatapathConfig {
                device: name,
                workers,
                listen,
                name: "wg",
            },
            Arc::clone(&engine),
        )?;
        let index = nl
            .link_by_name(name)?
            .ok_or_else(|| WireguardError::DeviceVanished(name.to_owned()))?
            .index;
        let stop = Arc::new(AtomicBool::new(false));
        let timers = {
            let (engine, stop, out) = (
                Arc::clone(&engine),
                Arc::clone(&stop),
                datapath.control_outbox(),
            );
            std::thread::Builder::new()
                .name("wg-timers".into())
                .spawn(move || run_timers(&engine, &stop, out))
                .map_err(WireguardError::Thread)?
        };
        let info = datapath.info;
        log::info!(
            "wireguard: userspace device {name} with {} queue(s), vnet header {}, TSO {}, UDP GSO {}, UDP GRO {}",
            info.workers, info.vnet_hdr, info.tso, info.udp_gso, info.udp_gro
        );
        Ok(UserspaceDevice {
            name: name.to_owned(),
            index,
            port,
            engine,
            configured: HashMap::new(),
            next_index: 1,
            stop,
            timers: Some(timers),
            _datapath: datapath,
        })
    }

    fn allocate_index(&mut self) -> u32 {
        let used: std::collections::HashSet<u32> =
            self.configured.values().map(|c| c.peer.index).collect();
        loop {
            let i = self.next_index;
            self.next_index = if i >= MAX_PEER_INDEX { 1 } else { i + 1 };
            if !used.contains(&i) {
                return i;
            }
        }
    }
}

/// Drives the protocol's timers: handshake retries, rekeying, keepalives, session expiry,
/// and the device-wide handshake rate limit's reset.
fn run_timers(engine: &Engine, stop: &AtomicBool, mut out: Outbox) {
    let mut buf = vec![0u8; engine::MESSAGE_BUF];
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TIMER_TICK);
        engine.rate_limiter.reset_count();
        let table = engine.peers.load();
        for peer in &table.peers {
            let mut state = peer.lock();
            let endpoint = state.endpoint;
            if let TunnResult::WriteToNetwork(msg) = state.tunn.update_timers(&mut buf) {
                if let Some(dst) = endpoint {
                    peer.sent(msg.len());
                    out.reserve(msg.len(), 1, &mut tally);
                    out.space()[..msg.len()].copy_from_slice(msg);
                    out.commit(dst, msg.len(), 1, msg.len(), 0, &mut tally);
                }
            }
        }
        out.flush(&mut tally);
        engine.counters.flush(&mut tally);
    }
}

impl Device for UserspaceDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn index(&self) -> u32 {
        self.index
    }

    fn implementation(&self) -> Implementation {
        Implementation::Userspace
    }

    fn set_peers(&mut self, peers: &[PeerConfig]) -> Result<PeerChanges, WireguardError> {
        let mut changes = PeerChanges::default();
        let mut next: HashMap<WgKey, Configured> = HashMap::new();
        for cfg in peers {
            let old = self.configured.remove(&cfg.public_key);
            let entry = match old {
                Some(c) if c.peer.psk == cfg.psk && c.peer.keepalive == cfg.keepalive => {
                    if c.endpoint != cfg.endpoint || c.allowed_ips != cfg.allowed_ips {
                        changes.updated += 1;
                    }
                    // A new address in the lease (the node moved) takes effect at once; an
                    // unchanged one leaves the endpoint where roaming put it.
                    if c.endpoint != cfg.endpoint {
                        c.peer.lock().endpoint = cfg.endpoint;
                    }
                    Configured {
                        peer: c.peer,
                        endpoint: cfg.endpoint,
                        allowed_ips: cfg.allowed_ips.clone(),
                    }
                }
                other => {
                    if other.is_some() {
                        changes.updated += 1;
                    } else {
                        changes.added += 1;
                    }
                    let index = self.allocate_index();
                    let tunn =
                        self.engine
                            .tunn(index, &cfg.public_key, cfg.psk.as_ref(), cfg.keepalive);
                    Configured {
                        peer: Arc::new(Peer::new(index, cfg, tunn)),
                        endpoint: cfg.endpoint,
                        allowed_ips: cfg.allowed_ips.clone(),
                    }
                }
            };
            next.insert(cfg.public_key, entry);
        }
        changes.removed = self.configured.len();
        self.configured = next;
        let mut entries: Vec<(Arc<Peer>, Vec<IpNet>)> = self
            .configured
            .values()
            .map(|c| (Arc::clone(&c.peer), c.allowed_ips.clone()))
            .collect();
        entries.sort_by_key(|(p, _)| p.public_key);
        self.engine.peers.publish(PeerTable::new(entries));
        Ok(changes)
    }

    fn observer(&self) -> Observer {
        let engine = Arc::clone(&self.engine);
        let (name, port) = (self.name.clone(), self.port);
        Arc::new(move || {
            let table = engine.peers.load();
            Observed {
                stats: Ok(DeviceStats {
                    name: name.clone(),
                    listen_port: port,
                    public_key: engine.public_key().to_base64(),
                    peers: table
                        .peers
                        .iter()
                        .zip(&table.allowed)
                        .map(|(p, a)| p.stats(a.clone()))
                        .collect(),
                }),
                counters: Some(engine.counters.snapshot()),
            }
        })
    }
}

impl Drop for UserspaceDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.timers.take() {
            let _ = t.join();
        }
    }
}

//! The WireGuard backend's state as metrics: per device and peer, read from the backend at
//! every scrape (from the kernel over generic netlink, or from the userspace engine).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::datapath::{const_counter, drops, labelled_counters, CounterSnapshot, DropReason};

/// Which implementation carries the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// The kernel's `wireguard` device, configured over generic netlink.
    Kernel,
    /// flanneld's own engine on a TUN device.
    Userspace,
}

impl Implementation {
    pub fn as_str(self) -> &'static str {
        match self {
            Implementation::Kernel => "kernel",
            Implementation::Userspace => "userspace",
        }
    }
}

/// One peer as the device sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// Base64, as `wg` prints it.
    pub public_key: String,
    pub allowed_ips: Vec<IpNet>,
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    /// Handshakes completed since the backend started (for the kernel: changes of the last
    /// handshake time seen by flanneld, so at most one per observation).
    pub handshakes: u64,
    /// Bytes of WireGuard datagrams received from and sent to this peer.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStats {
    pub name: String,
    pub listen_port: u16,
    pub public_key: String,
    pub peers: Vec<PeerStats>,
}

/// Everything the backend reports at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardSnapshot {
    pub implementation: Implementation,
    pub devices: Vec<DeviceStats>,
    /// The userspace datapath's counters; the kernel keeps no such breakdown.
    pub datapath: Option<CounterSnapshot>,
    /// Peer leases not turned into peers (malformed PublicKey or BackendData), since start.
    pub skipped_leases: u64,
    /// Why the kernel could not be read, when it could not.
    pub error: Option<String>,
}

/// A live view of the WireGuard backend, readable from any thread.
pub type WireguardSource = Arc<dyn Fn() -> WireguardSnapshot + Send + Sync>;

pub(super) struct WireguardCollector(pub WireguardSource);

impl fmt::Debug for WireguardCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WireguardCollector")
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One sample per peer of every device, labelled with the device and the peer's key.
fn per_peer<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    snap: &WireguardSnapshot,
    name: &str,
    help: &str,
    metric: impl Fn(&PeerStats) -> M,
) -> fmt::Result {
    let Some(first) = snap.devices.iter().flat_map(|d| &d.peers).next() else {
        return Ok(());
    };
    let mut family = encoder.encode_descriptor(name, help, None, metric(first).metric_type())?;
    for d in &snap.devices {
        for p in &d.peers {
            metric(p).encode(family.encode_family(&[
                ("device", d.name.as_str()),
                ("public_key", p.public_key.as_str()),
            ])?)?;
        }
    }
    Ok(())
}

impl Collector for WireguardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snap = (self.0)();
        {
            let g = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "flannel_wireguard_peers",
                "Peers configured on each WireGuard device",
                None,
                g.metric_type(),
            )?;
            for d in &snap.devices {
                ConstGauge::new(d.peers.len() as i64).encode(family.encode_family(&[
                    ("device", d.name.as_str()),
                    ("implementation", snap.implementation.as_str()),
                ])?)?;
            }
        }
        per_peer(
            &mut encoder,
            &snap,
            "flannel_wireguard_handshakes",
            "Handshakes completed with the peer since flanneld started",
            |p| ConstCounter::new(p.handshakes),
        )?;
        per_peer(
            &mut encoder,
            &snap,
            "flannel_wireguard_last_handshake_timestamp_seconds",
            "When the last handshake with the peer completed, in seconds since the epoch (0: never)",
            |p| ConstGauge::new(p.last_handshake.map_or(0.0, unix_seconds)),
        )?;
        per_peer(
            &mut encoder,
            &snap,
            "flannel_wireguard_rx_bytes",
            "Bytes of WireGuard datagrams received from the peer",
            |p| ConstCounter::new(p.rx_bytes),
        )?;
        per_peer(
            &mut encoder,
            &snap,
            "flannel_wireguard_tx_bytes",
            "Bytes of WireGuard datagrams sent to the peer",
            |p| ConstCounter::new(p.tx_bytes),
        )?;
        const_counter(
            &mut encoder,
            "flannel_wireguard_skipped_leases",
            "Peer leases that could not be made peers (malformed PublicKey or BackendData)",
            snap.skipped_leases,
        )?;
        let Some(dp) = &snap.datapath else {
            return Ok(());
        };
        labelled_counters(
            &mut encoder,
            "flannel_wireguard_packets",
            "Inner packets carried by userspace WireGuard (out: TUN to peers, in: peers to TUN)",
            "direction",
            [("in", dp.packets_in), ("out", dp.packets_out)],
        )?;
        drops(
            &mut encoder,
            "flannel_wireguard_dropped_packets",
            "Packets and datagrams userspace WireGuard did not forward, by reason",
            dp,
            DropReason::WIREGUARD,
        )?;
        const_counter(
            &mut encoder,
            "flannel_wireguard_cookie_replies_sent",
            "Cookie replies sent to handshake initiations that arrived while under load",
            dp.cookie_replies,
        )
    }
}

//! The `/status` document: readiness with its reason, the lease, every peer with whether its
//! route is in the kernel, drift repairs, duplicate public IPs, WireGuard peers and network
//! policy. flanneld builds it from its state; readers decode it with serde.
//!
//! Readers are tolerant: fields a daemon of another version leaves out take their empty value,
//! and fields they do not know are ignored, so a node can run a newer plugin or `flannelctl`
//! than its daemon.

use std::net::{Ipv4Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::netpol::NetpolReport;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub ready: bool,
    /// Why the node is not ready; absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub lease: Option<LeaseReport>,
    pub last_error: Option<ErrorReport>,
    #[serde(default)]
    pub peers: Vec<PeerReport>,
    /// Why route presence could not be checked, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_check_error: Option<String>,
    /// Drift found and fixed since start (routes, neighbours, FDB, rules, subnet.env).
    #[serde(default)]
    pub drift_repairs: u64,
    #[serde(default)]
    pub lease_renewals: u64,
    #[serde(default)]
    pub lease_errors: u64,
    #[serde(default)]
    pub duplicate_public_ips: Vec<DuplicateReport>,
    /// The wireguard backend's devices and peers; absent for other backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<WireguardReport>,
    /// NetworkPolicy enforcement; absent when `--network-policy` is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetpolReport>,
}

/// What WireGuard runs and how each peer is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireguardReport {
    /// `kernel` or `userspace`.
    pub implementation: String,
    pub devices: Vec<WireguardDeviceReport>,
    /// Peer leases not made peers (malformed PublicKey or BackendData) since start.
    pub skipped_leases: u64,
    /// Why a device could not be read, when one could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireguardDeviceReport {
    pub name: String,
    pub listen_port: u16,
    pub public_key: String,
    pub peers: Vec<WireguardPeerReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireguardPeerReport {
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    /// RFC 3339, UTC; absent before the first handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake_unix: Option<u64>,
    pub handshakes: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseReport {
    pub subnet: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<Ipv6Net>,
    pub public_ip: Ipv4Addr,
    pub backend: String,
    /// RFC 3339, UTC; `never` for a reservation.
    pub expires: String,
    /// 0 for a reservation.
    pub expires_unix: u64,
    /// The record has no lifetime (upstream's reservations) and is never renewed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reservation: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub time: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub subnet: Ipv4Net,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<Ipv6Net>,
    pub public_ip: Ipv4Addr,
    pub backend: String,
    /// Whether the kernel has this peer's route; `None` when the kernel could not be read.
    pub route: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateReport {
    pub public_ip: Ipv4Addr,
    pub subnets: Vec<Ipv4Net>,
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;

//! `/status`: one JSON document that answers "is this node's pod network healthy, and if
//! not, why". The document's types live in `flannel-status`, shared with its readers
//! (`flannelctl status`, the CNI plugin's STATUS); this module builds it from the daemon's
//! state and the kernel's routes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use flannel_status::{
    DuplicateReport, ErrorReport, LeaseReport, PeerReport, StatusReport, WireguardDeviceReport,
    WireguardPeerReport, WireguardReport,
};
use ipnet::{IpNet, Ipv4Net};
use netops::netlink::{Family, Handle, NetlinkError, RouteKind, RouteSpec};

use crate::logger::rfc3339;
use crate::metrics::backend_name;
use crate::metrics::wireguard::WireguardSnapshot;
use crate::state::{DuplicatePublicIp, Status};
use crate::subnet::{Lease, SharedLease};

/// The udp backend's TUN device: its peers share one route through it.
pub const UDP_DEVICE: &str = "flannel0";
/// WireGuard's (IPv4) device: its peers share one route through it too.
pub const WIREGUARD_DEVICE: &str = "flannel-wg";

/// The `wireguard` part of the report, from what the backend read off its devices.
pub fn wireguard_report(s: &WireguardSnapshot) -> WireguardReport {
    WireguardReport {
        implementation: s.implementation.as_str().to_owned(),
        devices: s
            .devices
            .iter()
            .map(|d| WireguardDeviceReport {
                name: d.name.clone(),
                listen_port: d.listen_port,
                public_key: d.public_key.clone(),
                peers: d
                    .peers
                    .iter()
                    .map(|p| WireguardPeerReport {
                        public_key: p.public_key.clone(),
                        endpoint: p.endpoint,
                        allowed_ips: p.allowed_ips.clone(),
                        last_handshake: p.last_handshake.map(rfc3339),
                        last_handshake_unix: p.last_handshake.map(unix),
                        handshakes: p.handshakes,
                        rx_bytes: p.rx_bytes,
                        tx_bytes: p.tx_bytes,
                    })
                    .collect(),
            })
            .collect(),
        skipped_leases: s.skipped_leases,
        error: s.error.clone(),
    }
}

/// The IPv4 routing state needed to tell whether each peer's route is programmed.
#[derive(Debug, Clone, Default)]
pub struct KernelRoutes {
    pub routes: Vec<RouteSpec>,
    /// Index of [`UDP_DEVICE`], when it exists.
    pub udp_device: Option<u32>,
    /// Index of [`WIREGUARD_DEVICE`], when it exists.
    pub wireguard_device: Option<u32>,
}

impl KernelRoutes {
    /// Dumps the main IPv4 table of the calling thread's network namespace (the daemon's).
    pub fn read() -> Result<KernelRoutes, NetlinkError> {
        let mut h = Handle::new()?;
        Ok(KernelRoutes {
            routes: h.route_list(Family::V4, None)?,
            udp_device: h.link_by_name(UDP_DEVICE)?.map(|l| l.index),
            wireguard_device: h.link_by_name(WIREGUARD_DEVICE)?.map(|l| l.index),
        })
    }

    /// Whether the route this node's backend installs for `peer` is there. vxlan routes
    /// via the peer's VTEP (its subnet address, onlink) or, with DirectRouting, its public
    /// IP; host-gw via its public IP; udp and wireguard have one route for the whole network
    /// through their device, so any unicast route through it covering the subnet counts.
    pub fn has_route(&self, backend_type: &str, peer: &Lease) -> bool {
        let dst = IpNet::V4(peer.subnet);
        let via = |gw: Ipv4Addr| Some(IpAddr::V4(gw));
        self.routes
            .iter()
            .filter(|r| r.kind == RouteKind::Unicast)
            .any(|r| match backend_type {
                "vxlan" => {
                    r.dst == dst
                        && (r.gw == via(peer.subnet.network()) || r.gw == via(peer.attrs.public_ip))
                }
                "host-gw" => r.dst == dst && r.gw == via(peer.attrs.public_ip),
                "wireguard" => {
                    self.wireguard_device.is_some()
                        && r.oif == self.wireguard_device
                        && r.dst.contains(&dst)
                }
                _ => self.udp_device.is_some() && r.oif == self.udp_device && r.dst.contains(&dst),
            })
    }
}

/// Every public IP announced by more than one lease (ours included), with their subnets.
pub fn duplicate_public_ips(own: Option<&Lease>, peers: &[SharedLease]) -> Vec<DuplicatePublicIp> {
    let mut by_ip: BTreeMap<Ipv4Addr, Vec<Ipv4Net>> = BTreeMap::new();
    for l in own.into_iter().chain(peers.iter().map(|p| &**p)) {
        by_ip.entry(l.attrs.public_ip).or_default().push(l.subnet);
    }
    by_ip
        .into_iter()
        .filter(|(_, subnets)| subnets.len() > 1)
        .map(|(public_ip, mut subnets)| {
            subnets.sort();
            DuplicatePublicIp { public_ip, subnets }
        })
        .collect()
}

/// The operator-facing explanation of a duplicate, naming the fix.
pub fn duplicate_message(d: &DuplicatePublicIp) -> String {
    let subnets: Vec<String> = d.subnets.iter().map(|s| s.to_string()).collect();
    format!(
        "leases {} all announce public IP {}: these nodes picked the same (NAT or shared) address, \
         so traffic for all but one of them goes to the wrong node; give each flanneld its own \
         address with --iface=<interface> or --public-ip=<address>",
        subnets.join(", "),
        d.public_ip
    )
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Counters kept outside [`Status`], in the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub drift_repairs: u64,
    pub lease_renewals: u64,
    pub lease_errors: u64,
}

/// Builds the report; `kernel` is the route dump or why it failed, `wireguard` what the
/// wireguard backend reported, if it runs.
pub fn report(
    status: &Status,
    counts: Counts,
    kernel: Result<&KernelRoutes, String>,
    wireguard: Option<&WireguardSnapshot>,
) -> StatusReport {
    let backend_type = status
        .lease
        .as_ref()
        .map_or("", |l| l.attrs.backend_type.as_str());
    let mut peers: Vec<PeerReport> = status
        .peers
        .iter()
        .map(|p| PeerReport {
            subnet: p.subnet,
            ipv6_subnet: p.ipv6_subnet,
            public_ip: p.attrs.public_ip,
            backend: backend_name(&p.attrs.backend_type).to_owned(),
            route: kernel.as_ref().ok().map(|k| k.has_route(backend_type, p)),
        })
        .collect();
    peers.sort_by_key(|p| p.subnet);
    StatusReport {
        ready: status.ready(),
        reason: status.phase.reason(),
        lease: status.lease.as_ref().map(|l| LeaseReport {
            subnet: l.subnet,
            ipv6_subnet: l.ipv6_subnet,
            public_ip: l.attrs.public_ip,
            backend: backend_name(&l.attrs.backend_type).to_owned(),
            expires: l.expiration.map_or_else(|| "never".to_owned(), rfc3339),
            expires_unix: l.expiration.map_or(0, unix),
            reservation: l.expiration.is_none(),
        }),
        last_error: status.last_error.as_ref().map(|(t, m)| ErrorReport {
            time: rfc3339(*t),
            message: m.clone(),
        }),
        peers,
        route_check_error: kernel.err(),
        drift_repairs: counts.drift_repairs,
        lease_renewals: counts.lease_renewals,
        lease_errors: counts.lease_errors,
        duplicate_public_ips: status
            .duplicates
            .iter()
            .map(|d| DuplicateReport {
                public_ip: d.public_ip,
                subnets: d.subnets.clone(),
            })
            .collect(),
        wireguard: wireguard.map(wireguard_report),
        network_policy: status.netpol.clone(),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

//! Which devices a node runs and which peers each gets, as pure functions of the config and
//! the lease set (flannel-io/flannel `pkg/backend/wireguard/wireguard.go` `RegisterNetwork`,
//! `wireguard_network.go` `handleSubnetEvents` and `selectMode`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use netconf::flannel::WireguardMode;

use crate::backend::peers::{key_of, label_of, LeaseKey};
use crate::subnet::{Lease, WgKey, WireguardLeaseData};

/// The IPv4 (or, outside `separate` mode, the only) device.
pub const DEVICE: &str = "flannel-wg";
/// The IPv6 device in `separate` mode.
pub const DEVICE_V6: &str = "flannel-wg-v6";
/// The lease BackendType.
pub const BACKEND_TYPE: &str = "wireguard";

/// One peer of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: WgKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub psk: Option<WgKey>,
    /// Seconds; 0 is off.
    pub keepalive: u16,
}

/// A device to run: its name, where it listens, which families it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub name: &'static str,
    pub port: u16,
    /// A second port for IPv6 datagrams, where upstream publishes one the device does not
    /// listen on (`ListenPortV6` in the single-device modes): the userspace device listens
    /// there too, so the published data is true.
    pub port_v6: Option<u16>,
    pub ipv4: bool,
    pub ipv6: bool,
}

/// The devices of a mode (upstream creates them in this order; the key file is shared).
pub fn devices(
    mode: WireguardMode,
    ipv4: bool,
    ipv6: bool,
    port: u16,
    port_v6: u16,
) -> Vec<DeviceSpec> {
    match mode {
        WireguardMode::Separate => {
            let mut v = Vec::new();
            if ipv4 {
                v.push(DeviceSpec {
                    name: DEVICE,
                    port,
                    port_v6: None,
                    ipv4: true,
                    ipv6: false,
                });
            }
            if ipv6 {
                v.push(DeviceSpec {
                    name: DEVICE_V6,
                    port: port_v6,
                    port_v6: None,
                    ipv4: false,
                    ipv6: true,
                });
            }
            v
        }
        WireguardMode::Auto | WireguardMode::Ipv4 | WireguardMode::Ipv6 => vec![DeviceSpec {
            name: DEVICE,
            port,
            port_v6: (ipv6 && port_v6 != port).then_some(port_v6),
            ipv4,
            ipv6,
        }],
    }
}

/// Upstream's `IP4.IsPrivate`: 10/8, 172.16/12, 192.168/16.
fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 10 || (a == 172 && b & 0xf0 == 16) || (a == 192 && b == 168)
}

/// Upstream's `IP6.IsPrivate`: the first significant byte (a `big.Int`'s) is fc or fd.
fn private_v6(ip: Ipv6Addr) -> bool {
    ip.octets()
        .iter()
        .find(|b| **b != 0)
        .is_some_and(|b| b & 0xfe == 0xfc)
}

/// What this node contributes to every peer it plans.
#[derive(Debug, Clone)]
pub struct Local {
    pub mode: WireguardMode,
    pub ipv4: bool,
    pub ipv6: bool,
    pub port: u16,
    pub port_v6: u16,
    pub psk: Option<WgKey>,
    pub keepalive: u16,
    /// Our own public key: a lease that carries it is never a peer.
    pub public_key: WgKey,
    pub ext_v4: Option<Ipv4Addr>,
    pub ext_v6: Option<Ipv6Addr>,
}

/// Peers per device, in [`devices`] order, and the leases that could not be used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub per_device: Vec<Vec<PeerConfig>>,
    pub skipped: Vec<Skipped>,
}

/// A lease that is not a peer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub key: LeaseKey,
    pub label: String,
    pub why: String,
}

impl Local {
    /// Upstream's `selectMode` for `auto`.
    fn select(&self, ip4: Ipv4Addr, ip6: Option<Ipv6Addr>) -> WireguardMode {
        let Some(ip6) = ip6 else {
            return WireguardMode::Ipv4;
        };
        if !private_v4(ip4) && self.ext_v4.is_some() {
            return WireguardMode::Ipv4;
        }
        if !private_v6(ip6) && self.ext_v6.is_some_and(|e| !private_v6(e)) {
            return WireguardMode::Ipv6;
        }
        WireguardMode::Ipv4
    }

    fn endpoint_v4(&self, l: &Lease, d: &WireguardLeaseData) -> SocketAddr {
        let port = if d.port == 0 { self.port } else { d.port };
        SocketAddr::new(IpAddr::V4(l.attrs.public_ip), port)
    }

    fn endpoint_v6(&self, l: &Lease, d: &WireguardLeaseData, own_port: u16) -> Option<SocketAddr> {
        let port = if d.port == 0 { own_port } else { d.port };
        l.attrs
            .public_ipv6
            .map(|ip| SocketAddr::new(IpAddr::V6(ip), port))
    }

    fn peer(&self, key: WgKey, endpoint: Option<SocketAddr>, allowed: Vec<IpNet>) -> PeerConfig {
        PeerConfig {
            public_key: key,
            endpoint,
            allowed_ips: allowed,
            psk: self.psk,
            keepalive: self.keepalive,
        }
    }

    /// The peers `leases` (every lease but our own) make, per device.
    pub fn plan<'a>(&self, leases: impl IntoIterator<Item = &'a Lease>) -> Plan {
        let devices = devices(self.mode, self.ipv4, self.ipv6, self.port, self.port_v6);
        // Per device, by public key: the same node may briefly hold two leases.
        let mut by_key: Vec<BTreeMap<WgKey, PeerConfig>> = vec![BTreeMap::new(); devices.len()];
        let mut skipped = Vec::new();
        let mut sorted: Vec<&Lease> = leases.into_iter().collect();
        sorted.sort_by_key(|l| (l.subnet, l.ipv6_subnet));
        for l in sorted {
            if l.attrs.backend_type != BACKEND_TYPE {
                log::warn!(
                    "Ignoring non-wireguard subnet {}: type={:?}",
                    l.subnet,
                    l.attrs.backend_type
                );
                continue;
            }
            let v4 = self.ipv4 && l.enable_ipv4;
            let v6 = self.ipv6 && l.enable_ipv6 && l.ipv6_subnet.is_some();
            // Upstream decodes both data before configuring anything: either failing skips
            // the whole lease.
            let decode = |data: &Option<crate::subnet::BackendData>, which: &str| match data {
                Some(d) => WireguardLeaseData::from_data(d).map_err(|e| format!("{which}: {e}")),
                None => Err(format!("{which}: missing")),
            };
            let d4 = v4.then(|| decode(&l.attrs.backend_data, "BackendData"));
            let d6 = v6.then(|| decode(&l.attrs.backend_v6_data, "BackendV6Data"));
            let (d4, d6) = match (d4.transpose(), d6.transpose()) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(why), _) | (_, Err(why)) => {
                    skipped.push(Skipped {
                        key: key_of(l),
                        label: label_of(l),
                        why,
                    });
                    continue;
                }
            };
            // Two nodes with one private key (a cloned image, a key file on shared storage)
            // cannot reach each other: said once in the log and counted in /status, never
            // configured as a peer of ourselves.
            let own_key = |d: &Option<WireguardLeaseData>| {
                d.as_ref().is_some_and(|d| d.public_key == self.public_key)
            };
            if own_key(&d4) || own_key(&d6) {
                skipped.push(Skipped {
                    key: key_of(l),
                    label: label_of(l),
                    why: "it carries this node's own public key: another node uses the same private \
                          key (each node needs its own WIREGUARD_KEY_FILE), or it is this node's own \
                          earlier lease"
                        .into(),
                });
                continue;
            }
            let mut add = |dev: usize, peer: PeerConfig| {
                let entry = by_key[dev].entry(peer.public_key);
                match entry {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(peer);
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        let p = o.get_mut();
                        if p.endpoint.map(|e| e.ip()) != peer.endpoint.map(|e| e.ip()) {
                            log::warn!(
                                "two leases carry public key {} at different addresses; the one of {} is used",
                                peer.public_key,
                                l.subnet
                            );
                        }
                        p.endpoint = peer.endpoint.or(p.endpoint);
                        p.allowed_ips.extend(peer.allowed_ips);
                    }
                }
            };
            match self.mode {
                WireguardMode::Separate => {
                    let mut dev = 0;
                    if self.ipv4 {
                        if let Some(d) = &d4 {
                            add(
                                dev,
                                self.peer(
                                    d.public_key,
                                    Some(self.endpoint_v4(l, d)),
                                    vec![l.subnet.into()],
                                ),
                            );
                        }
                        dev += 1;
                    }
                    if let (Some(d), Some(net)) = (&d6, l.ipv6_subnet) {
                        add(
                            dev,
                            self.peer(
                                d.public_key,
                                self.endpoint_v6(l, d, self.port_v6),
                                vec![net.into()],
                            ),
                        );
                    }
                }
                mode => {
                    let mut allowed = Vec::new();
                    if d4.is_some() {
                        allowed.push(IpNet::from(l.subnet));
                    }
                    if let (Some(_), Some(net)) = (&d6, l.ipv6_subnet) {
                        allowed.push(IpNet::from(net));
                    }
                    // The v6 data's key when there is one, as upstream.
                    let Some(key) = d6.as_ref().or(d4.as_ref()).map(|d| d.public_key) else {
                        continue;
                    };
                    let mode = match mode {
                        WireguardMode::Auto => self.select(l.attrs.public_ip, l.attrs.public_ipv6),
                        m => m,
                    };
                    let endpoint = match mode {
                        WireguardMode::Ipv6 => d6
                            .as_ref()
                            .or(d4.as_ref())
                            .and_then(|d| self.endpoint_v6(l, d, self.port_v6)),
                        _ => d4.as_ref().or(d6.as_ref()).map(|d| self.endpoint_v4(l, d)),
                    };
                    add(0, self.peer(key, endpoint, allowed));
                }
            }
        }
        Plan {
            per_device: by_key
                .into_iter()
                .map(|m| {
                    m.into_values()
                        .map(|mut p| {
                            p.allowed_ips.sort();
                            p.allowed_ips.dedup();
                            p
                        })
                        .collect()
                })
                .collect(),
            skipped,
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

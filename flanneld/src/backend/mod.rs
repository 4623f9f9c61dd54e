//! Backends: how packets for other nodes' subnets leave this node.
//!
//! A backend turns the lease set of the other nodes into kernel state (routes, and for vxlan
//! also ARP and FDB entries). Both implemented backends share one engine: each peer lease is
//! first turned into the list of kernel objects it needs (routes, ARP and FDB entries); a batch of
//! events or a full reconcile is then one netlink batch ([`apply`]), so the number of netlink
//! round trips does not grow with the number of peers (upstream's #958). The [`udp`] backend
//! is the exception: its peers live in a userspace forwarding table, not in the kernel.
//!
//! Threading: a backend lives on one dedicated OS thread. It talks to the kernel through its
//! own [`netops::netlink::Handle`]; vxlan and udp also write a sysctl, which applies to the
//! network namespace of the calling thread, and udp runs its datapath on threads of its own.

mod apply;
pub mod datapath;
mod device_addr;
mod error;
mod hostgw;
mod leftovers;
mod network;
mod objects;
mod peers;
pub mod udp;
mod vxlan;
pub mod wireguard;

use std::net::{Ipv4Addr, Ipv6Addr};

use netconf::flannel::{BackendConfig, NetworkConfig};
use netops::netlink::Handle;

use crate::metrics::DatapathSource;
use crate::subnet::{Event, Lease, SharedLease, StoredMacs};

pub use error::BackendError;
pub use hostgw::HostGwBackend;
pub use udp::UdpBackend;
pub use vxlan::VxlanBackend;
pub use wireguard::{WireguardBackend, WireguardImpl, WireguardNode};

/// The interface flannel sends its (encapsulated or routed) traffic through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalInterface {
    pub name: String,
    pub index: u32,
    pub mtu: u32,
    /// The address configured on the interface.
    pub iface_addr: Ipv4Addr,
    /// The address other nodes reach us at (`--public-ip`; differs from `iface_addr` behind NAT).
    pub ext_addr: Ipv4Addr,
    pub iface_v6_addr: Option<Ipv6Addr>,
    pub ext_v6_addr: Option<Ipv6Addr>,
}

/// What one [`Backend::handle`] or [`Backend::reconcile`] call changed.
///
/// `handle`: `added`/`removed` count peer events fully applied. `reconcile`: `added`/`removed`
/// count kernel objects (route, neighbour, FDB entry) created or deleted, and `repaired` is
/// their sum. `errors` holds one line per failed kernel object or unusable lease, naming the
/// peer; the remaining objects were still applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: usize,
    pub removed: usize,
    pub repaired: usize,
    pub errors: Vec<String>,
}

impl ApplyReport {
    fn absorb(&mut self, other: ApplyReport) {
        self.added += other.added;
        self.removed += other.removed;
        self.repaired += other.repaired;
        self.errors.extend(other.errors);
    }
}

pub trait Backend: Send {
    /// "vxlan", "host-gw"; "" for udp (upstream leases carry no BackendType for udp).
    fn backend_type(&self) -> &'static str;
    /// Create/verify devices before the lease exists; returns the BackendData to publish
    /// (vxlan: VNI + VtepMAC).
    fn prepare(&mut self) -> Result<Option<serde_json::Value>, BackendError>;
    /// The BackendV6Data to publish, available after [`Backend::prepare`] when IPv6 is on.
    fn backend_v6_data(&self) -> Option<serde_json::Value> {
        None
    }
    /// The lease is ours now: address the device etc.
    fn activate(&mut self, own: &Lease) -> Result<(), BackendError>;
    /// FLANNEL_MTU for subnet.env.
    fn mtu(&self) -> u32;
    /// Apply one batch of peer events (own lease already filtered out) in as few netlink
    /// round trips as possible.
    fn handle(&mut self, events: &[Event]) -> Result<ApplyReport, BackendError>;
    /// Make the kernel match exactly `peers` (the full current set).
    fn reconcile(&mut self, peers: &[SharedLease]) -> Result<ApplyReport, BackendError>;
    /// The external interface's addresses changed (a DHCP renumbering, a moved VM): follow
    /// them without a restart, before the lease is republished with the new PublicIP. The
    /// default does nothing, which is right for backends bound to no local address (host-gw
    /// routes through the interface by index; WireGuard listens on every address).
    fn set_external(&mut self, _ext: &ExternalInterface) -> Result<(), BackendError> {
        Ok(())
    }
    /// A live view of what the backend runs itself (udp's datapath counters, WireGuard's
    /// devices and peers), for `/metrics` and `/status`; vxlan and host-gw have none.
    fn datapath_source(&self) -> Option<DatapathSource> {
        None
    }
    /// flanneld is stopping. Most backends leave their kernel state for the next run (or
    /// upstream's flanneld) to take over; WireGuard removes its devices, as upstream does.
    fn stop(&mut self) {}
}

/// Builds the backend named by `cfg`. Nothing touches the kernel before [`Backend::prepare`],
/// except host-gw's NAT check, which only compares the given addresses.
pub fn new_backend(
    cfg: &BackendConfig,
    ext: &ExternalInterface,
    network: &NetworkConfig,
    nl: Handle,
) -> Result<Box<dyn Backend>, BackendError> {
    new_backend_with(cfg, ext, network, nl, NodeOptions::default())
}

/// What a backend needs from this node beyond the cluster-wide net-conf.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// vxlan: reuse these MACs when a device has to be created.
    pub vtep_macs: StoredMacs,
    /// wireguard: implementation choice and key file.
    pub wireguard: WireguardNode,
}

/// [`new_backend`] with this node's own settings.
pub fn new_backend_with(
    cfg: &BackendConfig,
    ext: &ExternalInterface,
    network: &NetworkConfig,
    nl: Handle,
    node: NodeOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    match cfg {
        BackendConfig::Vxlan(opts) => Ok(Box::new(VxlanBackend::new(
            opts.clone(),
            ext.clone(),
            network,
            nl,
            node.vtep_macs,
        )?)),
        BackendConfig::HostGw => Ok(Box::new(HostGwBackend::new(ext.clone(), network, nl)?)),
        BackendConfig::Udp(opts) => Ok(Box::new(UdpBackend::new(
            opts.port,
            ext.clone(),
            network,
            nl,
        )?)),
        BackendConfig::Wireguard(opts) => Ok(Box::new(WireguardBackend::new(
            opts.clone(),
            node.wireguard,
            ext.clone(),
            network,
            nl,
        )?)),
        BackendConfig::Other { kind, .. } => Err(BackendError::Unsupported(kind.clone())),
    }
}

//! wireguard: every node is a WireGuard peer of every other; pod traffic between nodes is
//! encrypted. Upstream's backend key for key (flannel-io/flannel `pkg/backend/wireguard`, read
//! at commit cdf76059), on the kernel's device where the kernel has WireGuard and on our own
//! userspace engine where it has not; the two speak the same protocol.
//!
//! Rules taken from upstream, with the file they come from:
//!
//! - Config (`wireguard.go`, `RegisterNetwork`): Backend keys `ListenPort` (51820),
//!   `ListenPortV6` (51821), `MTU` (the external interface's), `PSK`,
//!   `PersistentKeepaliveInterval` (seconds, 0 = off) and `Mode` (`separate`, `auto`, `ipv4`,
//!   `ipv6`; anything else fails with "no valid Mode configured"); decoded in
//!   `netconf::flannel::WireguardOptions`, where out-of-range values are refused by name.
//! - Devices (`wireguard.go`): `separate` makes `flannel-wg` for IPv4 on `ListenPort` and
//!   `flannel-wg-v6` for IPv6 on `ListenPortV6`; the other modes make one `flannel-wg` on
//!   `ListenPort` for both families. Both devices use the one key file.
//! - Key (`device.go`, `setupKeys`): see [`keys`]: `$WIREGUARD_KEY_FILE` or
//!   `/run/flannel/wgkey`, created 0400 in a 0755 folder when absent, reused when present,
//!   an unparsable file is an error; `PSK` parsed the same way.
//! - Lease (`wireguard.go`, `newSubnetAttrs`): BackendType `wireguard`; BackendData
//!   `{"PublicKey":…,"Port":ListenPort}` when IPv4 is on, BackendV6Data
//!   `{"PublicKey":…,"Port":ListenPortV6}` when IPv6 is on (also in the single-device
//!   modes, where the userspace device therefore listens on `ListenPortV6` for IPv6 too).
//!   Type in `subnet::WireguardLeaseData`.
//! - Device setup (`device.go`, `newWGDevice`, `ensureLink`, `Configure`): an existing link
//!   of that name is deleted and created again; MTU = `MTU` − 80 (`wireguard_network.go`,
//!   `overhead`: outer IPv6 header, UDP, WireGuard header and tag), which is also
//!   FLANNEL_MTU; private key and listen port set with all peers replaced; address = the
//!   lease's subnet address as /32 (and /128 for IPv6) with other addresses inside the
//!   network removed (`ip.EnsureV4AddressOnLink`); link up; one route for the whole
//!   network through the device, scope link (`addRoute`, `RouteReplace`). The device is
//!   removed when flanneld stops.
//! - Peers (`wireguard_network.go`, `handleSubnetEvents`): leases of another BackendType are
//!   ignored with a warning; BackendData (and BackendV6Data) are decoded first and a lease
//!   whose data does not decode is skipped whole; endpoint `PublicIP:Port`
//!   (`[PublicIPv6]:Port`), where a missing or zero `Port` (flannel before v0.26.6) means this
//!   node's own listen port; AllowedIPs replaced by the lease's subnet (`separate`) or both
//!   subnets (other modes); the PSK and keepalive on every peer; a removed lease removes the
//!   peer; in `auto` mode the endpoint family follows `selectMode` (IPv4 unless only IPv6 is
//!   public on both sides). See [`plan`].
//!
//! Where we differ: peers are computed from the whole lease set, so two leases with one key
//! (a node that moved to a new subnet) make one peer with both subnets instead of the second
//! removing the first; a lease whose PublicIP changed updates the peer's endpoint in place,
//! keeping its session; values upstream would pass to the kernel unchecked are refused; a
//! new key file appears atomically; the sockets listen on the wildcard address, so the
//! node's own address may change under them.
//!
//! Which implementation runs: `--wireguard-impl` (`FLANNELD_WIREGUARD_IMPL`): `kernel`,
//! `userspace`, or `auto` (default: the kernel's if creating a `wireguard` link works, which
//! also loads the module, else userspace). `/status` and `flannel_wireguard_peers` say which.

mod kernel;
pub mod keys;
pub mod plan;
mod userspace;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netconf::flannel::{NetworkConfig, WireguardOptions};
use netops::netlink::{Family, Handle, LinkKind, NetlinkError};

use self::kernel::KernelDevice;
use self::keys::KeyFileError;
use self::plan::{DeviceSpec, Local};
use self::userspace::UserspaceDevice;
use super::datapath::{DatapathError, MAX_WORKERS};
use super::device_addr::{self, FamilyAddr, SCOPE_LINK};
use super::network::networks;
use super::peers::{key_of, LeaseKey};
use super::{ApplyReport, Backend, BackendError, ExternalInterface};
use crate::metrics::wireguard::{DeviceStats, Implementation, WireguardSnapshot};
use crate::metrics::{CounterSnapshot, DatapathSource};
use crate::subnet::{Event, Lease, SharedLease, WgKey, WireguardLeaseData};

pub use self::plan::{PeerConfig, BACKEND_TYPE, DEVICE, DEVICE_V6};
pub use self::userspace::probe;

/// Which WireGuard runs the devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WireguardImpl {
    /// The kernel's where it has WireGuard, else ours.
    #[default]
    Auto,
    Kernel,
    Userspace,
}

impl WireguardImpl {
    pub fn parse(s: &str) -> Option<WireguardImpl> {
        match s {
            "auto" | "" => Some(WireguardImpl::Auto),
            "kernel" => Some(WireguardImpl::Kernel),
            "userspace" => Some(WireguardImpl::Userspace),
            _ => None,
        }
    }
}

impl fmt::Display for WireguardImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireguardImpl::Auto => "auto",
            WireguardImpl::Kernel => "kernel",
            WireguardImpl::Userspace => "userspace",
        })
    }
}

/// Node-local settings of the backend (the rest is the cluster-wide net-conf).
#[derive(Debug, Clone)]
pub struct WireguardNode {
    pub implementation: WireguardImpl,
    /// `$WIREGUARD_KEY_FILE` or upstream's default.
    pub key_file: std::path::PathBuf,
    /// Forwarding threads per userspace device; `None`: one per core.
    pub workers: Option<usize>,
}

impl Default for WireguardNode {
    fn default() -> Self {
        WireguardNode {
            implementation: WireguardImpl::Auto,
            key_file: keys::DEFAULT_KEY_FILE.into(),
            workers: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WireguardError {
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("the kernel has no WireGuard ({0}); run with --wireguard-impl=userspace or auto")]
    KernelUnavailable(String),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("wireguard device {0} vanished; restart flanneld to recreate it")]
    DeviceVanished(String),
    #[error("failed to start the wireguard timer thread: {0}")]
    Thread(std::io::Error),
    #[error("MTU {mtu} of {source_name} leaves no room for the 80-byte WireGuard overhead")]
    MtuTooSmall { mtu: u32, source_name: String },
}

/// What one `set_peers` changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PeerChanges {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

/// A device's state at one instant, as an observer reads it from any thread.
pub(crate) struct Observed {
    pub stats: Result<DeviceStats, String>,
    pub counters: Option<CounterSnapshot>,
}

pub(crate) type Observer = Arc<dyn Fn() -> Observed + Send + Sync>;

/// A WireGuard device: the kernel's or ours.
pub(crate) trait Device: Send {
    fn name(&self) -> &str;
    fn index(&self) -> u32;
    fn implementation(&self) -> Implementation;
    /// Makes the device's peers exactly `peers`; peers whose key stays keep their sessions.
    fn set_peers(&mut self, peers: &[PeerConfig]) -> Result<PeerChanges, WireguardError>;
    fn observer(&self) -> Observer;
}

struct Running {
    spec: DeviceSpec,
    device: Box<dyn Device>,
}

pub struct WireguardBackend {
    nl: Handle,
    opts: WireguardOptions,
    node: WireguardNode,
    ext: ExternalInterface,
    network: Option<Ipv4Net>,
    ipv6_network: Option<Ipv6Net>,
    /// The MTU the 80 bytes are taken from.
    base_mtu: u32,
    key: Option<keys::NodeKey>,
    psk: Option<WgKey>,
    devices: Vec<Running>,
    own: Option<Lease>,
    leases: HashMap<LeaseKey, SharedLease>,
    /// Leases that could not be made peers, with why, so each is reported once.
    skipped: HashMap<LeaseKey, String>,
    skipped_total: Arc<AtomicU64>,
}

impl WireguardBackend {
    pub fn new(
        opts: WireguardOptions,
        node: WireguardNode,
        ext: ExternalInterface,
        network: &NetworkConfig,
        nl: Handle,
    ) -> Result<WireguardBackend, BackendError> {
        let (v4, v6) = networks(network, &ext)?;
        let (base_mtu, source_name) = match opts.mtu {
            Some(m) => (m, "the configured MTU".to_owned()),
            None => (ext.mtu, format!("interface {:?}", ext.name)),
        };
        // The device keeps at least IPv4's minimum MTU (IPv6's where it carries IPv6).
        let floor = if v6.is_some() { 1280 } else { 68 };
        if base_mtu < netconf::flannel::WIREGUARD_OVERHEAD + floor {
            return Err(WireguardError::MtuTooSmall {
                mtu: base_mtu,
                source_name,
            }
            .into());
        }
        // The PSK is checked before anything touches the kernel.
        let psk = keys::psk(opts.psk.as_deref()).map_err(WireguardError::from)?;
        Ok(WireguardBackend {
            nl,
            opts,
            node,
            ext,
            network: v4,
            ipv6_network: v6,
            base_mtu,
            key: None,
            psk,
            devices: Vec::new(),
            own: None,
            leases: HashMap::new(),
            skipped: HashMap::new(),
            skipped_total: Arc::new(AtomicU64::new(0)),
        })
    }

    fn specs(&self) -> Vec<DeviceSpec> {
        plan::devices(
            self.opts.mode,
            self.network.is_some(),
            self.ipv6_network.is_some(),
            self.opts.listen_port,
            self.opts.listen_port_v6,
        )
    }

    fn device_mtu(&self) -> u32 {
        self.base_mtu - netconf::flannel::WIREGUARD_OVERHEAD
    }

    fn open(&mut self, spec: &DeviceSpec, key: &WgKey) -> Result<Box<dyn Device>, WireguardError> {
        let mtu = self.device_mtu();
        let kernel = || -> Result<Box<dyn Device>, WireguardError> {
            let nl = Handle::new()?;
            Ok(Box::new(KernelDevice::create(
                spec.name, mtu, key, spec.port, nl,
            )?))
        };
        match self.node.implementation {
            WireguardImpl::Kernel => return kernel(),
            WireguardImpl::Auto => match kernel() {
                Ok(d) => return Ok(d),
                Err(WireguardError::KernelUnavailable(why)) => log::info!(
                    "wireguard: the kernel has no WireGuard ({why}); running flanneld's userspace implementation on {}",
                    spec.name
                ),
                Err(e) => return Err(e),
            },
            WireguardImpl::Userspace => {}
        }
        // A kernel device a killed run left behind has our name; a TUN device of a live
        // flanneld is left alone (opening it fails with a clear message).
        if let Some(old) = self.nl.link_by_name(spec.name)? {
            if old.kind != Some(LinkKind::Tun) {
                log::warn!("{:?} already exists; recreating device", spec.name);
                self.nl.delete_link(old.index)?;
            }
        }
        let mut listen = Vec::new();
        if spec.ipv4 {
            listen.push(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                spec.port,
            ));
        }
        if spec.ipv6 {
            let port = spec.port_v6.unwrap_or(spec.port);
            listen.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
        }
        let workers = self
            .node
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let dev = UserspaceDevice::create(
            spec.name,
            key,
            listen,
            workers.clamp(1, MAX_WORKERS),
            &mut self.nl,
        )?;
        self.nl.set_mtu(dev.index(), mtu)?;
        Ok(Box::new(dev))
    }

    /// Address, link state and network route of every device, as upstream's `Configure`;
    /// gateway routes into the flannel network that a previous backend (host-gw, vxlan with
    /// DirectRouting) left are removed, since they would carry pod traffic around the
    /// tunnel in clear text. Returns how many changes were made.
    fn configure(&mut self, own: &Lease) -> Result<usize, BackendError> {
        let mut changed = 0;
        for i in 0..self.devices.len() {
            let (spec, index) = (self.devices[i].spec.clone(), self.devices[i].device.index());
            match self.nl.link_by_index(index)? {
                Some(l) if l.name == spec.name => {}
                _ => return Err(WireguardError::DeviceVanished(spec.name.to_owned()).into()),
            }
            let mut families = Vec::new();
            if let (true, Some(net)) = (spec.ipv4, self.network) {
                families.push(FamilyAddr {
                    host: Ipv4Net::new(own.subnet.network(), 32).expect("/32").into(),
                    network: net.into(),
                    scope: Some(SCOPE_LINK),
                });
            }
            if let (true, Some(net), Some(sub)) = (spec.ipv6, self.ipv6_network, own.ipv6_subnet) {
                families.push(FamilyAddr {
                    host: Ipv6Net::new(sub.network(), 128).expect("/128").into(),
                    network: net.into(),
                    scope: Some(SCOPE_LINK),
                });
            }
            changed += device_addr::ensure(&mut self.nl, index, &families)?;
        }
        changed += self.remove_bypass_routes()?;
        Ok(changed)
    }

    fn remove_bypass_routes(&mut self) -> Result<usize, BackendError> {
        let mut removed = 0;
        let nets = [
            (Family::V4, self.network.map(IpNet::from)),
            (Family::V6, self.ipv6_network.map(IpNet::from)),
        ];
        for (family, net) in nets {
            let Some(net) = net else { continue };
            for r in self.nl.route_list(family, None)? {
                if r.gw.is_some() && super::network::is_subnet_of(&r.dst, &net) {
                    log::info!(
                        "wireguard: removing route {} left by another backend (it would bypass the tunnel)",
                        r.describe()
                    );
                    removed += usize::from(self.nl.del_route(&r)?);
                }
            }
        }
        Ok(removed)
    }

    fn local(&self) -> Option<Local> {
        Some(Local {
            mode: self.opts.mode,
            ipv4: self.network.is_some(),
            ipv6: self.ipv6_network.is_some(),
            port: self.opts.listen_port,
            port_v6: self.opts.listen_port_v6,
            psk: self.psk,
            keepalive: self.opts.persistent_keepalive,
            public_key: self.key.as_ref()?.public,
            ext_v4: Some(self.ext.ext_addr),
            ext_v6: self.ext.ext_v6_addr,
        })
    }

    /// Plans every device's peers from the current leases and applies them.
    fn sync(&mut self) -> Result<ApplyReport, BackendError> {
        let local = self
            .local()
            .ok_or(BackendError::NotPrepared("the wireguard backend"))?;
        let plan = local.plan(self.leases.values().map(|l| &**l));
        let mut report = ApplyReport::default();
        let mut now_skipped = HashMap::new();
        for skip in plan.skipped {
            if self.skipped.get(&skip.key) != Some(&skip.why) {
                report
                    .errors
                    .push(format!("{}: skipped: {}", skip.label, skip.why));
                self.skipped_total.fetch_add(1, Ordering::Relaxed);
            }
            now_skipped.insert(skip.key, skip.why);
        }
        self.skipped = now_skipped;
        for (running, peers) in self.devices.iter_mut().zip(plan.per_device) {
            match running.device.set_peers(&peers) {
                Ok(c) => {
                    report.added += c.added;
                    report.removed += c.removed;
                    report.repaired += c.updated;
                }
                Err(e) => report
                    .errors
                    .push(format!("{}: {e}", running.device.name())),
            }
        }
        Ok(report)
    }
}

impl Backend for WireguardBackend {
    fn backend_type(&self) -> &'static str {
        BACKEND_TYPE
    }

    fn prepare(&mut self) -> Result<Option<serde_json::Value>, BackendError> {
        if self.devices.is_empty() {
            super::leftovers::remove(&mut self.nl, BACKEND_TYPE)?;
            let key = keys::load_or_create(&self.node.key_file).map_err(WireguardError::from)?;
            for spec in self.specs() {
                let device = self.open(&spec, &key.private)?;
                self.devices.push(Running { spec, device });
            }
            self.key = Some(key);
        }
        Ok(self.backend_data(self.network.is_some(), self.opts.listen_port))
    }

    fn backend_v6_data(&self) -> Option<serde_json::Value> {
        self.backend_data(self.ipv6_network.is_some(), self.opts.listen_port_v6)
    }

    fn activate(&mut self, own: &Lease) -> Result<(), BackendError> {
        self.configure(own)?;
        self.leases.remove(&key_of(own));
        self.own = Some(own.clone());
        Ok(())
    }

    fn mtu(&self) -> u32 {
        self.device_mtu()
    }

    fn handle(&mut self, events: &[Event]) -> Result<ApplyReport, BackendError> {
        let own = self.own.as_ref().map(key_of);
        let (mut added, mut removed) = (0, 0);
        for event in events {
            match event {
                Event::Added(l) if Some(key_of(l)) != own => {
                    added += 1;
                    self.leases.insert(key_of(l), SharedLease::clone(l));
                }
                Event::Removed(l) if Some(key_of(l)) != own => {
                    removed += 1;
                    self.leases.remove(&key_of(l));
                }
                _ => {}
            }
        }
        let mut report = self.sync()?;
        if let Some(own) = self.own.clone() {
            // Upstream re-adds the network route on every new lease.
            self.configure(&own)?;
        }
        report.added = added;
        report.removed = removed;
        Ok(report)
    }

    fn reconcile(&mut self, peers: &[SharedLease]) -> Result<ApplyReport, BackendError> {
        let own = self.own.as_ref().map(key_of);
        self.leases = peers
            .iter()
            .filter(|l| Some(key_of(l)) != own)
            .map(|l| (key_of(l), SharedLease::clone(l)))
            .collect();
        let mut report = self.sync()?;
        let mut repaired = report.added + report.removed + report.repaired;
        if let Some(own) = self.own.clone() {
            repaired += self.configure(&own)?;
        }
        report.repaired = repaired;
        Ok(report)
    }

    fn datapath_source(&self) -> Option<DatapathSource> {
        let observers: Vec<Observer> = self.devices.iter().map(|r| r.device.observer()).collect();
        let implementation = self
            .devices
            .first()
            .map_or(Implementation::Userspace, |r| r.device.implementation());
        let skipped = Arc::clone(&self.skipped_total);
        Some(DatapathSource::Wireguard(Arc::new(move || {
            let mut snap = WireguardSnapshot {
                implementation,
                devices: Vec::new(),
                datapath: None,
                skipped_leases: skipped.load(Ordering::Relaxed),
                error: None,
            };
            for observe in &observers {
                let o = observe();
                match o.stats {
                    Ok(d) => snap.devices.push(d),
                    Err(e) => snap.error = Some(e),
                }
                if let Some(c) = o.counters {
                    snap.datapath = Some(match snap.datapath {
                        Some(total) => total.add(&c),
                        None => c,
                    });
                }
            }
            snap
        })))
    }

    fn stop(&mut self) {
        // Upstream removes its devices when it stops; a TUN device goes with its queues.
        self.devices.clear();
    }
}

impl WireguardBackend {
    fn backend_data(&self, on: bool, port: u16) -> Option<serde_json::Value> {
        let key = self.key.as_ref()?;
        on.then(|| {
            WireguardLeaseData {
                public_key: key.public,
                port,
            }
            .to_json()
        })
    }
}

//! udp: packets for other nodes leave through the TUN device `flannel0` and are carried
//! between nodes in UDP (port 8285 by default) by userspace threads, in upstream's wire format:
//! the UDP payload is the inner IPv4 packet, nothing more, so our nodes and upstream's talk.
//!
//! Unlike upstream's one-thread proxy (one syscall per packet each way), the datapath batches
//! syscalls, runs a worker per core on a multi-queue TUN device and uses the kernel's
//! offloads: TCP super-packets from the TUN device are segmented once in userspace and sent
//! with `UDP_SEGMENT`; received datagram trains (`UDP_GRO`) are merged back into TCP
//! super-packets for the TUN device. See `gso` for the wire-compatibility rules.
//!
//! Peers live in a userspace table (subnet → PublicIP:Port), not in the kernel: the only
//! kernel state is the device, its /32 address and the route of the flannel network.

pub mod checksum;
mod counters;
pub mod gso;
pub mod packet;
mod socket;
mod table;
mod tun;
mod worker;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ipnet::{IpNet, Ipv4Net};
use netconf::flannel::NetworkConfig;
use netops::netlink::{Addr, Family, Handle, RouteSpec};

use self::worker::{Egress, Ingress, Shared, TunMode};
use super::network::networks;
use super::{ApplyReport, Backend, BackendError, ExternalInterface};
use crate::subnet::{Event, Lease, SharedLease};

pub use self::counters::{CounterSnapshot, DropReason};
pub use self::table::RouteTable;

/// The device name upstream's `flannel%d` pattern yields on a node running one flanneld.
pub const DEVICE: &str = "flannel0";
/// Outer IPv4 and UDP headers.
pub const OVERHEAD: u32 = 28;
/// Upper bound on workers, whatever the core count: beyond it the TUN queues contend.
const MAX_WORKERS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("failed to open TUN device {name}: {source}{}", if advice.is_empty() { String::new() } else { format!(" ({advice})") })]
    Tun {
        name: String,
        source: io::Error,
        advice: &'static str,
    },
    #[error("failed to bind the udp backend's socket to {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: io::Error,
    },
    #[error("MTU {mtu} of interface {iface:?} leaves no room for the 28-byte udp overhead")]
    MtuTooSmall { mtu: u32, iface: String },
    #[error("the udp backend carries IPv4 only; disable EnableIPv6 or use vxlan")]
    Ipv6Unsupported,
    #[error("TUN device {0} vanished; restart flanneld to recreate it")]
    DeviceGone(&'static str),
    #[error("failed to start forwarding thread: {0}")]
    Thread(io::Error),
}

/// How the datapath came up: what the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathInfo {
    pub workers: usize,
    pub vnet_hdr: bool,
    pub tso: bool,
    pub udp_gso: bool,
    pub udp_gro: bool,
}

struct Device {
    index: u32,
    info: DatapathInfo,
    sockets: Vec<Arc<std::os::fd::OwnedFd>>,
    threads: Vec<JoinHandle<()>>,
}

pub struct UdpBackend {
    nl: Handle,
    ext: ExternalInterface,
    network: Ipv4Net,
    mtu: u32,
    workers: usize,
    shared: Arc<Shared>,
    device: Option<Device>,
    own: Option<Lease>,
    peers: HashMap<Ipv4Net, SocketAddrV4>,
}

impl UdpBackend {
    pub fn new(
        port: u16,
        ext: ExternalInterface,
        network: &NetworkConfig,
        nl: Handle,
    ) -> Result<UdpBackend, BackendError> {
        if network.enable_ipv6 {
            return Err(UdpError::Ipv6Unsupported.into());
        }
        let (v4, _) = networks(network, &ext)?;
        let network = v4.ok_or(BackendError::NoNetwork)?;
        if ext.mtu <= OVERHEAD + 68 {
            return Err(UdpError::MtuTooSmall {
                mtu: ext.mtu,
                iface: ext.name.clone(),
            }
            .into());
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_WORKERS);
        Ok(UdpBackend {
            mtu: ext.mtu - OVERHEAD,
            shared: Arc::new(Shared {
                table: Default::default(),
                counters: Default::default(),
                network,
                port,
                own_ip: AtomicU32::new(0),
                stop: AtomicBool::new(false),
                gso: AtomicBool::new(false),
            }),
            nl,
            ext,
            network,
            workers,
            device: None,
            own: None,
            peers: HashMap::new(),
        })
    }

    /// Limits the number of workers (queues and threads); call before `prepare`.
    pub fn with_workers(mut self, n: usize) -> UdpBackend {
        self.workers = n.clamp(1, MAX_WORKERS);
        self
    }

    /// Datapath totals since `prepare`.
    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    /// What the kernel granted, once prepared.
    pub fn datapath(&self) -> Option<DatapathInfo> {
        self.device.as_ref().map(|d| d.info)
    }

    fn open(&mut self) -> Result<Device, BackendError> {
        let tun = tun::open(DEVICE, self.workers)?;
        let link = self
            .nl
            .link_by_name(DEVICE)?
            .ok_or(UdpError::DeviceGone(DEVICE))?;
        self.nl.set_mtu(link.index, self.mtu)?;
        // Our ICMP errors come from the device's own address; without accept_local the
        // kernel drops them as martians and senders wait for a timeout instead.
        let key = format!("net/ipv4/conf/{DEVICE}/accept_local");
        if let Err(e) = netops::sysctl::set(&key, "1") {
            log::warn!("udp backend: {key}: {e}; ICMP errors for unknown subnets will be dropped");
        }
        let local = SocketAddrV4::new(self.ext.iface_addr, self.shared.port);
        let socks = socket::bind(local, tun.queues.len())?;
        self.shared.gso.store(socks.gso, Ordering::Relaxed);
        let mode = TunMode {
            vnet_hdr: tun.vnet_hdr,
            tso: tun.tso,
        };
        let info = DatapathInfo {
            workers: tun.queues.len(),
            vnet_hdr: tun.vnet_hdr,
            tso: tun.tso,
            udp_gso: socks.gso,
            udp_gro: socks.gro,
        };
        log::info!(
            "udp backend: {DEVICE} (MTU {}) with {} queue(s), vnet header {}, TSO {}, UDP GSO {}, UDP GRO {}; listening on {local}",
            self.mtu, info.workers, info.vnet_hdr, info.tso, info.udp_gso, info.udp_gro
        );
        let mut device = Device {
            index: link.index,
            info,
            sockets: Vec::new(),
            threads: Vec::new(),
        };
        for (i, (q, s)) in tun.queues.into_iter().zip(socks.fds).enumerate() {
            let (tun, sock) = (Arc::new(q), Arc::new(s));
            device.sockets.push(sock.clone());
            let egress = Egress {
                shared: self.shared.clone(),
                tun: tun.clone(),
                sock: sock.clone(),
                mode,
            };
            let ingress = Ingress {
                shared: self.shared.clone(),
                tun,
                sock,
                mode,
            };
            for (name, job) in [
                (
                    format!("udp-out-{i}"),
                    Box::new(move || egress.run()) as Box<dyn FnOnce() + Send>,
                ),
                (format!("udp-in-{i}"), Box::new(move || ingress.run())),
            ] {
                match std::thread::Builder::new().name(name).spawn(job) {
                    Ok(t) => device.threads.push(t),
                    Err(e) => {
                        stop(&self.shared, &mut device);
                        return Err(UdpError::Thread(e).into());
                    }
                }
            }
        }
        Ok(device)
    }

    /// Address, link state and the network route, as upstream sets them; returns how many
    /// had to be changed.
    fn configure(&mut self, own: &Lease) -> Result<usize, BackendError> {
        let index = self.device_index()?;
        let want = Ipv4Net::new(own.subnet.network(), 32).expect("/32 is valid");
        let mut changed = 0;
        for a in self.nl.addr_list(Some(index), Some(Family::V4))? {
            if let IpNet::V4(net) = a.addr {
                if net != want && self.network.contains(&net.addr()) {
                    changed += usize::from(self.nl.del_addr(&a)?);
                }
            }
        }
        changed += usize::from(self.nl.add_addr(&Addr::new(index, want.into()))?);
        let link = self
            .nl
            .link_by_index(index)?
            .ok_or(UdpError::DeviceGone(DEVICE))?;
        if !link.up {
            self.nl.set_link_up(index)?;
            changed += 1;
        }
        let route = RouteSpec::new(self.network.into()).dev(index);
        let present = self
            .nl
            .route_list(Family::V4, None)?
            .iter()
            .any(|r| r.dst == route.dst && r.oif == Some(index) && r.gw.is_none());
        if !present {
            self.nl.replace_route(&route)?;
            changed += 1;
        }
        self.shared
            .own_ip
            .store(u32::from(own.subnet.network()), Ordering::Relaxed);
        Ok(changed)
    }

    fn device_index(&mut self) -> Result<u32, BackendError> {
        let index = self
            .device
            .as_ref()
            .ok_or(BackendError::NotPrepared("activate"))?
            .index;
        match self.nl.link_by_index(index)? {
            Some(l) if l.name == DEVICE => Ok(index),
            _ => Err(UdpError::DeviceGone(DEVICE).into()),
        }
    }

    fn is_own(&self, lease: &Lease) -> bool {
        self.own.as_ref().is_some_and(|o| o.subnet == lease.subnet)
    }

    fn endpoint(&self, lease: &Lease) -> SocketAddrV4 {
        SocketAddrV4::new(lease.attrs.public_ip, self.shared.port)
    }

    fn publish(&self) {
        self.shared
            .table
            .publish(RouteTable::new(self.peers.iter().map(|(n, e)| (*n, *e))));
    }
}

fn stop(shared: &Shared, device: &mut Device) {
    shared.stop.store(true, Ordering::Relaxed);
    for s in &device.sockets {
        socket::shutdown(s);
    }
    for t in device.threads.drain(..) {
        let _ = t.join();
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        if let Some(mut d) = self.device.take() {
            stop(&self.shared, &mut d);
        }
    }
}

impl Backend for UdpBackend {
    /// Upstream's udp leases carry no BackendType.
    fn backend_type(&self) -> &'static str {
        ""
    }

    fn counter_source(&self) -> Option<super::CounterSource> {
        let shared = Arc::clone(&self.shared);
        Some(Arc::new(move || shared.counters.snapshot()))
    }

    fn prepare(&mut self) -> Result<Option<serde_json::Value>, BackendError> {
        if self.device.is_none() {
            let device = self.open()?;
            self.device = Some(device);
        }
        Ok(None)
    }

    fn activate(&mut self, own: &Lease) -> Result<(), BackendError> {
        self.configure(own)?;
        self.own = Some(own.clone());
        if self.peers.remove(&own.subnet).is_some() {
            self.publish();
        }
        Ok(())
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The socket is bound to the interface address: on a new one the datapath restarts
    /// (new TUN queues, sockets and threads; the forwarding table is kept) and `flannel0` is
    /// configured again.
    fn set_external(&mut self, ext: &ExternalInterface) -> Result<(), BackendError> {
        let rebind = ext.iface_addr != self.ext.iface_addr;
        self.ext = ext.clone();
        if !rebind {
            return Ok(());
        }
        if let Some(mut device) = self.device.take() {
            stop(&self.shared, &mut device);
            self.shared.stop.store(false, Ordering::Relaxed);
            self.device = Some(self.open()?);
            if let Some(own) = self.own.clone() {
                self.configure(&own)?;
            }
            self.publish();
        }
        Ok(())
    }

    /// Upstream's udp backend does not look at BackendType: every lease is a peer.
    fn handle(&mut self, events: &[Event]) -> Result<ApplyReport, BackendError> {
        let mut report = ApplyReport::default();
        for event in events {
            match event {
                Event::Added(l) if l.enable_ipv4 && !self.is_own(l) => {
                    self.peers.insert(l.subnet, self.endpoint(l));
                    report.added += 1;
                }
                // A lease without IPv4 (the family another holder keeps) was never installed:
                // its subnet's entry belongs to someone else.
                Event::Removed(l) if l.enable_ipv4 && !self.is_own(l) => {
                    self.peers.remove(&l.subnet);
                    report.removed += 1;
                }
                _ => {}
            }
        }
        self.publish();
        Ok(report)
    }

    fn reconcile(&mut self, peers: &[SharedLease]) -> Result<ApplyReport, BackendError> {
        let mut report = ApplyReport::default();
        if let Some(own) = self.own.clone() {
            report.repaired += self.configure(&own)?;
        }
        let wanted: HashMap<Ipv4Net, SocketAddrV4> = peers
            .iter()
            .filter(|l| l.enable_ipv4 && !self.is_own(l))
            .map(|l| (l.subnet, self.endpoint(l)))
            .collect();
        report.added = wanted
            .iter()
            .filter(|(n, e)| self.peers.get(n) != Some(e))
            .count();
        report.removed = self
            .peers
            .keys()
            .filter(|n| !wanted.contains_key(n))
            .count();
        report.repaired += report.added + report.removed;
        self.peers = wanted;
        self.publish();
        Ok(report)
    }
}

//! udp: packets for other nodes leave through the TUN device `flannel0` and are carried
//! between nodes in UDP (port 8285 by default) by userspace threads, in upstream's wire format:
//! the UDP payload is the inner IPv4 packet, nothing more, so our nodes and upstream's talk.
//!
//! The threads, the TUN device and its offloads are the shared [`datapath`](super::datapath);
//! this module holds upstream's udp rules: which peer serves a destination, TTL handling, the
//! ICMP error for unknown destinations, and which datagrams are accepted.
//!
//! Peers live in a userspace table (subnet → PublicIP:Port), not in the kernel: the only
//! kernel state is the device, its /32 address and the route of the flannel network.

mod table;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use netconf::flannel::NetworkConfig;
use netops::netlink::Handle;

use super::datapath::gso::{self, VnetHdr, Wire};
use super::datapath::packet::{self, ICMP_ERROR_MAX};
use super::datapath::{
    Datapath, DatapathConfig, DatapathError, DatapathInfo, Inbound, Outbox, Published, Reader,
    Space, Transform, TunSink, MAX_WORKERS,
};
use super::device_addr::{self, FamilyAddr};
use super::network::networks;
use super::{ApplyReport, Backend, BackendError, ExternalInterface};
use crate::metrics::{CounterSnapshot, DatapathCounters, DatapathSource, DropReason, Tally};
use crate::subnet::{Event, Lease, SharedLease};

pub use self::table::RouteTable;

/// The device name upstream's `flannel%d` pattern yields on a node running one flanneld.
pub const DEVICE: &str = "flannel0";
/// Outer IPv4 and UDP headers.
pub const OVERHEAD: u32 = 28;
/// Room to cut a 64 KiB super-packet at the smallest MSS a TSO packet may use (536): the
/// headers repeat ~123 times; three times the input covers even 120-byte headers.
const SEGMENT_ROOM: usize = 3 * gso::MAX_IP_PACKET;

#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("MTU {mtu} of interface {iface:?} leaves no room for the 28-byte udp overhead")]
    MtuTooSmall { mtu: u32, iface: String },
    #[error("the udp backend carries IPv4 only; disable EnableIPv6 or use vxlan")]
    Ipv6Unsupported,
}

/// upstream's udp rules over the shared datapath.
struct UdpTransform {
    table: Published<RouteTable>,
    counters: DatapathCounters,
    network: Ipv4Net,
    /// The TUN address (own lease's network IP) as u32; 0 before activation.
    own_ip: AtomicU32,
}

impl Transform for UdpTransform {
    type Local = (Reader<RouteTable>, [u8; ICMP_ERROR_MAX]);

    fn local(&self) -> Self::Local {
        (self.table.reader(), [0; ICMP_ERROR_MAX])
    }

    fn refresh(&self, local: &mut Self::Local) {
        local.0.refresh(&self.table);
    }

    fn outbound(
        &self,
        (table, icmp): &mut Self::Local,
        hdr: &VnetHdr,
        pkt: &mut [u8],
        out: &mut Outbox,
        tun: &TunSink<'_>,
        tally: &mut Tally,
    ) {
        let h = match packet::parse(pkt) {
            Ok(h) => h,
            Err(reason) => return tally.drop(reason, 1),
        };
        let pkt = &mut pkt[..h.total_len];
        let Some(peer) = table.get().lookup(h.dst) else {
            tally.drop(DropReason::NoRoute, 1);
            let own = Ipv4Addr::from(self.own_ip.load(Ordering::Relaxed));
            if !own.is_unspecified() {
                if let Some(len) = packet::net_unreachable(pkt, own, icmp) {
                    match tun.write(&icmp[..len], true) {
                        Ok(()) => tally.icmp_unreachable += 1,
                        Err(_) => tally.drop(DropReason::TunWriteFailed, 1),
                    }
                }
            }
            return;
        };
        if let Err(reason) = packet::decrement_ttl(pkt) {
            return tally.drop(reason, 1);
        }
        out.reserve(SEGMENT_ROOM, 0, tally);
        let space = out.space();
        let (stride, count, total) = match gso::to_wire(hdr, pkt, space) {
            Ok(Wire::InPlace { len }) => {
                space[..len].copy_from_slice(&pkt[..len]);
                (len, 1, len)
            }
            Ok(Wire::Segmented {
                stride,
                count,
                total,
            }) => (stride, count, total),
            Err(reason) => return tally.drop(reason, 1),
        };
        tally.packets_out += count as u64;
        tally.bytes_out += total as u64;
        out.commit(SocketAddr::V4(peer), stride, count, total, 1, tally);
    }

    fn inbound<'b>(
        &self,
        (table, _): &mut Self::Local,
        src: SocketAddr,
        dgram: &'b mut [u8],
        _space: &mut Space<'b>,
        _replies: &mut Outbox,
        tally: &mut Tally,
    ) -> Option<Inbound<'b>> {
        let from_peer = match src {
            SocketAddr::V4(s) => table.get().is_peer(*s.ip()),
            SocketAddr::V6(_) => false,
        };
        if !from_peer {
            tally.drop(DropReason::UnknownPeer, 1);
            return None;
        }
        match packet::accept_inbound(dgram, self.network) {
            Ok(len) => Some(Inbound {
                pkt: &downgrade(dgram)[..len],
                verified: false,
            }),
            Err(reason) => {
                tally.drop(reason, 1);
                None
            }
        }
    }

    fn counters(&self) -> &DatapathCounters {
        &self.counters
    }
}

/// Ends the exclusive borrow of a packet that was rewritten in place, keeping its lifetime.
fn downgrade(pkt: &mut [u8]) -> &[u8] {
    pkt
}

pub struct UdpBackend {
    nl: Handle,
    ext: ExternalInterface,
    network: Ipv4Net,
    mtu: u32,
    port: u16,
    workers: usize,
    transform: Arc<UdpTransform>,
    datapath: Option<(u32, Datapath)>,
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
            transform: Arc::new(UdpTransform {
                table: Published::default(),
                counters: DatapathCounters::default(),
                network,
                own_ip: AtomicU32::new(0),
            }),
            nl,
            ext,
            network,
            port,
            workers,
            datapath: None,
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
        self.transform.counters.snapshot()
    }

    /// What the kernel granted, once prepared.
    pub fn datapath(&self) -> Option<DatapathInfo> {
        self.datapath.as_ref().map(|(_, d)| d.info)
    }

    fn open(&mut self) -> Result<(u32, Datapath), BackendError> {
        let local = SocketAddrV4::new(self.ext.iface_addr, self.port);
        let dp = Datapath::start(
            &DatapathConfig {
                device: DEVICE,
                workers: self.workers,
                listen: vec![local.into()],
                name: "udp",
            },
            Arc::clone(&self.transform),
        )
        .map_err(UdpError::from)?;
        let link = self
            .nl
            .link_by_name(DEVICE)?
            .ok_or_else(|| BackendError::DeviceGone(DEVICE.into()))?;
        self.nl.set_mtu(link.index, self.mtu)?;
        // Our ICMP errors come from the device's own address; without accept_local the
        // kernel drops them as martians and senders wait for a timeout instead.
        let key = format!("net/ipv4/conf/{DEVICE}/accept_local");
        if let Err(e) = netops::sysctl::set(&key, "1") {
            log::warn!("udp backend: {key}: {e}; ICMP errors for unknown subnets will be dropped");
        }
        let info = dp.info;
        log::info!(
            "udp backend: {DEVICE} (MTU {}) with {} queue(s), vnet header {}, TSO {}, UDP GSO {}, UDP GRO {}; listening on {local}",
            self.mtu, info.workers, info.vnet_hdr, info.tso, info.udp_gso, info.udp_gro
        );
        Ok((link.index, dp))
    }

    /// Address, link state and the network route, as upstream sets them; returns how many
    /// had to be changed.
    fn configure(&mut self, own: &Lease) -> Result<usize, BackendError> {
        let index = self.device_index()?;
        let host = Ipv4Net::new(own.subnet.network(), 32).expect("/32 is valid");
        let changed = device_addr::ensure(
            &mut self.nl,
            index,
            &[FamilyAddr {
                host: host.into(),
                network: IpNet::V4(self.network),
                scope: None,
            }],
        )?;
        self.transform
            .own_ip
            .store(u32::from(own.subnet.network()), Ordering::Relaxed);
        Ok(changed)
    }

    fn device_index(&mut self) -> Result<u32, BackendError> {
        let index = self
            .datapath
            .as_ref()
            .ok_or(BackendError::NotPrepared("activate"))?
            .0;
        match self.nl.link_by_index(index)? {
            Some(l) if l.name == DEVICE => Ok(index),
            _ => Err(BackendError::DeviceGone(DEVICE.into())),
        }
    }

    fn is_own(&self, lease: &Lease) -> bool {
        self.own.as_ref().is_some_and(|o| o.subnet == lease.subnet)
    }

    fn endpoint(&self, lease: &Lease) -> SocketAddrV4 {
        SocketAddrV4::new(lease.attrs.public_ip, self.port)
    }

    fn publish(&self) {
        self.transform
            .table
            .publish(RouteTable::new(self.peers.iter().map(|(n, e)| (*n, *e))));
    }
}

impl Backend for UdpBackend {
    /// Upstream's udp leases carry no BackendType.
    fn backend_type(&self) -> &'static str {
        ""
    }

    fn datapath_source(&self) -> Option<DatapathSource> {
        let t = Arc::clone(&self.transform);
        Some(DatapathSource::Udp(Arc::new(move || t.counters.snapshot())))
    }

    fn prepare(&mut self) -> Result<Option<serde_json::Value>, BackendError> {
        if self.datapath.is_none() {
            super::leftovers::remove(&mut self.nl, "")?;
            let dp = self.open()?;
            self.datapath = Some(dp);
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
        // The old queues and sockets close (and the device goes) before it is opened again.
        if let Some(old) = self.datapath.take() {
            drop(old);
            self.datapath = Some(self.open()?);
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

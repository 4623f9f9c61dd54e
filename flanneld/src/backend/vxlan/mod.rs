//! vxlan: one VTEP device per address family; each peer gets a permanent ARP entry and an FDB
//! entry for its VTEP, and a route to its subnet through the device. With DirectRouting, a peer
//! on our own L2 segment is routed to directly instead, without encapsulation.

mod device;

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netconf::flannel::{NetworkConfig, VxlanOptions};
use netops::netlink::{Family, Handle, MacAddr, NetlinkError};
use serde_json::Value;

use self::device::{DeviceConfig, Vtep};
use super::network::{is_subnet_of, networks};
use super::objects::{Object, PeerRoute};
use super::peers::{PeerSync, Planner};
use super::{ApplyReport, Backend, BackendError, ExternalInterface};
use crate::subnet::{BackendData, Event, Lease, SharedLease};
use crate::subnet::{StoredMacs, VxlanLeaseData};

/// Outer IPv4 header, UDP and VXLAN headers and the inner Ethernet header.
const ENCAP_OVERHEAD: u32 = 50;
/// The same over an IPv6 underlay (40-byte outer header). Upstream uses 50 here too, but the
/// kernel caps such a device at lower MTU − 70 anyway, so asking for more only fails.
const ENCAP_OVERHEAD_V6: u32 = 70;
const MAX_VNI: u32 = (1 << 24) - 1;

pub struct VxlanBackend {
    nl: Handle,
    planner: VtepPlanner,
    sync: PeerSync,
    own: Option<Lease>,
}

/// One address family's VTEP: how it must look, the network it serves, the device once made.
struct Side {
    cfg: DeviceConfig,
    network: IpNet,
    vtep: Option<Vtep>,
}

struct VtepPlanner {
    direct_routing: bool,
    learning: bool,
    vni: u32,
    ext: ExternalInterface,
    v4: Option<Side>,
    v6: Option<Side>,
}

impl VxlanBackend {
    pub fn new(
        opts: VxlanOptions,
        ext: ExternalInterface,
        network: &NetworkConfig,
        nl: Handle,
        macs: StoredMacs,
    ) -> Result<VxlanBackend, BackendError> {
        if opts.vni > MAX_VNI {
            return Err(BackendError::InvalidVni(opts.vni));
        }
        let (base_mtu, mtu_source) = match opts.mtu {
            0 => (ext.mtu, format!("interface {:?}", ext.name)),
            cfg => (cfg, "the configured MTU".to_string()),
        };
        let (v4, v6) = networks(network, &ext)?;
        let overhead = if v6.is_some() {
            ENCAP_OVERHEAD_V6
        } else {
            ENCAP_OVERHEAD
        };
        if base_mtu <= overhead {
            return Err(BackendError::MtuTooSmall {
                mtu: base_mtu,
                source_name: mtu_source,
                overhead,
            });
        }
        let device = |name: String, local: IpAddr, mac: Option<MacAddr>| DeviceConfig {
            name,
            vni: opts.vni,
            port: opts.port,
            learning: opts.learning,
            gbp: opts.gbp,
            mtu: base_mtu
                - if local.is_ipv6() {
                    ENCAP_OVERHEAD_V6
                } else {
                    ENCAP_OVERHEAD
                },
            underlay: ext.index,
            local,
            mac,
            no_tx_checksum: opts.disable_tx_checksum_offload,
        };
        let v4 = v4.map(|net| Side {
            cfg: device(
                format!("flannel.{}", opts.vni),
                ext.ext_addr.into(),
                macs.v4,
            ),
            network: net.into(),
            vtep: None,
        });
        let v6 = match (v6, ext.ext_v6_addr) {
            (Some(net), Some(local)) => Some(Side {
                cfg: device(format!("flannel-v6.{}", opts.vni), local.into(), macs.v6),
                network: net.into(),
                vtep: None,
            }),
            _ => None,
        };
        Ok(VxlanBackend {
            nl,
            planner: VtepPlanner {
                direct_routing: opts.direct_routing,
                learning: opts.learning,
                vni: opts.vni,
                ext,
                v4,
                v6,
            },
            sync: PeerSync::default(),
            own: None,
        })
    }

    /// Re-creates a VTEP someone deleted, keeping its MAC so peers' entries stay valid.
    /// Returns whether anything was re-created: the caller then re-addresses it and replays
    /// every peer, because the kernel dropped their routes, ARP and FDB entries with it.
    fn recover_devices(&mut self) -> Result<bool, BackendError> {
        let mut recreated = false;
        for side in self.planner.sides_mut() {
            let Some(vtep) = side.vtep else {
                return Err(BackendError::NotPrepared("the vxlan backend"));
            };
            if device::alive(&mut self.nl, &side.cfg.name, &vtep)? {
                continue;
            }
            log::warn!(
                "VXLAN device {:?} vanished; recreating it with MAC {}",
                side.cfg.name,
                vtep.mac
            );
            side.cfg.mac = Some(vtep.mac);
            side.vtep = Some(device::ensure(&mut self.nl, &side.cfg)?);
            recreated = true;
        }
        Ok(recreated)
    }

    /// Puts the lease address back on the devices and brings them up, if they were changed
    /// behind our back. A no-op before [`Backend::activate`].
    fn reconfigure(&mut self) -> Result<(), BackendError> {
        match self.own.clone() {
            Some(own) => self.configure(&own),
            None => Ok(()),
        }
    }

    fn configure(&mut self, own: &Lease) -> Result<(), BackendError> {
        let wanted = [
            Some(IpNet::from(Ipv4Net::from(own.subnet.network()))),
            own.ipv6_subnet
                .map(|n| IpNet::from(Ipv6Net::from(n.network()))),
        ];
        let sides = [self.planner.v4.as_ref(), self.planner.v6.as_ref()];
        for (side, want) in sides.into_iter().zip(wanted) {
            let (Some(side), Some(want)) = (side, want) else {
                continue;
            };
            let vtep = side.vtep.ok_or(BackendError::NotPrepared("activate"))?;
            device::configure(&mut self.nl, &side.cfg.name, &vtep, want, side.network)?;
        }
        Ok(())
    }
}

impl VtepPlanner {
    fn sides(&self) -> impl Iterator<Item = &Side> {
        self.v4.iter().chain(self.v6.iter())
    }

    fn sides_mut(&mut self) -> impl Iterator<Item = &mut Side> {
        self.v4.iter_mut().chain(self.v6.iter_mut())
    }

    fn data(&self, side: &Option<Side>) -> Option<Value> {
        let vtep = side.as_ref()?.vtep?;
        Some(
            VxlanLeaseData {
                vni: self.vni,
                vtep_mac: vtep.mac,
            }
            .to_json(),
        )
    }

    /// DirectRouting applies when the kernel reaches the peer without a gateway, out of the
    /// external interface: it is on our L2 segment and needs no tunnel.
    fn is_direct(&self, nl: &mut Handle, public: IpAddr) -> bool {
        self.direct_routing
            && nl
                .route_get(public)
                .is_ok_and(|r| r.gw.is_none() && r.oif == Some(self.ext.index))
    }

    fn direct_route(&self, subnet: IpNet, public: IpAddr) -> Object {
        Object::Route(PeerRoute {
            dst: subnet,
            gw: Some(public),
            oif: self.ext.index,
            onlink: false,
        })
    }

    /// The peer's VTEP address is its subnet's network address (`10.244.1.0`), on-link through
    /// the device; ARP and FDB entries are installed first so the kernel never has to ask.
    fn tunnel(vtep: &Vtep, subnet: IpNet, mac: MacAddr, public: IpAddr) -> [Object; 3] {
        let gw = subnet.network();
        [
            Object::Neigh {
                ifindex: vtep.index,
                ip: gw,
                mac,
            },
            Object::Fdb {
                ifindex: vtep.index,
                mac,
                dst: public,
            },
            Object::Route(PeerRoute {
                dst: subnet,
                gw: Some(gw),
                oif: vtep.index,
                onlink: true,
            }),
        ]
    }

    /// The subnet, public address and backend data of one family of a lease, if the lease has
    /// that family and we serve it.
    fn endpoints<'l>(
        &self,
        lease: &'l Lease,
        v6: bool,
    ) -> Option<(Vtep, IpNet, IpAddr, Option<&'l BackendData>)> {
        if v6 {
            let vtep = self.v6.as_ref()?.vtep?;
            let subnet = lease.ipv6_subnet.filter(|_| lease.enable_ipv6)?;
            let public = lease.attrs.public_ipv6?;
            Some((
                vtep,
                subnet.into(),
                public.into(),
                lease.attrs.backend_v6_data.as_ref(),
            ))
        } else {
            let vtep = self.v4.as_ref()?.vtep?;
            lease.enable_ipv4.then_some(())?;
            let public = lease.attrs.public_ip;
            Some((
                vtep,
                lease.subnet.into(),
                public.into(),
                lease.attrs.backend_data.as_ref(),
            ))
        }
    }
}

impl Planner for VtepPlanner {
    fn backend_type(&self) -> &'static str {
        "vxlan"
    }

    fn plan(&mut self, nl: &mut Handle, lease: &Lease) -> Result<Vec<Object>, String> {
        let mut objects = Vec::new();
        for v6 in [false, true] {
            let Some((vtep, subnet, public, data)) = self.endpoints(lease, v6) else {
                continue;
            };
            if self.is_direct(nl, public) {
                objects.push(self.direct_route(subnet, public));
                continue;
            }
            let field = if v6 { "BackendV6Data" } else { "BackendData" };
            let data = data.ok_or_else(|| format!("lease has no {field}"))?;
            let data = VxlanLeaseData::from_data(data)?;
            objects.extend(Self::tunnel(&vtep, subnet, data.vtep_mac, public));
        }
        Ok(objects)
    }

    fn removal_candidates(&self, lease: &Lease) -> Vec<Object> {
        let mut objects = Vec::new();
        for v6 in [false, true] {
            let Some((vtep, subnet, public, data)) = self.endpoints(lease, v6) else {
                continue;
            };
            objects.push(self.direct_route(subnet, public));
            match data.map(VxlanLeaseData::from_data) {
                Some(Ok(data)) => {
                    objects.extend(Self::tunnel(&vtep, subnet, data.vtep_mac, public))
                }
                // Without the MAC only the route can be named; the next reconcile removes the
                // ARP and FDB entries, which no route uses any more.
                _ => objects.push(Self::tunnel(&vtep, subnet, MacAddr::default(), public)[2]),
            }
        }
        objects
    }

    fn owned(&self, nl: &mut Handle) -> Result<Vec<Object>, NetlinkError> {
        let mut owned = Vec::new();
        for (family, side) in [(Family::V4, &self.v4), (Family::V6, &self.v6)] {
            let Some((side, vtep)) = side.as_ref().and_then(|s| Some((s, s.vtep?))) else {
                continue;
            };
            owned.extend(
                nl.neigh_list(Some(vtep.index), family)?
                    .iter()
                    .filter_map(Object::from_neigh),
            );
            owned.extend(
                nl.fdb_list(vtep.index)?
                    .iter()
                    .filter(|f| f.dst.is_some_and(|d| Family::of(&d) == family))
                    .filter_map(|f| Object::from_fdb(f, !self.learning)),
            );
            // Direct routes out of the external interface are ours too, whether or not
            // DirectRouting is on now: no other route to a flannel subnet goes that way.
            owned.extend(
                nl.route_list(family, None)?
                    .iter()
                    .filter_map(PeerRoute::from_kernel)
                    .filter(|r| is_subnet_of(&r.dst, &side.network))
                    .filter(|r| r.oif == vtep.index || r.oif == self.ext.index)
                    .map(Object::Route),
            );
        }
        Ok(owned)
    }
}

impl Backend for VxlanBackend {
    fn backend_type(&self) -> &'static str {
        "vxlan"
    }

    fn prepare(&mut self) -> Result<Option<Value>, BackendError> {
        super::leftovers::remove(&mut self.nl, "vxlan")?;
        for side in self.planner.sides_mut() {
            side.vtep = Some(device::ensure(&mut self.nl, &side.cfg)?);
        }
        Ok(self.planner.data(&self.planner.v4))
    }

    fn backend_v6_data(&self) -> Option<Value> {
        self.planner.data(&self.planner.v6)
    }

    fn activate(&mut self, own: &Lease) -> Result<(), BackendError> {
        self.configure(own)?;
        self.sync.set_own(own);
        self.own = Some(own.clone());
        Ok(())
    }

    /// The smallest device MTU: pods have one MTU for both families, and it must fit the
    /// tunnel with the larger overhead.
    fn mtu(&self) -> u32 {
        self.planner
            .sides()
            .map(|s| s.cfg.mtu)
            .min()
            .unwrap_or(self.planner.ext.mtu)
    }

    fn handle(&mut self, events: &[Event]) -> Result<ApplyReport, BackendError> {
        let recreated = self.recover_devices()?;
        if recreated {
            self.reconfigure()?;
        }
        let mut report = self.sync.handle(&mut self.nl, &mut self.planner, events);
        if recreated {
            let peers = self.sync.leases();
            report.absorb(
                self.sync
                    .reconcile(&mut self.nl, &mut self.planner, &peers)?,
            );
        }
        Ok(report)
    }

    /// A VTEP sends from the external address: a device whose local address or underlay
    /// link no longer matches is re-created with its MAC (so peers' ARP and FDB entries stay
    /// valid), re-addressed, and every peer replayed into it.
    fn set_external(&mut self, ext: &ExternalInterface) -> Result<(), BackendError> {
        let locals = [
            Some(IpAddr::from(ext.ext_addr)),
            ext.ext_v6_addr.map(IpAddr::from),
        ];
        let mut moved = false;
        for (side, local) in [self.planner.v4.as_mut(), self.planner.v6.as_mut()]
            .into_iter()
            .zip(locals)
        {
            let (Some(side), Some(local)) = (side, local) else {
                continue;
            };
            if side.cfg.local == local && side.cfg.underlay == ext.index {
                continue;
            }
            log::info!(
                "VXLAN device {:?}: local address {} -> {local}",
                side.cfg.name,
                side.cfg.local
            );
            side.cfg.local = local;
            side.cfg.underlay = ext.index;
            if let Some(vtep) = side.vtep {
                side.cfg.mac = Some(vtep.mac);
                side.vtep = Some(device::ensure(&mut self.nl, &side.cfg)?);
                moved = true;
            }
        }
        self.planner.ext = ext.clone();
        if moved {
            self.reconfigure()?;
            let peers = self.sync.leases();
            let report = self
                .sync
                .reconcile(&mut self.nl, &mut self.planner, &peers)?;
            for e in &report.errors {
                log::error!("replaying peers after an address change: {e}");
            }
        }
        Ok(())
    }

    fn reconcile(&mut self, peers: &[SharedLease]) -> Result<ApplyReport, BackendError> {
        self.recover_devices()?;
        self.reconfigure()?;
        Ok(self
            .sync
            .reconcile(&mut self.nl, &mut self.planner, peers)?)
    }
}

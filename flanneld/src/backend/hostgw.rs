//! host-gw: every peer subnet is routed straight to the peer's public IP on the external
//! interface. No device, no encapsulation; all nodes must share one L2 segment.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;
use netops::netlink::{Family, Handle, NetlinkError};

use super::apply::Hint;
use super::network::{is_subnet_of, networks};
use super::objects::{Object, PeerRoute};
use super::peers::{PeerSync, Planner};
use super::{ApplyReport, Backend, BackendError, ExternalInterface};
use crate::subnet::{Event, Lease, SharedLease};

pub struct HostGwBackend {
    nl: Handle,
    routes: RoutePlanner,
    sync: PeerSync,
}

struct RoutePlanner {
    ext: ExternalInterface,
    network: Option<Ipv4Net>,
    ipv6_network: Option<Ipv6Net>,
}

fn unreachable_hint(object: &Object, err: &NetlinkError) -> Option<&'static str> {
    (matches!(object, Object::Route(_)) && err.errno().map(|e| e as i32) == Some(libc::ENETUNREACH))
        .then_some(
            "the peer is not on this node's L2 segment; host-gw needs all nodes on one segment \
         (use the vxlan backend with DirectRouting to mix segments)",
        )
}

impl HostGwBackend {
    pub fn new(
        ext: ExternalInterface,
        network: &NetworkConfig,
        nl: Handle,
    ) -> Result<HostGwBackend, BackendError> {
        if ext.ext_addr != ext.iface_addr {
            return Err(BackendError::Nat);
        }
        let (v4, v6) = networks(network, &ext)?;
        Ok(HostGwBackend {
            nl,
            routes: RoutePlanner {
                ext,
                network: v4,
                ipv6_network: v6,
            },
            sync: PeerSync::default(),
        })
    }
}

impl RoutePlanner {
    fn route(&self, dst: IpNet, gw: IpAddr) -> Object {
        Object::Route(PeerRoute {
            dst,
            gw: Some(gw),
            oif: self.ext.index,
            onlink: false,
        })
    }
}

impl Planner for RoutePlanner {
    fn backend_type(&self) -> &'static str {
        "host-gw"
    }

    fn plan(&mut self, _nl: &mut Handle, lease: &Lease) -> Result<Vec<Object>, String> {
        Ok(self.removal_candidates(lease))
    }

    fn removal_candidates(&self, lease: &Lease) -> Vec<Object> {
        let mut objects = Vec::new();
        if self.network.is_some() && lease.enable_ipv4 {
            objects.push(self.route(lease.subnet.into(), lease.attrs.public_ip.into()));
        }
        if self.ipv6_network.is_some() && lease.enable_ipv6 {
            if let (Some(net), Some(gw)) = (lease.ipv6_subnet, lease.attrs.public_ipv6) {
                objects.push(self.route(net.into(), gw.into()));
            }
        }
        objects
    }

    fn owned(&self, nl: &mut Handle) -> Result<Vec<Object>, NetlinkError> {
        let families = [
            (Family::V4, self.network.map(IpNet::from)),
            (Family::V6, self.ipv6_network.map(IpNet::from)),
        ];
        let mut owned = Vec::new();
        for (family, network) in families {
            let Some(network) = network else { continue };
            owned.extend(
                nl.route_list(family, None)?
                    .iter()
                    .filter_map(PeerRoute::from_kernel)
                    .filter(|r| r.oif == self.ext.index && is_subnet_of(&r.dst, &network))
                    .map(Object::Route),
            );
        }
        Ok(owned)
    }

    fn hint(&self) -> Option<Hint> {
        Some(unreachable_hint)
    }
}

impl Backend for HostGwBackend {
    fn backend_type(&self) -> &'static str {
        "host-gw"
    }

    fn prepare(&mut self) -> Result<Option<serde_json::Value>, BackendError> {
        super::leftovers::remove(&mut self.nl, "host-gw")?;
        Ok(None)
    }

    fn activate(&mut self, own: &Lease) -> Result<(), BackendError> {
        self.sync.set_own(own);
        Ok(())
    }

    fn mtu(&self) -> u32 {
        self.routes.ext.mtu
    }

    fn handle(&mut self, events: &[Event]) -> Result<ApplyReport, BackendError> {
        Ok(self.sync.handle(&mut self.nl, &mut self.routes, events))
    }

    fn reconcile(&mut self, peers: &[SharedLease]) -> Result<ApplyReport, BackendError> {
        Ok(self.sync.reconcile(&mut self.nl, &mut self.routes, peers)?)
    }
}

//! Neighbour (ARP/NDP) entries and bridge/vxlan forwarding-database entries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::transport::{Client, Handle};
use super::{Family, MacAddr, NetlinkError, Request};

/// An ARP (IPv4) or NDP (IPv6) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neigh {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<MacAddr>,
    pub permanent: bool,
}

/// A forwarding-database entry of a vxlan device (`bridge fdb ... self`): frames for `mac`
/// are tunnelled to `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fdb {
    pub ifindex: u32,
    pub mac: MacAddr,
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

fn neigh_message(family: AddressFamily, ifindex: u32) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = family;
    msg.header.ifindex = ifindex;
    msg
}

/// FDB messages are AF_BRIDGE, for which the packet crate keeps NDA_DST as raw bytes.
fn raw_ip(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Other(v4.octets().to_vec()),
        IpAddr::V6(v6) => NeighbourAddress::Other(v6.octets().to_vec()),
    }
}

/// The FDB entry `mac` -> `dst` on the device itself (NTF_SELF), without a state.
fn fdb_message(ifindex: u32, mac: MacAddr, dst: IpAddr) -> NeighbourMessage {
    let mut msg = neigh_message(AddressFamily::Bridge, ifindex);
    msg.header.flags = NeighbourFlags::Own;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    msg.attributes
        .push(NeighbourAttribute::Destination(raw_ip(dst)));
    msg
}

fn ip_of(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        NeighbourAddress::Other(b) => match b.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(b.as_slice()).ok()?,
            ))),
            16 => Some(IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(b.as_slice()).ok()?,
            ))),
            _ => None,
        },
        _ => None,
    }
}

fn lladdr(msg: &NeighbourMessage) -> Option<MacAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => MacAddr::from_slice(b),
        _ => None,
    })
}

fn dst(msg: &NeighbourMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(d) => ip_of(d),
        _ => None,
    })
}

impl Request {
    /// A permanent ARP/NDP entry, created or overwritten (`ip neigh replace ... nud permanent`).
    pub fn neigh_set(ifindex: u32, ip: IpAddr, mac: MacAddr) -> Request {
        let mut msg = neigh_message(Family::of(&ip).address_family(), ifindex);
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::Destination(ip.into()));
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        Request::new(
            format!("failed to set neighbour {ip} lladdr {mac} on link {ifindex}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn neigh_del(ifindex: u32, ip: IpAddr) -> Request {
        let mut msg = neigh_message(Family::of(&ip).address_family(), ifindex);
        msg.attributes
            .push(NeighbourAttribute::Destination(ip.into()));
        Request::new(
            format!("failed to delete neighbour {ip} on link {ifindex}"),
            RouteNetlinkMessage::DelNeighbour(msg),
            0,
        )
    }

    /// A permanent FDB entry on the device itself (NTF_SELF), pointing `mac` at `dst`.
    pub fn fdb_set(ifindex: u32, mac: MacAddr, dst: IpAddr) -> Request {
        let mut msg = fdb_message(ifindex, mac, dst);
        msg.header.state = NeighbourState::Permanent;
        Request::new(
            format!("failed to set fdb entry {mac} dst {dst} on link {ifindex}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn fdb_del(ifindex: u32, mac: MacAddr, dst: IpAddr) -> Request {
        Request::new(
            format!("failed to delete fdb entry {mac} dst {dst} on link {ifindex}"),
            RouteNetlinkMessage::DelNeighbour(fdb_message(ifindex, mac, dst)),
            0,
        )
    }
}

impl<C: Client> Handle<C> {
    pub fn set_neigh(
        &mut self,
        ifindex: u32,
        ip: IpAddr,
        mac: MacAddr,
    ) -> Result<(), NetlinkError> {
        self.execute(&Request::neigh_set(ifindex, ip, mac))
    }

    /// `Ok(false)` if there was no such entry.
    pub fn del_neigh(&mut self, ifindex: u32, ip: IpAddr) -> Result<bool, NetlinkError> {
        self.execute_remove(&Request::neigh_del(ifindex, ip))
    }

    pub fn neigh_list(
        &mut self,
        ifindex: Option<u32>,
        family: Family,
    ) -> Result<Vec<Neigh>, NetlinkError> {
        let query = neigh_message(family.address_family(), 0);
        let replies = self.dump(
            "failed to list neighbours",
            RouteNetlinkMessage::GetNeighbour(query),
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewNeighbour(m)
                    if ifindex.is_none() || ifindex == Some(m.header.ifindex) =>
                {
                    Some(Neigh {
                        ifindex: m.header.ifindex,
                        ip: dst(m)?,
                        mac: lladdr(m),
                        permanent: m.header.state == NeighbourState::Permanent,
                    })
                }
                _ => None,
            })
            .collect())
    }

    pub fn set_fdb(&mut self, ifindex: u32, mac: MacAddr, dst: IpAddr) -> Result<(), NetlinkError> {
        self.execute(&Request::fdb_set(ifindex, mac, dst))
    }

    /// `Ok(false)` if there was no such entry.
    pub fn del_fdb(
        &mut self,
        ifindex: u32,
        mac: MacAddr,
        dst: IpAddr,
    ) -> Result<bool, NetlinkError> {
        self.execute_remove(&Request::fdb_del(ifindex, mac, dst))
    }

    /// FDB entries of one device.
    pub fn fdb_list(&mut self, ifindex: u32) -> Result<Vec<Fdb>, NetlinkError> {
        let query = neigh_message(AddressFamily::Bridge, 0);
        let replies = self.dump(
            "failed to list fdb entries",
            RouteNetlinkMessage::GetNeighbour(query),
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewNeighbour(m) if m.header.ifindex == ifindex => Some(Fdb {
                    ifindex,
                    mac: lladdr(m)?,
                    dst: dst(m),
                    permanent: m.header.state == NeighbourState::Permanent,
                }),
                _ => None,
            })
            .collect())
    }
}

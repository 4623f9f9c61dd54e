//! The kernel objects a peer needs, as plain values that can be compared with what the kernel
//! reports and turned into netlink requests.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netops::netlink::{Fdb, MacAddr, Neigh, Request, RouteKind, RouteSpec};

const RTPROT_KERNEL: u8 = 2;

/// A route flannel owns: to a peer subnet, through a gateway, out of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PeerRoute {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: u32,
    pub onlink: bool,
}

impl PeerRoute {
    fn spec(&self) -> RouteSpec {
        let mut r = RouteSpec::new(self.dst).dev(self.oif);
        if let Some(gw) = self.gw {
            r = r.via(gw);
        }
        if self.onlink {
            r = r.onlink();
        }
        r
    }

    /// The route as read back, if it could be a peer route: unicast, through a gateway, out of
    /// one interface, and not made by the kernel itself (an IPv6 address's own prefix route
    /// lies inside the flannel network but belongs to the address, not to a peer).
    pub fn from_kernel(r: &RouteSpec) -> Option<PeerRoute> {
        (r.kind == RouteKind::Unicast && r.protocol != RTPROT_KERNEL).then_some(())?;
        Some(PeerRoute {
            dst: r.dst,
            gw: Some(r.gw?),
            oif: r.oif?,
            onlink: r.onlink,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Object {
    /// Permanent ARP/NDP entry: the peer's VTEP address resolves to its VTEP MAC.
    Neigh {
        ifindex: u32,
        ip: IpAddr,
        mac: MacAddr,
    },
    /// Permanent FDB entry on the vxlan device: frames for `mac` go to `dst`.
    Fdb {
        ifindex: u32,
        mac: MacAddr,
        dst: IpAddr,
    },
    Route(PeerRoute),
}

/// What identifies an object in the kernel: installing an object replaces any other object
/// with the same key, so a stale object with a key still wanted needs no separate delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Key {
    Neigh(u32, IpAddr),
    /// FDB entries can hold several destinations per MAC; each is its own object.
    Fdb(u32, MacAddr, IpAddr),
    Route(IpNet),
}

impl Object {
    pub fn key(&self) -> Key {
        match *self {
            Object::Neigh { ifindex, ip, .. } => Key::Neigh(ifindex, ip),
            Object::Fdb { ifindex, mac, dst } => Key::Fdb(ifindex, mac, dst),
            Object::Route(r) => Key::Route(r.dst),
        }
    }

    /// Installation order: ARP, then FDB, then the route, so the kernel never has a route
    /// whose next hop it must resolve by ARP.
    pub fn stage(&self) -> u8 {
        match self {
            Object::Neigh { .. } => 0,
            Object::Fdb { .. } => 1,
            Object::Route(_) => 2,
        }
    }

    pub fn install(&self) -> Request {
        match *self {
            Object::Neigh { ifindex, ip, mac } => Request::neigh_set(ifindex, ip, mac),
            Object::Fdb { ifindex, mac, dst } => Request::fdb_set(ifindex, mac, dst),
            Object::Route(r) => Request::route_replace(&r.spec()),
        }
    }

    pub fn remove(&self) -> Request {
        match *self {
            Object::Neigh { ifindex, ip, .. } => Request::neigh_del(ifindex, ip),
            Object::Fdb { ifindex, mac, dst } => Request::fdb_del(ifindex, mac, dst),
            Object::Route(r) => Request::route_del(&r.spec()),
        }
    }

    pub fn from_neigh(n: &Neigh) -> Option<Object> {
        Some(Object::Neigh {
            ifindex: n.ifindex,
            ip: n.ip,
            mac: n.mac.filter(|_| n.permanent)?,
        })
    }

    /// An FDB entry with a destination; `learned_too` also takes entries the kernel reports
    /// as not plainly permanent (`bridge fdb add` makes PERMANENT|NOARP ones, which the
    /// netlink layer does not call permanent), which is right when nothing is learned.
    pub fn from_fdb(f: &Fdb, learned_too: bool) -> Option<Object> {
        Some(Object::Fdb {
            ifindex: f.ifindex,
            mac: f.mac,
            dst: f.dst.filter(|_| f.permanent || learned_too)?,
        })
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Neigh { ifindex, ip, mac } => {
                write!(f, "neighbour {ip} lladdr {mac} on link {ifindex}")
            }
            Object::Fdb { ifindex, mac, dst } => {
                write!(f, "fdb entry {mac} dst {dst} on link {ifindex}")
            }
            Object::Route(r) => {
                write!(f, "route {}", r.dst)?;
                if let Some(gw) = r.gw {
                    write!(f, " via {gw}")?;
                }
                write!(f, " on link {}", r.oif)?;
                if r.onlink {
                    f.write_str(" onlink")?;
                }
                Ok(())
            }
        }
    }
}

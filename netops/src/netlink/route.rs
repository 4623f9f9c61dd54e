//! Routes: add/replace/delete, listing the main table, and route lookups.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::transport::{Client, Handle};
use super::{Family, NetlinkError, Request};

pub const RT_TABLE_MAIN: u32 = 254;
const RT_SCOPE_NOWHERE: u8 = 255;
/// RTPROT_BOOT: what `ip route add` and Go netlink use for administratively added routes.
const RTPROT_BOOT: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    Local,
    Broadcast,
    Blackhole,
    Unreachable,
    Prohibit,
    Other(u8),
}

impl RouteKind {
    fn to_type(self) -> RouteType {
        match self {
            RouteKind::Unicast => RouteType::Unicast,
            RouteKind::Local => RouteType::Local,
            RouteKind::Broadcast => RouteType::Broadcast,
            RouteKind::Blackhole => RouteType::BlackHole,
            RouteKind::Unreachable => RouteType::Unreachable,
            RouteKind::Prohibit => RouteType::Prohibit,
            RouteKind::Other(v) => RouteType::from(v),
        }
    }

    fn from_type(t: RouteType) -> RouteKind {
        match t {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Local => RouteKind::Local,
            RouteType::Broadcast => RouteKind::Broadcast,
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Prohibit => RouteKind::Prohibit,
            other => RouteKind::Other(u8::from(other)),
        }
    }
}

/// A route, as a request or as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
    /// RTNH_F_ONLINK: the gateway is reachable on `oif` even though no prefix covers it
    /// (vxlan's `10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink`).
    pub onlink: bool,
    /// RT_SCOPE_*. `None`: universe when adding, "any" when deleting.
    pub scope: Option<u8>,
    pub priority: Option<u32>,
    pub table: u32,
    pub kind: RouteKind,
    pub prefsrc: Option<IpAddr>,
    /// RTPROT_*; read back from the kernel, `RTPROT_BOOT` for requests.
    pub protocol: u8,
}

impl RouteSpec {
    pub fn new(dst: IpNet) -> RouteSpec {
        RouteSpec {
            dst,
            gw: None,
            oif: None,
            onlink: false,
            scope: None,
            priority: None,
            table: RT_TABLE_MAIN,
            kind: RouteKind::Unicast,
            prefsrc: None,
            protocol: RTPROT_BOOT,
        }
    }

    pub fn via(mut self, gw: IpAddr) -> RouteSpec {
        self.gw = Some(gw);
        self
    }

    pub fn dev(mut self, oif: u32) -> RouteSpec {
        self.oif = Some(oif);
        self
    }

    pub fn onlink(mut self) -> RouteSpec {
        self.onlink = true;
        self
    }

    pub fn blackhole(mut self) -> RouteSpec {
        self.kind = RouteKind::Blackhole;
        self
    }

    /// Human-readable form for error messages, shaped like upstream's
    /// `<dst> via <gw> dev <if>`.
    pub fn describe(&self) -> String {
        let mut s = self.dst.to_string();
        if let Some(gw) = self.gw {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(oif) = self.oif {
            s.push_str(&format!(" dev {oif}"));
        }
        s
    }

    fn to_message(&self, deleting: bool) -> RouteMessage {
        let mut msg = RouteMessage::default();
        let family = Family::of(&self.dst.addr());
        msg.header.address_family = family.address_family();
        msg.header.destination_prefix_length = self.dst.prefix_len();
        // Tables above 255 only fit in RTA_TABLE; the header then says "see attribute".
        msg.header.table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        // When deleting, zero protocol/type and scope NOWHERE mean "match any", as with
        // `ip route del`; otherwise a route added by another tool would not match.
        msg.header.protocol = RouteProtocol::from(if deleting { 0 } else { self.protocol });
        let default_scope = if deleting { RT_SCOPE_NOWHERE } else { 0 };
        msg.header.scope = RouteScope::from(self.scope.unwrap_or(default_scope));
        msg.header.kind = match (deleting, self.kind) {
            (true, RouteKind::Unicast) => RouteType::Unspec,
            (_, kind) => kind.to_type(),
        };
        if self.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        if self.dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(self.dst.network().into()));
        }
        msg.attributes.push(RouteAttribute::Table(self.table));
        if let Some(gw) = self.gw {
            msg.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        if let Some(oif) = self.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(p) = self.priority {
            msg.attributes.push(RouteAttribute::Priority(p));
        }
        if let Some(src) = self.prefsrc {
            msg.attributes.push(RouteAttribute::PrefSource(src.into()));
        }
        msg
    }

    fn from_message(msg: &RouteMessage) -> Option<RouteSpec> {
        let family = match msg.header.address_family {
            netlink_packet_route::AddressFamily::Inet => Family::V4,
            netlink_packet_route::AddressFamily::Inet6 => Family::V6,
            _ => return None,
        };
        let mut dst_ip = match family {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let mut route = RouteSpec::new(IpNet::new(dst_ip, 0).ok()?);
        route.table = u32::from(msg.header.table);
        route.protocol = u8::from(msg.header.protocol);
        route.scope = Some(u8::from(msg.header.scope));
        route.kind = RouteKind::from_type(msg.header.kind);
        route.onlink = msg.header.flags.contains(RouteFlags::Onlink);
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst_ip = ip_of(a)?,
                RouteAttribute::Gateway(a) => route.gw = ip_of(a),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Priority(p) => route.priority = Some(*p),
                RouteAttribute::Table(t) => route.table = *t,
                RouteAttribute::PrefSource(a) => route.prefsrc = ip_of(a),
                _ => {}
            }
        }
        route.dst = IpNet::new(dst_ip, msg.header.destination_prefix_length).ok()?;
        Some(route)
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Request {
    /// NLM_F_CREATE without EXCL or REPLACE, like upstream's route add: an identical route
    /// fails with EEXIST, which callers report verbatim.
    pub fn route_add(r: &RouteSpec) -> Request {
        Request::new(
            format!("failed to add route '{}'", r.describe()),
            RouteNetlinkMessage::NewRoute(r.to_message(false)),
            NLM_F_CREATE,
        )
    }

    pub fn route_replace(r: &RouteSpec) -> Request {
        Request::new(
            format!("failed to replace route '{}'", r.describe()),
            RouteNetlinkMessage::NewRoute(r.to_message(false)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn route_del(r: &RouteSpec) -> Request {
        Request::new(
            format!("failed to delete route '{}'", r.describe()),
            RouteNetlinkMessage::DelRoute(r.to_message(true)),
            0,
        )
    }
}

impl<C: Client> Handle<C> {
    pub fn add_route(&mut self, r: &RouteSpec) -> Result<(), NetlinkError> {
        self.execute(&Request::route_add(r))
    }

    pub fn replace_route(&mut self, r: &RouteSpec) -> Result<(), NetlinkError> {
        self.execute(&Request::route_replace(r))
    }

    /// Deletes a route; `Ok(false)` if no route matched.
    pub fn del_route(&mut self, r: &RouteSpec) -> Result<bool, NetlinkError> {
        self.execute_remove(&Request::route_del(r))
    }

    /// Routes of one table (`None`: main), without cached clones.
    pub fn route_list(
        &mut self,
        family: Family,
        table: Option<u32>,
    ) -> Result<Vec<RouteSpec>, NetlinkError> {
        let table = table.unwrap_or(RT_TABLE_MAIN);
        let mut query = RouteMessage::default();
        query.header.address_family = family.address_family();
        let replies = self.dump(
            "failed to list routes",
            RouteNetlinkMessage::GetRoute(query),
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m)
                    if !m.header.flags.contains(RouteFlags::Cloned) =>
                {
                    RouteSpec::from_message(m)
                }
                _ => None,
            })
            .filter(|r| r.table == table)
            .collect())
    }

    /// The route the kernel would use to reach `dst` (`ip route get`). A result without
    /// gateway means `dst` is on-link.
    pub fn route_get(&mut self, dst: IpAddr) -> Result<RouteSpec, NetlinkError> {
        let op = format!("failed to get route to {dst}");
        let query = RouteSpec::new(IpNet::from(dst));
        let mut msg = RouteMessage::default();
        msg.header.address_family = Family::of(&dst).address_family();
        msg.header.destination_prefix_length = query.dst.prefix_len();
        msg.attributes.push(RouteAttribute::Destination(dst.into()));
        match self.get(&op, RouteNetlinkMessage::GetRoute(msg))? {
            RouteNetlinkMessage::NewRoute(m) => {
                RouteSpec::from_message(&m).ok_or_else(|| NetlinkError::Unexpected {
                    op,
                    detail: "route without address family".into(),
                })
            }
            other => Err(NetlinkError::Unexpected {
                op,
                detail: format!("{other:?}"),
            }),
        }
    }
}

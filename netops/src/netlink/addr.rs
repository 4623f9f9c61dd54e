//! Interface addresses (IPv4 and IPv6).

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::transport::{Client, Handle};
use super::{Family, NetlinkError, Request};

/// An address on a link. As a request, only `ifindex`, `addr` and `scope` matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub ifindex: u32,
    /// Address with prefix length, host bits kept (`10.244.1.2/24`).
    pub addr: IpNet,
    /// RT_SCOPE_* (0 universe, 253 link, 254 host).
    pub scope: u8,
    pub label: Option<String>,
    /// IPv6 duplicate address detection still running.
    pub tentative: bool,
    /// IPv6 duplicate address detection failed.
    pub dadfailed: bool,
}

impl Addr {
    pub fn new(ifindex: u32, addr: IpNet) -> Addr {
        Addr {
            ifindex,
            addr,
            scope: 0,
            label: None,
            tentative: false,
            dadfailed: false,
        }
    }

    pub fn with_scope(mut self, scope: u8) -> Addr {
        self.scope = scope;
        self
    }

    fn from_message(msg: &AddressMessage) -> Option<Addr> {
        let mut local = None;
        let mut address = None;
        let mut label = None;
        let mut flags = u32::from(msg.header.flags.bits());
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Label(l) => label = Some(l.clone()),
                AddressAttribute::Flags(f) => flags = f.bits(),
                _ => {}
            }
        }
        // For point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours when present.
        let ip = local.or(address)?;
        let addr = IpNet::new(ip, msg.header.prefix_len).ok()?;
        Some(Addr {
            ifindex: msg.header.index,
            addr,
            scope: u8::from(msg.header.scope),
            label,
            tentative: flags & AddressFlags::Tentative.bits() != 0,
            dadfailed: flags & AddressFlags::Dadfailed.bits() != 0,
        })
    }
}

fn address_message(a: &Addr, with_broadcast: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = Family::of(&a.addr.addr()).address_family();
    msg.header.prefix_len = a.addr.prefix_len();
    msg.header.scope = a.scope.into();
    msg.header.index = a.ifindex;
    msg.header.flags = AddressHeaderFlags::empty();
    let ip = a.addr.addr();
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if let (true, IpNet::V4(net)) = (with_broadcast, a.addr) {
        if net.prefix_len() < 31 {
            // Go's AddrAdd fills the broadcast address in; match it so `ip addr` shows the
            // same `brd` as on upstream-configured nodes.
            msg.attributes
                .push(AddressAttribute::Broadcast(net.broadcast()));
        }
    }
    msg
}

impl Request {
    pub fn addr_add(a: &Addr) -> Request {
        Request::new(
            format!("could not add address {} to link {}", a.addr, a.ifindex),
            RouteNetlinkMessage::NewAddress(address_message(a, true)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn addr_replace(a: &Addr) -> Request {
        Request::new(
            format!("could not replace address {} on link {}", a.addr, a.ifindex),
            RouteNetlinkMessage::NewAddress(address_message(a, true)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    pub fn addr_del(a: &Addr) -> Request {
        Request::new(
            format!(
                "could not delete address {} from link {}",
                a.addr, a.ifindex
            ),
            RouteNetlinkMessage::DelAddress(address_message(a, false)),
            0,
        )
    }
}

impl<C: Client> Handle<C> {
    /// Adds an address; `Ok(false)` if the link already has it.
    pub fn add_addr(&mut self, a: &Addr) -> Result<bool, NetlinkError> {
        self.execute_create(&Request::addr_add(a))
    }

    pub fn replace_addr(&mut self, a: &Addr) -> Result<(), NetlinkError> {
        self.execute(&Request::addr_replace(a))
    }

    /// Removes an address; `Ok(false)` if it was not there.
    pub fn del_addr(&mut self, a: &Addr) -> Result<bool, NetlinkError> {
        self.execute_remove(&Request::addr_del(a))
    }

    /// Addresses, optionally only those of one link and/or one family.
    pub fn addr_list(
        &mut self,
        ifindex: Option<u32>,
        family: Option<Family>,
    ) -> Result<Vec<Addr>, NetlinkError> {
        let mut query = AddressMessage::default();
        if let Some(f) = family {
            query.header.family = f.address_family();
        }
        let replies = self.dump(
            "failed to list addresses",
            RouteNetlinkMessage::GetAddress(query),
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(m) => Addr::from_message(m),
                _ => None,
            })
            .filter(|a| ifindex.is_none() || ifindex == Some(a.ifindex))
            .filter(|a| family.is_none() || family == Some(Family::of(&a.addr.addr())))
            .collect())
    }
}

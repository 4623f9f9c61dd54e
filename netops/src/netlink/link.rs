//! Links: bridge, veth and vxlan creation, attribute changes, bridge-port flags, lookups.

use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{DefaultNla, Nla, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo as NlLinkInfo, LinkMessage, LinkProtoInfoBridge, State,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::transport::{Client, Handle};
use super::{MacAddr, NetlinkError, Request};

// Bridge port attributes inside IFLA_PROTINFO (linux/if_link.h); the packet crate has no
// typed variants for them.
const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_BRPORT_ISOLATED: u16 = 33;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Veth,
    Vxlan,
    Tun,
    Other(String),
}

impl LinkKind {
    fn from_info(kind: &InfoKind) -> LinkKind {
        match kind {
            InfoKind::Bridge => LinkKind::Bridge,
            InfoKind::Veth => LinkKind::Veth,
            InfoKind::Vxlan => LinkKind::Vxlan,
            InfoKind::Tun => LinkKind::Tun,
            other => LinkKind::Other(other.to_string()),
        }
    }
}

/// Operational state (RFC 2863), printed as Go netlink does (`up`, `lower-layer-down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
    Other(u8),
}

impl From<&State> for OperState {
    fn from(s: &State) -> OperState {
        match s {
            State::Unknown => OperState::Unknown,
            State::NotPresent => OperState::NotPresent,
            State::Down => OperState::Down,
            State::LowerLayerDown => OperState::LowerLayerDown,
            State::Testing => OperState::Testing,
            State::Dormant => OperState::Dormant,
            State::Up => OperState::Up,
            State::Other(v) => OperState::Other(*v),
            _ => OperState::Unknown,
        }
    }
}

impl fmt::Display for OperState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperState::Unknown => f.write_str("unknown"),
            OperState::NotPresent => f.write_str("not-present"),
            OperState::Down => f.write_str("down"),
            OperState::LowerLayerDown => f.write_str("lower-layer-down"),
            OperState::Testing => f.write_str("testing"),
            OperState::Dormant => f.write_str("dormant"),
            OperState::Up => f.write_str("up"),
            OperState::Other(v) => write!(f, "{v}"),
        }
    }
}

/// VXLAN attributes as the kernel reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub underlay: Option<u32>,
    pub local: Option<IpAddr>,
    pub port: Option<u16>,
    pub learning: bool,
    pub gbp: bool,
    pub l2miss: bool,
    pub l3miss: bool,
}

/// A link as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub kind: Option<LinkKind>,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    pub promisc: bool,
    pub oper_state: OperState,
    /// Index of the bridge (or other master) this link is enslaved to.
    pub master: Option<u32>,
    /// IFLA_LINK: for a veth, the peer's index (in the peer's namespace); for a vxlan, the
    /// underlay device.
    pub link: Option<u32>,
    /// Set when `link` refers to another namespace.
    pub link_netnsid: Option<i32>,
    /// For bridges: whether VLAN filtering is on.
    pub vlan_filtering: Option<bool>,
    pub vxlan: Option<VxlanInfo>,
}

impl LinkInfo {
    pub(crate) fn from_message(msg: &LinkMessage) -> LinkInfo {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            promisc: msg.header.flags.contains(LinkFlags::Promisc),
            oper_state: OperState::Unknown,
            master: None,
            link: None,
            link_netnsid: None,
            vlan_filtering: None,
            vxlan: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => info.name = n.clone(),
                LinkAttribute::Mtu(m) => info.mtu = *m,
                LinkAttribute::Address(a) => info.mac = MacAddr::from_slice(a),
                LinkAttribute::Controller(m) if *m != 0 => info.master = Some(*m),
                LinkAttribute::Link(l) if *l != 0 => info.link = Some(*l),
                LinkAttribute::LinkNetNsId(id) => info.link_netnsid = Some(*id),
                LinkAttribute::OperState(s) => info.oper_state = s.into(),
                LinkAttribute::LinkInfo(parts) => info.apply_link_info(parts),
                _ => {}
            }
        }
        info
    }

    fn apply_link_info(&mut self, parts: &[NlLinkInfo]) {
        for part in parts {
            match part {
                NlLinkInfo::Kind(k) => self.kind = Some(LinkKind::from_info(k)),
                NlLinkInfo::Data(InfoData::Bridge(opts)) => {
                    self.vlan_filtering = opts.iter().find_map(|o| match o {
                        InfoBridge::VlanFiltering(v) => Some(*v),
                        _ => None,
                    });
                }
                NlLinkInfo::Data(InfoData::Vxlan(opts)) => self.vxlan = Some(vxlan_info(opts)),
                _ => {}
            }
        }
    }
}

fn vxlan_info(opts: &[InfoVxlan]) -> VxlanInfo {
    let mut v = VxlanInfo::default();
    for o in opts {
        match o {
            InfoVxlan::Id(id) => v.vni = *id,
            InfoVxlan::Link(l) if *l != 0 => v.underlay = Some(*l),
            InfoVxlan::Local(a) => v.local = Some(IpAddr::V4(*a)),
            InfoVxlan::Local6(a) => v.local = Some(IpAddr::V6(*a)),
            InfoVxlan::Port(p) => v.port = Some(*p),
            InfoVxlan::Learning(b) => v.learning = *b,
            InfoVxlan::Gbp => v.gbp = true,
            InfoVxlan::L2Miss(b) => v.l2miss = *b,
            InfoVxlan::L3Miss(b) => v.l3miss = *b,
            _ => {}
        }
    }
    v
}

/// Bridge-port flags (IFLA_PROTINFO of an AF_BRIDGE link message).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgePort {
    pub hairpin: bool,
    pub isolated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeSpec {
    pub name: String,
    pub mtu: Option<u32>,
    pub vlan_filtering: Option<bool>,
    pub mac: Option<MacAddr>,
}

/// A veth pair: `name` is created in the handle's namespace, `peer_name` in `peer_netns`
/// (when given) — one request, so neither end is ever visible half-configured.
#[derive(Debug, Clone, Default)]
pub struct VethSpec<'fd> {
    pub name: String,
    pub peer_name: String,
    /// Applied to both ends.
    pub mtu: Option<u32>,
    /// Transmit queue length, applied to both ends; `None` leaves the kernel's default.
    pub txqlen: Option<u32>,
    pub mac: Option<MacAddr>,
    pub peer_mac: Option<MacAddr>,
    pub peer_netns: Option<BorrowedFd<'fd>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub underlay: Option<u32>,
    pub local: Option<IpAddr>,
    /// UDP destination port; `None` keeps the kernel default (8472).
    pub port: Option<u16>,
    pub learning: bool,
    pub gbp: bool,
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
}

fn link_message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes = attributes;
    msg
}

fn new_link(
    name: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    info: Vec<NlLinkInfo>,
) -> LinkMessage {
    let mut attrs = vec![LinkAttribute::IfName(name.to_string())];
    attrs.extend(mtu.map(LinkAttribute::Mtu));
    attrs.extend(mac.map(|m| LinkAttribute::Address(m.0.to_vec())));
    attrs.push(LinkAttribute::LinkInfo(info));
    link_message(0, attrs)
}

fn add_op(name: &str) -> String {
    format!("could not add {name:?}")
}

impl Request {
    pub fn link_add_bridge(spec: &BridgeSpec) -> Request {
        let mut info = vec![NlLinkInfo::Kind(InfoKind::Bridge)];
        if let Some(v) = spec.vlan_filtering {
            info.push(NlLinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(v),
            ])));
        }
        let msg = new_link(&spec.name, spec.mtu, spec.mac, info);
        Request::new(
            add_op(&spec.name),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn link_add_veth(spec: &VethSpec<'_>) -> Request {
        let mut peer_attrs = vec![LinkAttribute::IfName(spec.peer_name.clone())];
        peer_attrs.extend(spec.mtu.map(LinkAttribute::Mtu));
        peer_attrs.extend(spec.txqlen.map(LinkAttribute::TxQueueLen));
        peer_attrs.extend(spec.peer_mac.map(|m| LinkAttribute::Address(m.0.to_vec())));
        peer_attrs.extend(
            spec.peer_netns
                .map(|fd| LinkAttribute::NetNsFd(fd.as_raw_fd())),
        );
        let peer = link_message(0, peer_attrs);
        let info = vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ];
        let mut msg = new_link(&spec.name, spec.mtu, spec.mac, info);
        msg.attributes
            .extend(spec.txqlen.map(LinkAttribute::TxQueueLen));
        Request::new(
            add_op(&spec.name),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn link_add_vxlan(spec: &VxlanSpec) -> Request {
        let mut data = vec![InfoVxlan::Id(spec.vni)];
        data.extend(spec.underlay.map(InfoVxlan::Link));
        match spec.local {
            Some(IpAddr::V4(a)) => data.push(InfoVxlan::Local(a)),
            Some(IpAddr::V6(a)) => data.push(InfoVxlan::Local6(a)),
            None => {}
        }
        data.extend(spec.port.map(InfoVxlan::Port));
        data.push(InfoVxlan::Learning(spec.learning));
        if spec.gbp {
            data.push(InfoVxlan::Gbp);
        }
        let info = vec![
            NlLinkInfo::Kind(InfoKind::Vxlan),
            NlLinkInfo::Data(InfoData::Vxlan(data)),
        ];
        let msg = new_link(&spec.name, spec.mtu, spec.mac, info);
        Request::new(
            add_op(&spec.name),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    pub fn link_set_up(index: u32, up: bool) -> Request {
        let mut msg = link_message(index, vec![]);
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        let state = if up { "up" } else { "down" };
        Request::new(
            format!("failed to set link {index} {state}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    pub fn link_set_promisc(index: u32, on: bool) -> Request {
        let mut msg = link_message(index, vec![]);
        msg.header.change_mask = LinkFlags::Promisc;
        if on {
            msg.header.flags = LinkFlags::Promisc;
        }
        Request::new(
            format!("failed to set promisc on link {index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// `None` removes the link from its master.
    pub fn link_set_master(index: u32, master: Option<u32>) -> Request {
        let msg = link_message(index, vec![LinkAttribute::Controller(master.unwrap_or(0))]);
        Request::new(
            format!("failed to set master of link {index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    pub fn link_set_mtu(index: u32, mtu: u32) -> Request {
        let msg = link_message(index, vec![LinkAttribute::Mtu(mtu)]);
        Request::new(
            format!("failed to set mtu {mtu} on link {index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    pub fn link_set_mac(index: u32, mac: MacAddr) -> Request {
        let msg = link_message(index, vec![LinkAttribute::Address(mac.0.to_vec())]);
        Request::new(
            format!("failed to set mac {mac} on link {index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Moves the link into the namespace `netns` refers to.
    pub fn link_set_netns(index: u32, netns: BorrowedFd<'_>) -> Request {
        let msg = link_message(index, vec![LinkAttribute::NetNsFd(netns.as_raw_fd())]);
        Request::new(
            format!("failed to move link {index} to another netns"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    pub fn link_del(index: u32) -> Request {
        Request::new(
            format!("failed to delete link {index}"),
            RouteNetlinkMessage::DelLink(link_message(index, vec![])),
            0,
        )
    }

    /// Sets bridge-port flags through the bridge's own netlink handler (AF_BRIDGE,
    /// IFLA_PROTINFO), as `ip link set ... type bridge_slave` does; `None` leaves a flag alone.
    pub fn link_set_bridge_port(
        index: u32,
        hairpin: Option<bool>,
        isolated: Option<bool>,
    ) -> Request {
        let flag =
            |kind, v: bool| LinkProtoInfoBridge::Other(DefaultNla::new(kind, vec![u8::from(v)]));
        let mut port = Vec::new();
        port.extend(hairpin.map(|v| flag(IFLA_BRPORT_MODE, v)));
        port.extend(isolated.map(|v| flag(IFLA_BRPORT_ISOLATED, v)));
        let mut msg = link_message(index, vec![LinkAttribute::ProtoInfoBridge(port)]);
        msg.header.interface_family = AddressFamily::Bridge;
        Request::new(
            format!("failed to set bridge port flags on link {index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }
}

fn bridge_port_of(msg: &LinkMessage) -> Option<BridgePort> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::ProtoInfoBridge(attrs) => {
            let mut port = BridgePort::default();
            for attr in attrs {
                if let LinkProtoInfoBridge::Other(nla) = attr {
                    let mut value = [0u8; 1];
                    if nla.value_len() == 1 {
                        nla.emit_value(&mut value);
                    }
                    match nla.kind() {
                        IFLA_BRPORT_MODE => port.hairpin = value[0] != 0,
                        IFLA_BRPORT_ISOLATED => port.isolated = value[0] != 0,
                        _ => {}
                    }
                }
            }
            Some(port)
        }
        _ => None,
    })
}

fn absent_as_none<T>(r: Result<T, NetlinkError>) -> Result<Option<T>, NetlinkError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl<C: Client> Handle<C> {
    fn get_link(&mut self, op: &str, msg: LinkMessage) -> Result<Option<LinkInfo>, NetlinkError> {
        absent_as_none(self.get(op, RouteNetlinkMessage::GetLink(msg)))?
            .map(|reply| match reply {
                RouteNetlinkMessage::NewLink(m) => Ok(LinkInfo::from_message(&m)),
                other => Err(NetlinkError::Unexpected {
                    op: op.into(),
                    detail: format!("{other:?}"),
                }),
            })
            .transpose()
    }

    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let msg = link_message(0, vec![LinkAttribute::IfName(name.to_string())]);
        self.get_link(&format!("failed to look up link {name:?}"), msg)
    }

    pub fn link_by_index(&mut self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        self.get_link(
            &format!("failed to look up link {index}"),
            link_message(index, vec![]),
        )
    }

    pub fn link_list(&mut self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let replies = self.dump(
            "failed to list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(LinkInfo::from_message(m)),
                _ => None,
            })
            .collect())
    }

    /// Creates a bridge; `Ok(false)` if a link with that name already exists (which may not
    /// be a bridge: callers check the kind).
    pub fn add_bridge(&mut self, spec: &BridgeSpec) -> Result<bool, NetlinkError> {
        self.execute_create(&Request::link_add_bridge(spec))
    }

    /// Creates a veth pair. An existing name is an error (EEXIST): unlike a bridge, a veth
    /// pair with that name is never "the same" pair.
    pub fn add_veth(&mut self, spec: &VethSpec<'_>) -> Result<(), NetlinkError> {
        self.execute(&Request::link_add_veth(spec))
    }

    /// Creates a vxlan device; `Ok(false)` if the name exists (compare with `vxlan` info).
    pub fn add_vxlan(&mut self, spec: &VxlanSpec) -> Result<bool, NetlinkError> {
        self.execute_create(&Request::link_add_vxlan(spec))
    }

    pub fn set_link_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_up(index, true))
    }

    pub fn set_link_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_up(index, false))
    }

    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_master(index, master))
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_mtu(index, mtu))
    }

    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_mac(index, mac))
    }

    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_promisc(index, on))
    }

    pub fn move_to_netns(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_netns(index, netns))
    }

    /// Deletes a link; `Ok(false)` if it did not exist.
    pub fn delete_link(&mut self, index: u32) -> Result<bool, NetlinkError> {
        self.execute_remove(&Request::link_del(index))
    }

    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_bridge_port(index, Some(on), None))
    }

    pub fn set_isolated(&mut self, index: u32, on: bool) -> Result<(), NetlinkError> {
        self.execute(&Request::link_set_bridge_port(index, None, Some(on)))
    }

    /// Bridge-port flags of `index`, or `None` if it is not a bridge port. Read from the
    /// AF_BRIDGE dump, the only reply that carries IFLA_PROTINFO.
    pub fn bridge_port(&mut self, index: u32) -> Result<Option<BridgePort>, NetlinkError> {
        let mut query = LinkMessage::default();
        query.header.interface_family = AddressFamily::Bridge;
        let replies = self.dump(
            "failed to list bridge ports",
            RouteNetlinkMessage::GetLink(query),
        )?;
        Ok(replies.iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) if m.header.index == index => bridge_port_of(m),
            _ => None,
        }))
    }
}

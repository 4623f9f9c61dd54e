//! VLAN entries of bridge ports, as `bridge vlan {add,del,show} dev <port> master` manages
//! them: `RTM_SETLINK` / `RTM_DELLINK` / an `RTM_GETLINK` dump in family `AF_BRIDGE`, with
//! `IFLA_AF_SPEC { IFLA_BRIDGE_FLAGS = MASTER, IFLA_BRIDGE_VLAN_INFO }`. The requests go to
//! the namespace of the port (and its bridge).

use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask,
    LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::transport::{Client, Handle};
use super::{NetlinkError, Request};

/// One VLAN on a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortVlan {
    pub vid: u16,
    /// Untagged ingress frames are classified into this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port without a tag.
    pub untagged: bool,
}

impl PortVlan {
    /// An access VLAN: the port's PVID, egress untagged.
    pub fn access(vid: u16) -> PortVlan {
        PortVlan {
            vid,
            pvid: true,
            untagged: true,
        }
    }

    /// A trunk VLAN: carried tagged in both directions.
    pub fn tagged(vid: u16) -> PortVlan {
        PortVlan {
            vid,
            pvid: false,
            untagged: false,
        }
    }

    fn flags(self) -> BridgeVlanInfoFlags {
        let mut flags = BridgeVlanInfoFlags::empty();
        if self.pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if self.untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        flags
    }
}

fn vlan_message(index: u32, vid: u16, flags: BridgeVlanInfoFlags) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.header.index = index;
    msg.attributes.push(LinkAttribute::AfSpecBridge(vec![
        // MASTER: the entry belongs to the port as its bridge sees it, not to the device.
        AfSpecBridge::Flags(BridgeFlag::Controller),
        AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid }),
    ]));
    msg
}

impl Request {
    /// Adds `vlan` to bridge port `index`, or updates its flags when it is there already.
    pub fn bridge_vlan_add(index: u32, vlan: PortVlan) -> Request {
        Request::new(
            format!("failed to add vlan {} to bridge port {index}", vlan.vid),
            RouteNetlinkMessage::SetLink(vlan_message(index, vlan.vid, vlan.flags())),
            0,
        )
    }

    pub fn bridge_vlan_del(index: u32, vid: u16) -> Request {
        Request::new(
            format!("failed to delete vlan {vid} from bridge port {index}"),
            RouteNetlinkMessage::DelLink(vlan_message(index, vid, BridgeVlanInfoFlags::empty())),
            0,
        )
    }
}

/// The VLANs of port `index` in an `AF_BRIDGE` link dump reply.
fn vlans_of(replies: &[RouteNetlinkMessage], index: u32) -> Vec<PortVlan> {
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) if m.header.index == index => Some(m),
            _ => None,
        })
        .flat_map(|m| &m.attributes)
        .filter_map(|a| match a {
            LinkAttribute::AfSpecBridge(spec) => Some(spec),
            _ => None,
        })
        .flatten()
        .filter_map(|s| match s {
            AfSpecBridge::VlanInfo(info) => Some(PortVlan {
                vid: info.vid,
                pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
            }),
            _ => None,
        })
        .collect()
}

impl<C: Client> Handle<C> {
    pub fn add_bridge_vlan(&mut self, index: u32, vlan: PortVlan) -> Result<(), NetlinkError> {
        self.execute(&Request::bridge_vlan_add(index, vlan))
    }

    /// `Ok(false)` if the port had no such VLAN.
    pub fn del_bridge_vlan(&mut self, index: u32, vid: u16) -> Result<bool, NetlinkError> {
        self.execute_remove(&Request::bridge_vlan_del(index, vid))
    }

    /// The VLANs configured on bridge port `index` (none for a device that is no port).
    pub fn bridge_vlans(&mut self, index: u32) -> Result<Vec<PortVlan>, NetlinkError> {
        let mut query = LinkMessage::default();
        query.header.interface_family = AddressFamily::Bridge;
        // Without this filter the kernel leaves VLAN entries out of the dump.
        query
            .attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let replies = self.dump(
            "failed to list bridge vlans",
            RouteNetlinkMessage::GetLink(query),
        )?;
        Ok(vlans_of(&replies, index))
    }
}

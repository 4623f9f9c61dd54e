use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask,
    LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{handle, only_sent, split};
use crate::netlink::fake::Reply;
use crate::netlink::PortVlan;

/// Port index, family and IFLA_AF_SPEC of a VLAN request.
fn spec(msg: &RouteNetlinkMessage) -> (u32, AddressFamily, Vec<AfSpecBridge>) {
    let m = match msg {
        RouteNetlinkMessage::SetLink(m) | RouteNetlinkMessage::DelLink(m) => m,
        other => panic!("unexpected {other:?}"),
    };
    let spec = m
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::AfSpecBridge(s) => Some(s.clone()),
            _ => None,
        })
        .expect("IFLA_AF_SPEC");
    (m.header.index, m.header.interface_family, spec)
}

fn on_master(vid: u16, flags: BridgeVlanInfoFlags) -> Vec<AfSpecBridge> {
    vec![
        AfSpecBridge::Flags(BridgeFlag::Controller),
        AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid }),
    ]
}

#[test]
fn access_vlan_is_pvid_untagged_on_the_master() {
    let mut h = handle();
    h.add_bridge_vlan(7, PortVlan::access(100)).unwrap();
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, 0);
    assert!(matches!(msg, RouteNetlinkMessage::SetLink(_)));
    assert_eq!(
        spec(&msg),
        (
            7,
            AddressFamily::Bridge,
            on_master(
                100,
                BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
            )
        )
    );
}

#[test]
fn trunk_vlan_is_tagged() {
    let mut h = handle();
    h.add_bridge_vlan(7, PortVlan::tagged(20)).unwrap();
    assert_eq!(
        spec(&only_sent(&h).1).2,
        on_master(20, BridgeVlanInfoFlags::empty())
    );
}

#[test]
fn removal_is_dellink_and_a_missing_vlan_is_false() {
    let mut h = handle();
    h.client_mut()
        .reply(Reply::Ack)
        .reply(Reply::Errno(Errno::ENOENT))
        .reply(Reply::Errno(Errno::EPERM));
    assert!(h.del_bridge_vlan(7, 1).unwrap());
    assert!(!h.del_bridge_vlan(7, 1).unwrap());
    let err = h.del_bridge_vlan(7, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to delete vlan 1 from bridge port 7: operation not permitted"
    );
    let (_, msg) = split(&h.client().sent()[0]);
    assert!(matches!(msg, RouteNetlinkMessage::DelLink(_)));
    assert_eq!(
        spec(&msg),
        (
            7,
            AddressFamily::Bridge,
            on_master(1, BridgeVlanInfoFlags::empty())
        )
    );
}

#[test]
fn listing_dumps_af_bridge_with_the_vlan_filter_and_keeps_one_port() {
    let port = |index: u32, vlans: &[(u16, BridgeVlanInfoFlags)]| {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.interface_family = AddressFamily::Bridge;
        m.attributes.push(LinkAttribute::AfSpecBridge(
            vlans
                .iter()
                .map(|&(vid, flags)| AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid }))
                .collect(),
        ));
        RouteNetlinkMessage::NewLink(m)
    };
    let mut h = handle();
    h.client_mut().reply(Reply::Objects(vec![
        port(6, &[(1, BridgeVlanInfoFlags::Pvid)]),
        port(
            5,
            &[
                (1, BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged),
                (30, BridgeVlanInfoFlags::empty()),
            ],
        ),
    ]));
    assert_eq!(
        h.bridge_vlans(5).unwrap(),
        [PortVlan::access(1), PortVlan::tagged(30)]
    );
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, NLM_F_DUMP);
    let RouteNetlinkMessage::GetLink(q) = msg else {
        panic!("{msg:?}")
    };
    assert_eq!(q.header.interface_family, AddressFamily::Bridge);
    assert_eq!(
        q.attributes,
        [LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan])]
    );

    h.client_mut().reply(Reply::Objects(vec![port(6, &[])]));
    assert!(h.bridge_vlans(99).unwrap().is_empty());
}

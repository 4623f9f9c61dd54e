use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags,
    LinkInfo as NlLinkInfo, LinkMessage, LinkProtoInfoBridge, State,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{handle, only_sent};
use crate::netlink::fake::Reply;
use crate::netlink::{BridgePort, BridgeSpec, LinkKind, MacAddr, OperState, VethSpec, VxlanSpec};

fn new_link(msg: RouteNetlinkMessage) -> LinkMessage {
    match msg {
        RouteNetlinkMessage::NewLink(m)
        | RouteNetlinkMessage::SetLink(m)
        | RouteNetlinkMessage::DelLink(m) => m,
        other => panic!("not a link message: {other:?}"),
    }
}

fn link_info(m: &LinkMessage) -> Vec<NlLinkInfo> {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(i) => Some(i.clone()),
            _ => None,
        })
        .expect("IFLA_LINKINFO present")
}

#[test]
fn bridge_creation_is_exclusive_and_carries_mtu_and_vlan_filtering() {
    let mut h = handle();
    let spec = BridgeSpec {
        name: "cni0".into(),
        mtu: Some(1450),
        vlan_filtering: Some(true),
        mac: None,
    };
    assert!(h.add_bridge(&spec).unwrap());
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, NLM_F_CREATE | NLM_F_EXCL);
    let m = new_link(msg);
    assert!(m.attributes.contains(&LinkAttribute::IfName("cni0".into())));
    assert!(m.attributes.contains(&LinkAttribute::Mtu(1450)));
    assert_eq!(
        link_info(&m),
        vec![
            NlLinkInfo::Kind(InfoKind::Bridge),
            NlLinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)]))
        ]
    );
}

#[test]
fn existing_bridge_is_not_an_error_but_other_errnos_are() {
    let mut h = handle();
    h.client_mut()
        .reply(Reply::Errno(Errno::EEXIST))
        .reply(Reply::Errno(Errno::EPERM));
    let spec = BridgeSpec {
        name: "cni0".into(),
        ..BridgeSpec::default()
    };
    assert!(!h.add_bridge(&spec).unwrap());
    let err = h.add_bridge(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not add \"cni0\": operation not permitted"
    );
    assert_eq!(err.errno(), Some(Errno::EPERM));
}

#[test]
fn veth_peer_is_created_in_the_target_netns_by_fd() {
    let ns = std::fs::File::open("/proc/self/ns/net").unwrap();
    let mac: MacAddr = "0a:58:0a:f4:01:02".parse().unwrap();
    let spec = VethSpec {
        name: "eth0".into(),
        peer_name: "veth1234abcd".into(),
        mtu: Some(1450),
        txqlen: Some(0),
        mac: Some(mac),
        peer_mac: None,
        peer_netns: Some(ns.as_fd()),
    };
    let mut h = handle();
    h.add_veth(&spec).unwrap();
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, NLM_F_CREATE | NLM_F_EXCL);
    let m = new_link(msg);
    assert!(m
        .attributes
        .contains(&LinkAttribute::Address(mac.0.to_vec())));
    assert!(m.attributes.contains(&LinkAttribute::TxQueueLen(0)));
    let info = link_info(&m);
    assert_eq!(info[0], NlLinkInfo::Kind(InfoKind::Veth));
    let NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &info[1] else {
        panic!("{info:?}")
    };
    use std::os::fd::AsRawFd;
    assert_eq!(
        peer.attributes,
        vec![
            LinkAttribute::IfName("veth1234abcd".into()),
            LinkAttribute::Mtu(1450),
            LinkAttribute::TxQueueLen(0),
            LinkAttribute::NetNsFd(ns.as_raw_fd())
        ]
    );
}

#[test]
fn vxlan_carries_flannel_attributes() {
    let spec = VxlanSpec {
        name: "flannel.1".into(),
        vni: 1,
        underlay: Some(2),
        local: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 11))),
        port: Some(8472),
        learning: false,
        gbp: true,
        mtu: Some(1450),
        mac: None,
    };
    let mut h = handle();
    assert!(h.add_vxlan(&spec).unwrap());
    let m = new_link(only_sent(&h).1);
    assert_eq!(
        link_info(&m)[1],
        NlLinkInfo::Data(InfoData::Vxlan(vec![
            InfoVxlan::Id(1),
            InfoVxlan::Link(2),
            InfoVxlan::Local(Ipv4Addr::new(192, 168, 1, 11)),
            InfoVxlan::Port(8472),
            InfoVxlan::Learning(false),
            InfoVxlan::Gbp,
        ]))
    );
}

#[test]
fn up_down_and_promisc_use_the_change_mask() {
    let mut h = handle();
    h.set_link_up(7).unwrap();
    h.set_link_down(7).unwrap();
    h.set_promisc(7, true).unwrap();
    let msgs: Vec<_> = h
        .client()
        .sent_messages()
        .into_iter()
        .cloned()
        .map(new_link)
        .collect();
    assert_eq!(
        (
            msgs[0].header.index,
            msgs[0].header.flags,
            msgs[0].header.change_mask
        ),
        (7, LinkFlags::Up, LinkFlags::Up)
    );
    assert_eq!(
        (msgs[1].header.flags, msgs[1].header.change_mask),
        (LinkFlags::empty(), LinkFlags::Up)
    );
    assert_eq!(
        (msgs[2].header.flags, msgs[2].header.change_mask),
        (LinkFlags::Promisc, LinkFlags::Promisc)
    );
}

#[test]
fn master_nomaster_mtu_mac_and_delete() {
    let mut h = handle();
    h.set_master(7, Some(3)).unwrap();
    h.set_master(7, None).unwrap();
    h.set_mtu(7, 1400).unwrap();
    h.set_mac(7, MacAddr([2, 0, 0, 0, 0, 1])).unwrap();
    h.client_mut()
        .reply(Reply::Ack)
        .reply(Reply::Errno(Errno::ENODEV));
    assert!(h.delete_link(7).unwrap());
    assert!(!h.delete_link(7).unwrap());
    let msgs: Vec<_> = h.client().sent_messages().into_iter().cloned().collect();
    assert_eq!(
        new_link(msgs[0].clone()).attributes,
        vec![LinkAttribute::Controller(3)]
    );
    assert_eq!(
        new_link(msgs[1].clone()).attributes,
        vec![LinkAttribute::Controller(0)]
    );
    assert_eq!(
        new_link(msgs[2].clone()).attributes,
        vec![LinkAttribute::Mtu(1400)]
    );
    assert_eq!(
        new_link(msgs[3].clone()).attributes,
        vec![LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1])]
    );
    assert!(matches!(msgs[4], RouteNetlinkMessage::DelLink(_)));
}

#[test]
fn hairpin_goes_through_af_bridge_protinfo() {
    let mut h = handle();
    h.set_hairpin(9, true).unwrap();
    // Check the wire bytes: IFLA_PROTINFO must be flagged nested or the bridge ignores it.
    let sent = &h.client().sent()[0];
    let mut wire = vec![0u8; sent.buffer_len()];
    sent.serialize(&mut wire);
    assert_eq!(wire[16], libc::AF_BRIDGE as u8, "ifi_family");
    let nla_type = u16::from_ne_bytes([wire[16 + 16 + 2], wire[16 + 16 + 3]]);
    assert_eq!(nla_type, libc::IFLA_PROTINFO | 0x8000);
    let brport_type = u16::from_ne_bytes([wire[16 + 16 + 6], wire[16 + 16 + 7]]);
    assert_eq!(
        (brport_type, wire[16 + 16 + 8]),
        (4 /* IFLA_BRPORT_MODE */, 1)
    );
}

#[test]
fn bridge_port_flags_are_read_from_the_af_bridge_dump() {
    let port = |index, hairpin: u8, isolated: u8| {
        let mut m = LinkMessage::default();
        m.header.interface_family = AddressFamily::Bridge;
        m.header.index = index;
        m.attributes.push(LinkAttribute::ProtoInfoBridge(vec![
            LinkProtoInfoBridge::Other(DefaultNla::new(4, vec![hairpin])),
            LinkProtoInfoBridge::Other(DefaultNla::new(33, vec![isolated])),
        ]));
        RouteNetlinkMessage::NewLink(m)
    };
    let mut h = handle();
    h.client_mut()
        .reply(Reply::Objects(vec![port(4, 0, 1), port(9, 1, 0)]));
    assert_eq!(
        h.bridge_port(9).unwrap(),
        Some(BridgePort {
            hairpin: true,
            isolated: false
        })
    );
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, NLM_F_DUMP);
    assert_eq!(
        new_link(match msg {
            RouteNetlinkMessage::GetLink(m) => RouteNetlinkMessage::NewLink(m),
            other => panic!("{other:?}"),
        })
        .header
        .interface_family,
        AddressFamily::Bridge
    );
    h.client_mut().reply(Reply::Objects(vec![port(4, 0, 1)]));
    assert_eq!(h.bridge_port(9).unwrap(), None);
}

#[test]
fn link_lookup_parses_kind_peer_master_and_state() {
    let mut reply = LinkMessage::default();
    reply.header.index = 12;
    reply.header.flags = LinkFlags::Up | LinkFlags::Promisc;
    reply.attributes = vec![
        LinkAttribute::IfName("veth1".into()),
        LinkAttribute::Mtu(1450),
        LinkAttribute::Address(vec![0xaa, 0, 0, 0, 0, 1]),
        LinkAttribute::Controller(3),
        LinkAttribute::Link(2),
        LinkAttribute::OperState(State::LowerLayerDown),
        LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Veth)]),
    ];
    let mut h = handle();
    h.client_mut()
        .reply(Reply::Objects(vec![RouteNetlinkMessage::NewLink(reply)]))
        .reply(Reply::Errno(Errno::ENODEV));
    let link = h.link_by_name("veth1").unwrap().unwrap();
    assert_eq!(
        (link.index, link.name.as_str(), link.mtu),
        (12, "veth1", 1450)
    );
    assert_eq!(link.kind, Some(LinkKind::Veth));
    assert_eq!(
        (link.master, link.link, link.up, link.promisc),
        (Some(3), Some(2), true, true)
    );
    assert_eq!(link.mac.unwrap().to_string(), "aa:00:00:00:00:01");
    assert_eq!(link.oper_state.to_string(), "lower-layer-down");
    assert_eq!(link.oper_state, OperState::LowerLayerDown);
    assert_eq!(h.link_by_name("nope").unwrap(), None);
    let first = super::split(&h.client().sent()[0]);
    assert_eq!(first.0, 0, "a lookup is neither a dump nor acknowledged");
}

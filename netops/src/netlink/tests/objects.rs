use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{handle, only_sent};
use crate::netlink::fake::Reply;
use crate::netlink::{Addr, Family, MacAddr, RouteKind, RouteSpec};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ipv4_address_gets_local_address_and_broadcast() {
    let mut h = handle();
    assert!(h.add_addr(&Addr::new(3, net("10.244.1.1/24"))).unwrap());
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, NLM_F_CREATE | NLM_F_EXCL);
    let RouteNetlinkMessage::NewAddress(m) = msg else {
        panic!()
    };
    assert_eq!(
        (m.header.index, m.header.prefix_len, m.header.family),
        (3, 24, AddressFamily::Inet)
    );
    assert_eq!(
        m.attributes,
        vec![
            AddressAttribute::Local(v4("10.244.1.1")),
            AddressAttribute::Address(v4("10.244.1.1")),
            AddressAttribute::Broadcast(Ipv4Addr::new(10, 244, 1, 255)),
        ]
    );
}

#[test]
fn host_and_ipv6_addresses_have_no_broadcast_and_existing_is_unchanged() {
    let mut h = handle();
    h.client_mut()
        .reply(Reply::Ack)
        .reply(Reply::Errno(Errno::EEXIST));
    assert!(h.add_addr(&Addr::new(3, net("10.244.1.0/32"))).unwrap());
    assert!(!h.add_addr(&Addr::new(3, net("fd00::1/64"))).unwrap());
    for m in h.client().sent_messages() {
        let RouteNetlinkMessage::NewAddress(m) = m else {
            panic!()
        };
        assert!(!m
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Broadcast(_))));
    }
}

#[test]
fn address_delete_of_missing_address_is_false() {
    let mut h = handle();
    h.client_mut().reply(Reply::Errno(Errno::EADDRNOTAVAIL));
    assert!(!h.del_addr(&Addr::new(3, net("10.244.1.1/24"))).unwrap());
    assert!(matches!(
        only_sent(&h).1,
        RouteNetlinkMessage::DelAddress(_)
    ));
}

#[test]
fn route_add_is_create_only_and_reports_upstream_text() {
    let mut h = handle();
    h.client_mut().reply(Reply::Errno(Errno::EEXIST));
    let r = RouteSpec::new(net("10.244.1.0/24"))
        .via(v4("10.244.1.0"))
        .dev(5)
        .onlink();
    let err = h.add_route(&r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to add route '10.244.1.0/24 via 10.244.1.0 dev 5': file exists"
    );
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, NLM_F_CREATE, "no EXCL, no REPLACE");
    let RouteNetlinkMessage::NewRoute(m) = msg else {
        panic!()
    };
    assert_eq!(m.header.flags, RouteFlags::Onlink);
    assert_eq!(m.header.table, 254);
    assert_eq!(m.header.protocol, RouteProtocol::Boot);
    assert_eq!(m.header.scope, RouteScope::Universe);
    assert_eq!(m.header.kind, RouteType::Unicast);
    assert_eq!(m.header.destination_prefix_length, 24);
    assert_eq!(
        m.attributes,
        vec![
            RouteAttribute::Destination(v4("10.244.1.0").into()),
            RouteAttribute::Table(254),
            RouteAttribute::Gateway(v4("10.244.1.0").into()),
            RouteAttribute::Oif(5),
        ]
    );
}

#[test]
fn replace_default_route_and_blackhole() {
    let mut h = handle();
    h.replace_route(&RouteSpec::new(net("0.0.0.0/0")).via(v4("10.244.1.1")))
        .unwrap();
    let mut bh = RouteSpec::new(net("10.244.1.0/24")).blackhole();
    bh.table = 1000;
    h.replace_route(&bh).unwrap();
    let sent: Vec<_> = h.client().sent().iter().map(super::split).collect();
    assert_eq!(sent[0].0, NLM_F_CREATE | NLM_F_REPLACE);
    let RouteNetlinkMessage::NewRoute(default) = &sent[0].1 else {
        panic!()
    };
    assert!(
        !default
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))),
        "default has no RTA_DST"
    );
    let RouteNetlinkMessage::NewRoute(black) = &sent[1].1 else {
        panic!()
    };
    assert_eq!(black.header.kind, RouteType::BlackHole);
    assert_eq!(
        black.header.table, 0,
        "tables above 255 live in RTA_TABLE only"
    );
    assert!(black.attributes.contains(&RouteAttribute::Table(1000)));
}

#[test]
fn route_delete_matches_any_scope_protocol_and_type() {
    let mut h = handle();
    h.client_mut().reply(Reply::Errno(Errno::ESRCH));
    assert!(!h
        .del_route(&RouteSpec::new(net("10.244.2.0/24")).via(v4("192.168.1.12")))
        .unwrap());
    let RouteNetlinkMessage::DelRoute(m) = only_sent(&h).1 else {
        panic!()
    };
    assert_eq!(m.header.scope, RouteScope::NoWhere);
    assert_eq!(m.header.protocol, RouteProtocol::Unspec);
    assert_eq!(m.header.kind, RouteType::Unspec);
}

#[test]
fn route_list_keeps_only_the_requested_table() {
    let route = |dst: &str, table: u8| {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = table;
        m.header.kind = RouteType::Unicast;
        let n = net(dst);
        m.header.destination_prefix_length = n.prefix_len();
        m.attributes
            .push(RouteAttribute::Destination(n.addr().into()));
        m.attributes.push(RouteAttribute::Table(u32::from(table)));
        m.attributes.push(RouteAttribute::Oif(4));
        RouteNetlinkMessage::NewRoute(m)
    };
    let mut h = handle();
    h.client_mut().reply(Reply::Objects(vec![
        route("10.244.0.0/16", 254),
        route("127.0.0.0/8", 255),
    ]));
    let routes = h.route_list(Family::V4, None).unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].dst, routes[0].oif, routes[0].kind),
        (net("10.244.0.0/16"), Some(4), RouteKind::Unicast)
    );
}

#[test]
fn neighbour_is_permanent_and_replaces() {
    let mut h = handle();
    let mac = MacAddr([0x0a, 0x58, 0, 0, 0, 1]);
    h.set_neigh(6, v4("10.244.2.0"), mac).unwrap();
    let (flags, msg) = only_sent(&h);
    assert_eq!(flags, NLM_F_CREATE | NLM_F_REPLACE);
    let RouteNetlinkMessage::NewNeighbour(m) = msg else {
        panic!()
    };
    assert_eq!(
        (m.header.family, m.header.ifindex, m.header.state),
        (AddressFamily::Inet, 6, NeighbourState::Permanent)
    );
    assert_eq!(
        m.attributes,
        vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 244, 2, 0))),
            NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()),
        ]
    );
}

#[test]
fn fdb_entry_is_af_bridge_self_with_raw_destination() {
    let mut h = handle();
    let mac = MacAddr([0x0a, 0x58, 0, 0, 0, 1]);
    h.set_fdb(6, mac, v4("192.168.1.12")).unwrap();
    let RouteNetlinkMessage::NewNeighbour(m) = only_sent(&h).1 else {
        panic!()
    };
    assert_eq!(
        (m.header.family, m.header.flags, m.header.state),
        (
            AddressFamily::Bridge,
            NeighbourFlags::Own,
            NeighbourState::Permanent
        )
    );
    assert!(m
        .attributes
        .contains(&NeighbourAttribute::Destination(NeighbourAddress::Other(
            vec![192, 168, 1, 12]
        ))));

    let mut entry = m.clone();
    entry.header.ifindex = 6;
    h.client_mut()
        .reply(Reply::Objects(vec![RouteNetlinkMessage::NewNeighbour(
            entry,
        )]));
    let fdb = h.fdb_list(6).unwrap();
    assert_eq!(
        (fdb.len(), fdb[0].mac, fdb[0].dst, fdb[0].permanent),
        (1, mac, Some(v4("192.168.1.12")), true)
    );
}

//! Root tests: addresses, routes, neighbours, FDB and batching in real namespaces.

mod common;

use std::net::IpAddr;

use common::TestNetns;
use ipnet::IpNet;
use netops::netlink::{
    Addr, BridgeSpec, Family, Handle, MacAddr, Request, RouteKind, RouteSpec, VxlanSpec,
};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A namespace with an up bridge `br0` (a link that carries routes) and its handle.
fn with_bridge() -> (TestNetns, Handle, u32) {
    let ns = TestNetns::new();
    let mut h = Handle::in_netns(ns.path()).unwrap();
    h.add_bridge(&BridgeSpec {
        name: "br0".into(),
        ..BridgeSpec::default()
    })
    .unwrap();
    let index = h.link_by_name("br0").unwrap().unwrap().index;
    h.set_link_up(index).unwrap();
    (ns, h, index)
}

#[test]
fn addresses_add_replace_list_delete() {
    let (ns, mut h, br) = with_bridge();
    assert!(h.add_addr(&Addr::new(br, net("10.244.1.1/24"))).unwrap());
    assert!(!h.add_addr(&Addr::new(br, net("10.244.1.1/24"))).unwrap());
    h.add_addr(&Addr::new(br, net("fd00:10:244:1::1/64")))
        .unwrap();
    h.replace_addr(&Addr::new(br, net("10.244.9.1/32")).with_scope(253))
        .unwrap();
    assert!(ns
        .ip(&["addr", "show", "br0"])
        .contains("inet 10.244.1.1/24 brd 10.244.1.255"));

    let v4 = h.addr_list(Some(br), Some(Family::V4)).unwrap();
    let mut nets: Vec<_> = v4.iter().map(|a| (a.addr, a.scope)).collect();
    nets.sort();
    assert_eq!(
        nets,
        vec![(net("10.244.1.1/24"), 0), (net("10.244.9.1/32"), 253)]
    );
    let v6 = h.addr_list(Some(br), Some(Family::V6)).unwrap();
    assert!(
        v6.iter().any(|a| a.addr == net("fd00:10:244:1::1/64")),
        "{v6:?}"
    );

    assert!(h.del_addr(&Addr::new(br, net("10.244.1.1/24"))).unwrap());
    assert!(!h.del_addr(&Addr::new(br, net("10.244.1.1/24"))).unwrap());
    assert_eq!(h.addr_list(Some(br), Some(Family::V4)).unwrap().len(), 1);
}

#[test]
fn routes_add_replace_get_and_delete() {
    let (ns, mut h, br) = with_bridge();
    h.add_addr(&Addr::new(br, net("192.168.50.1/24"))).unwrap();
    let via = RouteSpec::new(net("10.244.2.0/24"))
        .via(ip("192.168.50.12"))
        .dev(br);
    h.add_route(&via).unwrap();
    let err = h.add_route(&via).unwrap_err();
    assert!(err.is_exists());
    assert!(err.to_string().ends_with(": file exists"), "{err}");
    assert!(ns
        .ip(&["route", "show"])
        .contains("10.244.2.0/24 via 192.168.50.12 dev br0"));

    let moved = RouteSpec::new(net("10.244.2.0/24"))
        .via(ip("192.168.50.13"))
        .dev(br);
    h.replace_route(&moved).unwrap();
    let mut metric = RouteSpec::new(net("10.99.0.0/16")).dev(br);
    metric.priority = Some(100);
    metric.scope = Some(253);
    h.add_route(&metric).unwrap();
    let blackhole = RouteSpec::new(net("10.244.1.0/24")).blackhole();
    h.add_route(&blackhole).unwrap();

    let routes = h.route_list(Family::V4, None).unwrap();
    let find = |dst: &str| {
        routes
            .iter()
            .find(|r| r.dst == net(dst))
            .cloned()
            .unwrap_or_else(|| panic!("{dst} in {routes:?}"))
    };
    assert_eq!(find("10.244.2.0/24").gw, Some(ip("192.168.50.13")));
    assert_eq!(
        (find("10.99.0.0/16").priority, find("10.99.0.0/16").scope),
        (Some(100), Some(253))
    );
    assert_eq!(find("10.244.1.0/24").kind, RouteKind::Blackhole);
    assert!(routes.iter().all(|r| r.table == 254), "main table only");

    let onlink_peer = h.route_get(ip("192.168.50.77")).unwrap();
    assert_eq!(
        (onlink_peer.gw, onlink_peer.oif),
        (None, Some(br)),
        "on-link peer has no gateway"
    );
    let routed = h.route_get(ip("10.244.2.5")).unwrap();
    assert_eq!(routed.gw, Some(ip("192.168.50.13")));
    let err = h.route_get(ip("172.31.0.1")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to get route to 172.31.0.1: network is unreachable"
    );

    assert!(
        h.del_route(&RouteSpec::new(net("10.244.2.0/24"))).unwrap(),
        "delete matches without gw"
    );
    assert!(!h.del_route(&RouteSpec::new(net("10.244.2.0/24"))).unwrap());
    assert!(
        h.del_route(&metric).unwrap(),
        "link-scope route deletes too"
    );
    assert!(h.del_route(&blackhole).unwrap());
}

#[test]
fn vxlan_peer_programming_neigh_fdb_onlink_route() {
    let (ns, mut h, br) = with_bridge();
    h.add_addr(&Addr::new(br, net("192.168.50.1/24"))).unwrap();
    let spec = VxlanSpec {
        name: "flannel.1".into(),
        vni: 1,
        underlay: Some(br),
        local: Some(ip("192.168.50.1")),
        mtu: Some(1450),
        ..VxlanSpec::default()
    };
    h.add_vxlan(&spec).unwrap();
    let vx = h.link_by_name("flannel.1").unwrap().unwrap().index;
    h.add_addr(&Addr::new(vx, net("10.244.0.0/32"))).unwrap();
    h.set_link_up(vx).unwrap();

    let peer_mac: MacAddr = "0e:aa:bb:cc:dd:01".parse().unwrap();
    let results = h.batch(&[
        Request::neigh_set(vx, ip("10.244.1.0"), peer_mac),
        Request::fdb_set(vx, peer_mac, ip("192.168.50.12")),
        Request::route_replace(
            &RouteSpec::new(net("10.244.1.0/24"))
                .via(ip("10.244.1.0"))
                .dev(vx)
                .onlink(),
        ),
    ]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    assert!(ns
        .ip(&["route", "show"])
        .contains("10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"));
    assert!(ns
        .ip(&["neigh", "show", "dev", "flannel.1"])
        .contains("10.244.1.0 lladdr 0e:aa:bb:cc:dd:01 PERMANENT"));
    assert!(ns
        .tool("bridge", &["fdb", "show", "dev", "flannel.1"])
        .contains("0e:aa:bb:cc:dd:01 dst 192.168.50.12 self permanent"));

    let route = h
        .route_list(Family::V4, None)
        .unwrap()
        .into_iter()
        .find(|r| r.dst == net("10.244.1.0/24"))
        .unwrap();
    assert!(route.onlink && route.gw == Some(ip("10.244.1.0")) && route.oif == Some(vx));
    let neighs = h.neigh_list(Some(vx), Family::V4).unwrap();
    assert!(
        neighs
            .iter()
            .any(|n| n.ip == ip("10.244.1.0") && n.mac == Some(peer_mac) && n.permanent),
        "{neighs:?}"
    );
    let fdb = h.fdb_list(vx).unwrap();
    assert!(
        fdb.iter()
            .any(|f| f.mac == peer_mac && f.dst == Some(ip("192.168.50.12")) && f.permanent),
        "{fdb:?}"
    );

    // Removal in the same order flanneld uses; each reports that it changed something.
    assert!(h
        .del_route(
            &RouteSpec::new(net("10.244.1.0/24"))
                .via(ip("10.244.1.0"))
                .dev(vx)
        )
        .unwrap());
    assert!(h.del_fdb(vx, peer_mac, ip("192.168.50.12")).unwrap());
    assert!(h.del_neigh(vx, ip("10.244.1.0")).unwrap());
    assert!(!h.del_neigh(vx, ip("10.244.1.0")).unwrap());
    assert!(!h.del_fdb(vx, peer_mac, ip("192.168.50.12")).unwrap());
    assert!(h.fdb_list(vx).unwrap().iter().all(|f| f.mac != peer_mac));
}

#[test]
fn thousand_route_batch_round_trips() {
    let (_ns, mut h, br) = with_bridge();
    let specs: Vec<RouteSpec> = (0..1000u32)
        .map(|i| {
            RouteSpec::new(
                format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
                    .parse()
                    .unwrap(),
            )
            .dev(br)
        })
        .collect();
    let adds: Vec<Request> = specs.iter().map(Request::route_add).collect();
    let started = std::time::Instant::now();
    let results = h.batch(&adds);
    let took = started.elapsed();
    assert_eq!(results.len(), 1000);
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    eprintln!("1000 routes added in {took:?}");

    let listed = h.route_list(Family::V4, None).unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|r| r.oif == Some(br) && specs.iter().any(|s| s.dst == r.dst))
            .count(),
        1000
    );

    // Re-adding is per-request failure, not a batch failure.
    let again = h.batch(&adds[..10]);
    assert!(again
        .iter()
        .all(|r| r.as_ref().is_err_and(|e| e.is_exists())));

    let dels: Vec<Request> = specs.iter().map(Request::route_del).collect();
    assert!(h.batch(&dels).iter().all(Result::is_ok));
    assert!(h
        .route_list(Family::V4, None)
        .unwrap()
        .iter()
        .all(|r| r.oif != Some(br)));
}

#[test]
fn five_thousand_neighbour_batch_loses_no_acknowledgement() {
    // Far more requests than one window: exercises window sizing against the real socket
    // buffer, where an undersized window would surface as AckLost.
    let (_ns, mut h, br) = with_bridge();
    let mac: MacAddr = "0e:00:00:00:00:01".parse().unwrap();
    let reqs: Vec<Request> = (0..5000u32)
        .map(|i| {
            Request::neigh_set(
                br,
                IpAddr::from([10, 200, (i / 256) as u8, (i % 256) as u8]),
                mac,
            )
        })
        .collect();
    let results = h.batch(&reqs);
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let listed = h.neigh_list(Some(br), Family::V4).unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|n| n.permanent && n.mac == Some(mac))
            .count(),
        5000
    );
}

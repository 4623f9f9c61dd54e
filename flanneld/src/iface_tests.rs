use super::*;
use netops::netlink::OperState;

fn link(index: u32, name: &str, mtu: u32) -> LinkInfo {
    LinkInfo {
        index,
        name: name.into(),
        kind: None,
        mac: None,
        mtu,
        up: true,
        promisc: false,
        oper_state: OperState::Up,
        master: None,
        link: None,
        link_netnsid: None,
        vlan_filtering: None,
        vxlan: None,
    }
}

fn addr(index: u32, cidr: &str) -> Addr {
    Addr::new(index, cidr.parse().unwrap())
}

fn inventory() -> Inventory {
    Inventory {
        links: vec![
            link(1, "lo", 65536),
            link(2, "eth0", 1500),
            link(3, "eth1", 9000),
            link(4, "zero", 0),
        ],
        addrs: vec![
            addr(1, "127.0.0.1/8"),
            addr(2, "169.254.3.3/16"),
            addr(2, "10.0.0.2/24"),
            addr(2, "fe80::2/64"),
            addr(2, "fd00::2/64"),
            addr(3, "192.168.7.3/24"),
            addr(4, "172.16.0.4/24"),
        ],
        default_v4: Some(2),
        default_v6: Some(2),
    }
}

fn v4_req() -> IfaceRequest {
    IfaceRequest {
        ipv4: true,
        ..IfaceRequest::default()
    }
}

fn no_route(_: IpAddr) -> Result<(Option<u32>, Option<IpAddr>), NetlinkError> {
    panic!("route lookup not expected")
}

#[test]
fn default_route_interface_and_global_address_first() {
    let ext = select(&inventory(), &v4_req(), no_route).unwrap();
    assert_eq!((ext.name.as_str(), ext.index, ext.mtu), ("eth0", 2, 1500));
    assert_eq!(
        ext.iface_addr,
        Ipv4Addr::new(10, 0, 0, 2),
        "global before link-local"
    );
    assert_eq!(ext.ext_addr, ext.iface_addr);
    assert_eq!(ext.iface_v6_addr, None);
}

#[test]
fn public_ip_selects_the_owning_interface_and_is_published() {
    let req = IfaceRequest {
        public_ip: Some(Ipv4Addr::new(192, 168, 7, 3)),
        ..v4_req()
    };
    let ext = select(&inventory(), &req, no_route).unwrap();
    assert_eq!(ext.name, "eth1");
    assert_eq!(ext.ext_addr, Ipv4Addr::new(192, 168, 7, 3));
    let nat = IfaceRequest {
        public_ip: Some(Ipv4Addr::new(1, 2, 3, 4)),
        ..v4_req()
    };
    assert!(matches!(
        select(&inventory(), &nat, no_route),
        Err(IfaceError::NoDefault(_))
    ));
    // With --iface the public IP need not be local: it only changes what is published.
    let behind_nat = IfaceRequest {
        ifaces: vec!["eth0".into()],
        ..nat
    };
    let ext = select(&inventory(), &behind_nat, no_route).unwrap();
    assert_eq!(
        (ext.iface_addr, ext.ext_addr),
        (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(1, 2, 3, 4))
    );
}

#[test]
fn iface_by_name_or_ip_in_order() {
    let req = IfaceRequest {
        ifaces: vec!["nope".into(), "192.168.7.3".into(), "eth0".into()],
        ..v4_req()
    };
    assert_eq!(select(&inventory(), &req, no_route).unwrap().name, "eth1");
    let req = IfaceRequest {
        ifaces: vec!["10.9.9.9".into(), "eth1".into()],
        ..v4_req()
    };
    assert_eq!(select(&inventory(), &req, no_route).unwrap().name, "eth1");
    let req = IfaceRequest {
        ifaces: vec!["nope".into()],
        ..v4_req()
    };
    assert!(matches!(
        select(&inventory(), &req, no_route),
        Err(IfaceError::NoMatch)
    ));
}

#[test]
fn regex_matches_addresses_before_names() {
    let req = IfaceRequest {
        regexes: vec!["^192\\.168\\.".into()],
        ..v4_req()
    };
    let ext = select(&inventory(), &req, no_route).unwrap();
    assert_eq!(
        (ext.name.as_str(), ext.iface_addr),
        ("eth1", Ipv4Addr::new(192, 168, 7, 3))
    );
    let req = IfaceRequest {
        regexes: vec!["nomatch".into(), "^eth0$".into()],
        ..v4_req()
    };
    assert_eq!(select(&inventory(), &req, no_route).unwrap().name, "eth0");
    let req = IfaceRequest {
        regexes: vec!["(".into()],
        ..v4_req()
    };
    assert!(matches!(
        select(&inventory(), &req, no_route),
        Err(IfaceError::Regex { .. })
    ));
}

#[test]
fn can_reach_uses_the_route_and_its_source() {
    let req = IfaceRequest {
        can_reach: Some("8.8.8.8".parse().unwrap()),
        ..v4_req()
    };
    let ext = select(&inventory(), &req, |ip| {
        assert_eq!(ip, "8.8.8.8".parse::<IpAddr>().unwrap());
        Ok((Some(3), Some("192.168.7.3".parse().unwrap())))
    })
    .unwrap();
    assert_eq!(
        (ext.name.as_str(), ext.iface_addr),
        ("eth1", Ipv4Addr::new(192, 168, 7, 3))
    );
}

#[test]
fn zero_mtu_and_missing_addresses_are_errors() {
    let req = IfaceRequest {
        ifaces: vec!["zero".into()],
        ..v4_req()
    };
    assert!(matches!(
        select(&inventory(), &req, no_route),
        Err(IfaceError::ZeroMtu(_))
    ));
    let req = IfaceRequest {
        ifaces: vec!["eth1".into()],
        ipv6: true,
        ..v4_req()
    };
    assert!(matches!(
        select(&inventory(), &req, no_route),
        Err(IfaceError::NoAddress { family: "IPv6", .. })
    ));
    let mut inv = inventory();
    inv.default_v4 = None;
    assert!(matches!(
        select(&inv, &v4_req(), no_route),
        Err(IfaceError::NoDefault(_))
    ));
}

#[test]
fn dual_stack_takes_both_addresses_from_one_interface() {
    let req = IfaceRequest {
        ipv6: true,
        ..v4_req()
    };
    let ext = select(&inventory(), &req, no_route).unwrap();
    assert_eq!(
        ext.iface_v6_addr,
        Some("fd00::2".parse().unwrap()),
        "global before link-local"
    );
    assert_eq!(ext.ext_v6_addr, ext.iface_v6_addr);
    let mut split = inventory();
    split.default_v6 = Some(3);
    assert!(matches!(
        select(&split, &req, no_route),
        Err(IfaceError::NoDefault(_))
    ));
}

#[test]
fn refreshing_follows_a_renumbered_interface_and_keeps_what_is_still_there() {
    let ext = ExternalInterface {
        name: "eth0".into(),
        index: 2,
        mtu: 1500,
        iface_addr: "192.168.1.10".parse().unwrap(),
        ext_addr: "192.168.1.10".parse().unwrap(),
        iface_v6_addr: None,
        ext_v6_addr: None,
    };
    let req = v4_req();
    // The address is still there among others: nothing moves.
    let same = refresh_from(
        &[addr(2, "192.168.1.5/24"), addr(2, "192.168.1.10/24")],
        &ext,
        &req,
    );
    assert_eq!(
        same,
        Refreshed {
            ext: ext.clone(),
            missing: None
        }
    );
    // Renumbered: the first usable address, published unless pinned.
    let moved = refresh_from(
        &[addr(2, "192.168.1.77/24"), addr(3, "10.0.0.1/8")],
        &ext,
        &req,
    );
    assert_eq!(
        moved.ext.iface_addr,
        "192.168.1.77".parse::<Ipv4Addr>().unwrap()
    );
    assert_eq!(moved.ext.ext_addr, moved.ext.iface_addr);
    let pinned = IfaceRequest {
        public_ip: Some("203.0.113.7".parse().unwrap()),
        ..v4_req()
    };
    let nat = refresh_from(&[addr(2, "192.168.1.77/24")], &ext, &pinned);
    assert_eq!(nat.ext.ext_addr, "203.0.113.7".parse::<Ipv4Addr>().unwrap());
    // Between the old address going and the new one coming: kept, and said so.
    let gap = refresh_from(&[addr(2, "fe80::1/64")], &ext, &req);
    assert_eq!((gap.ext, gap.missing), (ext.clone(), Some("IPv4")));
    // Dual stack: the IPv6 address follows on its own.
    let dual_ext = ExternalInterface {
        iface_v6_addr: Some("fd00::10".parse().unwrap()),
        ext_v6_addr: Some("fd00::10".parse().unwrap()),
        ..ext.clone()
    };
    let dual_req = IfaceRequest {
        ipv6: true,
        ..v4_req()
    };
    let v6 = refresh_from(
        &[addr(2, "192.168.1.10/24"), addr(2, "fd00::20/64")],
        &dual_ext,
        &dual_req,
    );
    assert_eq!(v6.ext.iface_addr, ext.iface_addr);
    assert_eq!(v6.ext.ext_v6_addr, Some("fd00::20".parse().unwrap()));
}

//! Root tests: links in real namespaces.

mod common;

use std::net::IpAddr;
use std::os::fd::AsFd;

use common::TestNetns;
use netops::netlink::{
    BridgeSpec, Handle, LinkKind, MacAddr, OperState, PortVlan, VethSpec, VxlanSpec,
};
use netops::netns::open_netns;

#[test]
fn bridge_is_created_once_and_reports_its_attributes() {
    let ns = TestNetns::new();
    let mut h = Handle::in_netns(ns.path()).unwrap();
    let spec = BridgeSpec {
        name: "cni0".into(),
        mtu: Some(1400),
        vlan_filtering: None,
        mac: None,
    };
    assert!(h.add_bridge(&spec).unwrap());
    assert!(
        !h.add_bridge(&spec).unwrap(),
        "second add reports no change"
    );
    let br = h.link_by_name("cni0").unwrap().expect("bridge exists");
    assert_eq!((br.kind.clone(), br.mtu), (Some(LinkKind::Bridge), 1400));

    h.set_promisc(br.index, true).unwrap();
    let mac: MacAddr = "0a:58:0a:f4:01:01".parse().unwrap();
    h.set_mac(br.index, mac).unwrap();
    h.set_link_up(br.index).unwrap();
    let br = h.link_by_index(br.index).unwrap().unwrap();
    assert!(br.up && br.promisc);
    assert_eq!(br.mac, Some(mac));
    assert!(ns.ip(&["link", "show", "cni0"]).contains("PROMISC"));

    assert!(h.delete_link(br.index).unwrap());
    assert!(!h.delete_link(br.index).unwrap());
    assert_eq!(h.link_by_name("cni0").unwrap(), None);
}

#[test]
fn vlan_filtering_bridge_is_created_or_rejected_with_the_kernel_reason() {
    // Kernels built without CONFIG_BRIDGE_VLAN_FILTERING refuse the attribute outright.
    let ns = TestNetns::new();
    let mut h = Handle::in_netns(ns.path()).unwrap();
    let spec = BridgeSpec {
        name: "cnivf".into(),
        vlan_filtering: Some(true),
        ..BridgeSpec::default()
    };
    match h.add_bridge(&spec) {
        Ok(created) => {
            assert!(created);
            assert_eq!(
                h.link_by_name("cnivf").unwrap().unwrap().vlan_filtering,
                Some(true)
            );
            assert!(ns
                .ip(&["-d", "link", "show", "cnivf"])
                .contains("vlan_filtering 1"));
        }
        Err(e) => {
            assert_eq!(
                e.to_string(),
                "could not add \"cnivf\": operation not supported"
            );
            assert_eq!(h.link_by_name("cnivf").unwrap(), None);
        }
    }
}

#[test]
fn veth_pair_spans_two_namespaces_and_port_flags_read_back() {
    let host = TestNetns::new();
    let pod = TestNetns::new();
    let mut hh = Handle::in_netns(host.path()).unwrap();
    let mut ph = Handle::in_netns(pod.path()).unwrap();
    assert!(hh
        .add_bridge(&BridgeSpec {
            name: "cni0".into(),
            ..BridgeSpec::default()
        })
        .unwrap());
    let bridge = hh.link_by_name("cni0").unwrap().unwrap();

    let host_fd = open_netns(host.path()).unwrap();
    let mac: MacAddr = "0a:58:0a:f4:01:02".parse().unwrap();
    let spec = VethSpec {
        name: "eth0".into(),
        peer_name: "veth0a1b2c3d".into(),
        mtu: Some(1450),
        txqlen: None,
        mac: Some(mac),
        peer_mac: None,
        peer_netns: Some(host_fd.as_fd()),
    };
    ph.add_veth(&spec).unwrap();
    let err = ph.add_veth(&spec).unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert_eq!(err.to_string(), "could not add \"eth0\": file exists");

    let eth0 = ph
        .link_by_name("eth0")
        .unwrap()
        .expect("container end in pod netns");
    let veth = hh
        .link_by_name("veth0a1b2c3d")
        .unwrap()
        .expect("peer end in host netns");
    assert_eq!(ph.link_by_name("veth0a1b2c3d").unwrap(), None);
    assert_eq!(
        (eth0.kind.clone(), eth0.mtu, eth0.mac),
        (Some(LinkKind::Veth), 1450, Some(mac))
    );
    assert_eq!(
        eth0.link,
        Some(veth.index),
        "IFLA_LINK names the peer's index"
    );
    assert!(eth0.link_netnsid.is_some());
    assert_eq!(veth.link, Some(eth0.index));

    hh.set_master(veth.index, Some(bridge.index)).unwrap();
    hh.set_hairpin(veth.index, true).unwrap();
    hh.set_isolated(veth.index, true).unwrap();
    let port = hh
        .bridge_port(veth.index)
        .unwrap()
        .expect("veth is a bridge port");
    assert!(port.hairpin && port.isolated);
    let shown = host.ip(&["-d", "link", "show", "veth0a1b2c3d"]);
    assert!(
        shown.contains("hairpin on") && shown.contains("isolated on"),
        "{shown}"
    );
    hh.set_hairpin(veth.index, false).unwrap();
    assert!(!hh.bridge_port(veth.index).unwrap().unwrap().hairpin);
    assert_eq!(
        hh.link_by_index(veth.index).unwrap().unwrap().master,
        Some(bridge.index)
    );
    assert_eq!(
        hh.bridge_port(bridge.index).unwrap(),
        None,
        "a bridge is not its own port"
    );

    hh.set_link_up(bridge.index).unwrap();
    hh.set_link_up(veth.index).unwrap();
    ph.set_link_up(eth0.index).unwrap();
    let state = wait_oper_up(&mut hh, veth.index);
    assert_eq!(state, OperState::Up);

    hh.set_master(veth.index, None).unwrap();
    assert_eq!(hh.link_by_index(veth.index).unwrap().unwrap().master, None);
    assert!(ph.delete_link(eth0.index).unwrap());
    assert_eq!(
        hh.link_by_name("veth0a1b2c3d").unwrap(),
        None,
        "peer vanishes with the pair"
    );
}

fn wait_oper_up(h: &mut Handle, index: u32) -> OperState {
    let mut state = OperState::Unknown;
    for _ in 0..50 {
        state = h.link_by_index(index).unwrap().unwrap().oper_state;
        if state == OperState::Up {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    state
}

#[test]
fn link_moves_between_namespaces() {
    let a = TestNetns::new();
    let b = TestNetns::new();
    let mut ha = Handle::in_netns(a.path()).unwrap();
    let spec = VethSpec {
        name: "mv0".into(),
        peer_name: "mv1".into(),
        ..VethSpec::default()
    };
    ha.add_veth(&spec).unwrap();
    let mv1 = ha.link_by_name("mv1").unwrap().unwrap();
    let b_fd = open_netns(b.path()).unwrap();
    ha.move_to_netns(mv1.index, b_fd.as_fd()).unwrap();
    assert_eq!(ha.link_by_name("mv1").unwrap(), None);
    assert!(Handle::in_netns(b.path())
        .unwrap()
        .link_by_name("mv1")
        .unwrap()
        .is_some());
}

#[test]
fn vxlan_device_matches_flannel_shape() {
    let ns = TestNetns::new();
    let mut h = Handle::in_netns(ns.path()).unwrap();
    h.add_bridge(&BridgeSpec {
        name: "under0".into(),
        ..BridgeSpec::default()
    })
    .unwrap();
    let under = h.link_by_name("under0").unwrap().unwrap();
    let local: IpAddr = "192.168.50.1".parse().unwrap();
    let mac: MacAddr = "0e:11:22:33:44:55".parse().unwrap();
    let spec = VxlanSpec {
        name: "flannel.1".into(),
        vni: 1,
        underlay: Some(under.index),
        local: Some(local),
        port: Some(8472),
        learning: false,
        gbp: false,
        mtu: Some(1450),
        mac: Some(mac),
    };
    assert!(h.add_vxlan(&spec).unwrap());
    assert!(!h.add_vxlan(&spec).unwrap());
    let dev = h.link_by_name("flannel.1").unwrap().unwrap();
    assert_eq!(
        (dev.kind.clone(), dev.mtu, dev.mac),
        (Some(LinkKind::Vxlan), 1450, Some(mac))
    );
    let vx = dev.vxlan.expect("vxlan attributes");
    assert_eq!(
        (vx.vni, vx.underlay, vx.local, vx.port),
        (1, Some(under.index), Some(local), Some(8472))
    );
    assert!(!vx.learning && !vx.gbp);
    let shown = ns.ip(&["-d", "link", "show", "flannel.1"]);
    assert!(
        shown.contains("vxlan id 1 local 192.168.50.1 dev under0") && shown.contains("nolearning"),
        "{shown}"
    );

    let gbp = VxlanSpec {
        name: "vx-gbp".into(),
        vni: 2,
        gbp: true,
        learning: true,
        ..VxlanSpec::default()
    };
    h.add_vxlan(&gbp).unwrap();
    let vx = h.link_by_name("vx-gbp").unwrap().unwrap().vxlan.unwrap();
    assert!(vx.gbp && vx.learning);
    assert_eq!(
        vx.port,
        Some(8472),
        "kernel default port when none is given"
    );

    h.set_mtu(dev.index, 1400).unwrap();
    assert_eq!(h.link_by_index(dev.index).unwrap().unwrap().mtu, 1400);
    assert!(h.link_list().unwrap().iter().any(|l| l.name == "vx-gbp"));
}

#[test]
fn bridge_port_vlans_are_added_listed_and_removed_or_rejected_with_the_kernel_reason() {
    // Kernels built without CONFIG_BRIDGE_VLAN_FILTERING (like vlan_filtering itself above)
    // reject every VLAN request; then the error must be the kernel's and nothing listed.
    let ns = TestNetns::new();
    let mut h = Handle::in_netns(ns.path()).unwrap();
    h.add_bridge(&BridgeSpec {
        name: "cnivl".into(),
        ..BridgeSpec::default()
    })
    .unwrap();
    let br = h.link_by_name("cnivl").unwrap().unwrap();
    h.add_veth(&VethSpec {
        name: "vp0".into(),
        peer_name: "vp1".into(),
        mtu: None,
        txqlen: None,
        mac: None,
        peer_mac: None,
        peer_netns: None,
    })
    .unwrap();
    let port = h.link_by_name("vp0").unwrap().unwrap();
    h.set_master(port.index, Some(br.index)).unwrap();

    if let Err(e) = h.add_bridge_vlan(port.index, PortVlan::access(100)) {
        assert_eq!(
            e.to_string(),
            format!(
                "failed to add vlan 100 to bridge port {}: operation not supported",
                port.index
            )
        );
        assert!(h.bridge_vlans(port.index).unwrap().is_empty());
        return;
    }
    h.add_bridge_vlan(port.index, PortVlan::tagged(200))
        .unwrap();
    let vlans = h.bridge_vlans(port.index).unwrap();
    assert!(vlans.contains(&PortVlan::access(100)), "{vlans:?}");
    assert!(vlans.contains(&PortVlan::tagged(200)), "{vlans:?}");
    let shown = ns.tool("bridge", &["vlan", "show", "dev", "vp0"]);
    assert!(shown.contains("100 PVID Egress Untagged"), "{shown}");

    assert!(h.del_bridge_vlan(port.index, 200).unwrap());
    assert!(!h.del_bridge_vlan(port.index, 200).unwrap(), "already gone");
    assert!(!h
        .bridge_vlans(port.index)
        .unwrap()
        .contains(&PortVlan::tagged(200)));
}

#[test]
fn the_monitor_names_interfaces_whose_addresses_change() {
    use netops::netlink::{Monitor, Notice};
    use std::time::{Duration, Instant};
    let ns = TestNetns::new();
    // The socket belongs to the namespace it was opened in, whichever thread reads it.
    let mut monitor = netops::netns::run_in(ns.path(), Monitor::addresses)
        .unwrap()
        .unwrap();
    ns.ip(&["link", "add", "m0", "type", "veth", "peer", "name", "m1"]);
    let mut h = Handle::in_netns(ns.path()).unwrap();
    let index = h.link_by_name("m0").unwrap().unwrap().index;
    // Link creation notices first; then one for the address alone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while monitor.wait(Duration::from_millis(200)).unwrap() != Notice::Quiet {
        assert!(Instant::now() < deadline);
    }
    ns.ip(&["addr", "add", "10.9.8.7/24", "dev", "m0"]);
    let seen = monitor.wait(Duration::from_secs(5)).unwrap();
    assert_eq!(seen, Notice::Changed(vec![index]));
    ns.ip(&["addr", "del", "10.9.8.7/24", "dev", "m0"]);
    assert_eq!(
        monitor.wait(Duration::from_secs(5)).unwrap(),
        Notice::Changed(vec![index])
    );
    assert_eq!(
        monitor.wait(Duration::from_millis(100)).unwrap(),
        Notice::Quiet
    );
}

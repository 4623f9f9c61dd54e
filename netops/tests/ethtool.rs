//! Root tests: device features over SIOCETHTOOL, checked against the `ethtool` program.

mod common;

use common::{run, TestNetns};
use netops::ethtool::{Ethtool, EthtoolError};
use netops::netlink::{Handle, VxlanSpec};

const CSUM: &str = "tx-checksum-ip-generic";

/// What `ethtool -k` in the namespace says about `feature` (`on`, `off`, `off [fixed]`...).
fn ethtool_k(ns: &TestNetns, dev: &str, feature: &str) -> String {
    run("ip", &["netns", "exec", &ns.name, "ethtool", "-k", dev])
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{feature}: ")))
        .unwrap_or_else(|| panic!("ethtool -k {dev} lists no {feature}"))
        .to_owned()
}

#[test]
fn tx_checksum_offload_is_turned_off_and_on_as_ethtool_sees_it() {
    let ns = TestNetns::new();
    let mut h = Handle::in_netns(ns.path()).unwrap();
    ns.ip(&["link", "add", "ul0", "type", "veth", "peer", "ul1"]);
    let underlay = h.link_by_name("ul0").unwrap().unwrap().index;
    let spec = VxlanSpec {
        name: "flannel.1".into(),
        vni: 1,
        underlay: Some(underlay),
        local: Some("192.0.2.1".parse().unwrap()),
        port: None,
        learning: false,
        gbp: false,
        mtu: Some(1450),
        mac: None,
    };
    h.add_vxlan(&spec).unwrap();
    // Created from another thread's namespace: the socket carries it.
    let et = std::thread::spawn({
        let path = ns.path();
        move || Ethtool::in_netns(path).unwrap()
    })
    .join()
    .unwrap();

    let state = et.feature("flannel.1", CSUM).unwrap();
    assert!(state.active && state.changeable, "{state:?}");
    assert_eq!(ethtool_k(&ns, "flannel.1", CSUM), "on");

    assert!(et.set_feature("flannel.1", CSUM, false).unwrap(), "changed");
    assert_eq!(ethtool_k(&ns, "flannel.1", CSUM), "off");
    assert!(!et.feature("flannel.1", CSUM).unwrap().active);
    assert!(
        !et.set_feature("flannel.1", CSUM, false).unwrap(),
        "already off"
    );
    assert!(et.set_feature("flannel.1", CSUM, true).unwrap());
    assert_eq!(ethtool_k(&ns, "flannel.1", CSUM), "on");

    // Errors name the device and what is wrong.
    let e = et.feature("flannel.1", "no-such-feature").unwrap_err();
    assert!(matches!(e, EthtoolError::UnknownFeature { .. }), "{e}");
    let e = et.feature("nonexistent0", CSUM).unwrap_err();
    assert!(e.to_string().contains("\"nonexistent0\""), "{e}");
    assert!(matches!(
        et.feature("a-name-longer-than-15", CSUM),
        Err(EthtoolError::BadName(_))
    ));
    // loopback's checksum offload is not changeable.
    let e = et.set_feature("lo", CSUM, false).unwrap_err();
    assert!(matches!(e, EthtoolError::Fixed { active: true, .. }), "{e}");
}

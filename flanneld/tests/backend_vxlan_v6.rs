//! vxlan in dual-stack mode: the second device `flannel-v6.<VNI>` over an IPv6 underlay.

use flanneld::subnet::VxlanLeaseData;
use flanneld::subnet::{Event, Lease};
use flanneld_bed::{add_pod_gateway_v6, join_dual, lines, two_hosts};

const NET_CONF: &str = r#"{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fc00:244::/48","Backend":{"Type":"vxlan"}}"#;

fn v6_mac(l: &Lease) -> String {
    VxlanLeaseData::from_data(l.attrs.backend_v6_data.as_ref().expect("BackendV6Data"))
        .unwrap()
        .vtep_mac
        .to_string()
}

#[test]
fn dual_stack_peers_get_a_v6_tunnel_too() {
    let (mut a, mut b) = two_hosts();
    let la = join_dual(&mut a, 1, NET_CONF, "vxlan");
    let lb = join_dual(&mut b, 2, NET_CONF, "vxlan");
    assert_ne!(v6_mac(&la), "", "BackendV6Data published");

    let link = a.ns.ip(&["-d", "link", "show", "flannel-v6.1"]);
    assert!(link.contains("vxlan id 1 local fd77::1 dev eth0"), "{link}");
    assert!(link.contains("mtu 1430"), "{link}");
    assert_eq!(a.backend().mtu(), 1430, "pods must fit the IPv6 tunnel too");
    let addrs = a.ns.ip(&[
        "-6",
        "-o",
        "addr",
        "show",
        "dev",
        "flannel-v6.1",
        "scope",
        "global",
    ]);
    assert!(addrs.contains("inet6 fc00:244:0:1::/128"), "{addrs}");

    let r = a.handle(&[Event::added(lb.clone())]);
    assert!(r.errors.is_empty(), "{r:?}");
    b.handle(&[Event::added(la.clone())]);
    assert_eq!(
        lines(&a.ns.ip(&["-6", "neigh", "show", "dev", "flannel-v6.1"])),
        [format!("fc00:244:0:2:: lladdr {} PERMANENT", v6_mac(&lb))]
    );
    assert_eq!(
        lines(&a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel-v6.1"])),
        [format!("{} dst fd77::2 self permanent", v6_mac(&lb))]
    );
    let routes = lines(&a.ns.ip(&["-6", "route", "show", "fc00:244:0:2::/64"]));
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(
        routes[0].starts_with("fc00:244:0:2::/64 via fc00:244:0:2:: dev flannel-v6.1")
            && routes[0].contains("onlink"),
        "{routes:?}"
    );
    // The IPv4 side is unaffected by the second family.
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "10.244.2.0/24"])),
        ["10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]
    );

    for (node, n) in [(&a, 1u16), (&b, 2)] {
        add_pod_gateway_v6(node, n);
    }
    assert!(
        a.ns.try_exec(&[
            "ping",
            "-6",
            "-c",
            "1",
            "-W",
            "2",
            "-I",
            "fc00:244:0:1::1",
            "fc00:244:0:2::1"
        ]),
        "no IPv6 overlay connectivity"
    );

    let r = a.reconcile(std::slice::from_ref(&lb));
    assert_eq!((r.repaired, r.errors.len()), (0, 0), "{r:?}");
    let r = a.handle(&[Event::removed(lb)]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        a.ns.ip(&["-6", "route", "show", "fc00:244:0:2::/64"])
            .trim(),
        ""
    );
    assert_eq!(
        a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel-v6.1"])
            .trim(),
        ""
    );
}

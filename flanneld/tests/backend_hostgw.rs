//! host-gw backend against the real kernel, in namespaces this test creates.

use std::net::Ipv4Addr;

use flanneld::backend::BackendError;
use flanneld::subnet::Event;
use flanneld::subnet::StoredMacs;
use flanneld_bed::{add_pod_gateway, lease, lines, two_hosts};

const NET_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#;

#[test]
fn peers_are_routed_via_their_public_ip_and_traffic_flows() {
    let (mut a, mut b) = two_hosts();
    a.start(NET_CONF).unwrap();
    b.start(NET_CONF).unwrap();
    let la = a.join();
    let lb = b.join();
    assert_eq!(la.attrs.backend_type, "host-gw");
    assert_eq!(la.attrs.backend_data, None);
    assert_eq!(a.backend().mtu(), 1500, "FLANNEL_MTU is the external MTU");
    assert!(a
        .ns
        .ip(&["link", "show", "type", "vxlan"])
        .trim()
        .is_empty());

    let r = a.handle(&[Event::added(lb.clone())]);
    assert_eq!((r.added, r.errors.len()), (1, 0), "{r:?}");
    b.handle(&[Event::added(la.clone())]);
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "10.244.2.0/24"])),
        ["10.244.2.0/24 via 192.168.77.2 dev eth0"]
    );
    let (gw_a, gw_b) = (add_pod_gateway(&a), add_pod_gateway(&b));
    assert!(a.ns.ping(gw_a, gw_b), "no connectivity a -> b");

    // A route someone else put there for the same subnet is replaced.
    a.ns.ip(&[
        "route",
        "replace",
        "10.244.2.0/24",
        "via",
        "192.168.77.99",
        "dev",
        "eth0",
    ]);
    a.handle(&[Event::added(lb.clone())]);
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "10.244.2.0/24"])),
        ["10.244.2.0/24 via 192.168.77.2 dev eth0"]
    );

    let r = a.handle(&[Event::removed(lb)]);
    assert_eq!((r.removed, r.errors.len()), (1, 0), "{r:?}");
    assert_eq!(a.ns.ip(&["route", "show", "10.244.2.0/24"]).trim(), "");
    assert!(!a.ns.ping(gw_a, gw_b));
}

#[test]
fn public_ip_behind_nat_is_refused_with_upstreams_message() {
    let (mut a, _b) = two_hosts();
    let mut ext = a.ext();
    ext.ext_addr = Ipv4Addr::new(203, 0, 113, 7);
    let err = match a.start_with(NET_CONF, ext, StoredMacs::default()) {
        Err(e) => e,
        Ok(()) => panic!("host-gw accepted a NATed public IP"),
    };
    assert!(matches!(err, BackendError::Nat));
    assert_eq!(
        err.to_string(),
        "your PublicIP differs from interface IP, meaning that probably you're on a NAT, \
         which is not supported by host-gw backend"
    );
}

#[test]
fn a_peer_off_the_segment_is_reported_and_does_not_block_the_others() {
    let (mut a, _b) = two_hosts();
    a.start(NET_CONF).unwrap();
    a.join();
    let near = lease(
        "10.244.2.0/24".parse().unwrap(),
        Ipv4Addr::new(192, 168, 77, 2),
        "host-gw",
        None,
    );
    let far = lease(
        "10.244.3.0/24".parse().unwrap(),
        Ipv4Addr::new(10, 99, 0, 5),
        "host-gw",
        None,
    );
    let r = a.handle(&[Event::added(far), Event::added(near)]);
    assert_eq!(r.added, 1, "{r:?}");
    assert_eq!(r.errors.len(), 1, "{r:?}");
    let e = &r.errors[0];
    assert!(e.starts_with("peer 10.244.3.0/24 (10.99.0.5): "), "{e}");
    assert!(e.contains("network is unreachable"), "{e}");
    assert!(e.contains("host-gw needs all nodes on one segment"), "{e}");
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "root", "10.244.0.0/16"])),
        ["10.244.2.0/24 via 192.168.77.2 dev eth0"]
    );
}

#[test]
fn reconcile_restores_missing_routes_and_removes_orphans() {
    let (mut a, _b) = two_hosts();
    a.start(NET_CONF).unwrap();
    a.join();
    let peers: Vec<_> = (2..=4)
        .map(|i| {
            lease(
                format!("10.244.{i}.0/24").parse().unwrap(),
                Ipv4Addr::new(192, 168, 77, i),
                "host-gw",
                None,
            )
        })
        .collect();
    let r = a.reconcile(&peers);
    assert_eq!((r.added, r.removed, r.repaired), (3, 0, 3), "{r:?}");
    assert_eq!(a.reconcile(&peers).repaired, 0);

    a.ns.ip(&["route", "del", "10.244.3.0/24"]);
    // A node that left while we were down, and routes that are not ours to touch.
    a.ns.ip(&[
        "route",
        "add",
        "10.244.9.0/24",
        "via",
        "192.168.77.9",
        "dev",
        "eth0",
    ]);
    a.ns.ip(&[
        "route",
        "add",
        "172.30.0.0/24",
        "via",
        "192.168.77.9",
        "dev",
        "eth0",
    ]);
    a.ns.ip(&[
        "route",
        "add",
        "10.244.0.0/16",
        "via",
        "192.168.77.9",
        "dev",
        "eth0",
    ]);

    let r = a.reconcile(&peers);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!((r.added, r.removed, r.repaired), (1, 1, 2), "{r:?}");
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "dev", "eth0"])),
        [
            "10.244.0.0/16 via 192.168.77.9",
            "10.244.2.0/24 via 192.168.77.2",
            "10.244.3.0/24 via 192.168.77.3",
            "10.244.4.0/24 via 192.168.77.4",
            "172.30.0.0/24 via 192.168.77.9",
            "192.168.77.0/24 proto kernel scope link src 192.168.77.1",
        ]
    );
}

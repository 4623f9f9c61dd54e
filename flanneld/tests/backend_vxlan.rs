//! vxlan backend against the real kernel, in namespaces this test creates.

use std::net::Ipv4Addr;
use std::time::Instant;

use flanneld::subnet::{Event, Lease};
use flanneld::subnet::{StoredMacs, VxlanLeaseData};
use flanneld_bed::{add_pod_gateway, lease, lines, two_hosts, Node};
use netops::netlink::{Family, Handle, MacAddr};

const NET_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
const NET_CONF_DIRECT: &str =
    r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#;

fn mac_of(l: &Lease) -> MacAddr {
    VxlanLeaseData::from_data(l.attrs.backend_data.as_ref().unwrap())
        .unwrap()
        .vtep_mac
}

fn started(conf: &str) -> (Node, Node, Lease, Lease) {
    let (mut a, mut b) = two_hosts();
    a.start(conf).unwrap();
    b.start(conf).unwrap();
    let la = a.join();
    let lb = b.join();
    (a, b, la, lb)
}

#[test]
fn two_nodes_program_vxlan_exactly_like_upstream_and_pass_traffic() {
    let (mut a, mut b, la, lb) = started(NET_CONF);
    let (mac_a, mac_b) = (mac_of(&la), mac_of(&lb));
    let data = la.attrs.backend_data.as_ref().unwrap().as_json().to_owned();
    assert_eq!(data, format!(r#"{{"VNI":1,"VtepMAC":"{mac_a}"}}"#));
    assert_eq!(a.backend().mtu(), 1450);
    assert_eq!(a.backend().backend_type(), "vxlan");

    let link = a.ns.ip(&["-d", "link", "show", "flannel.1"]);
    assert!(link.contains("mtu 1450"), "{link}");
    assert!(link.contains(&format!("link/ether {mac_a}")), "{link}");
    assert!(
        link.contains("vxlan id 1 local 192.168.77.1 dev eth0"),
        "{link}"
    );
    assert!(link.contains("dstport 8472 nolearning"), "{link}");
    assert!(link.contains(",UP,"), "{link}");
    assert_eq!(
        a.ns.exec(&["cat", "/proc/sys/net/ipv6/conf/flannel.1/accept_ra"])
            .trim(),
        "0"
    );
    let addrs = a.ns.ip(&["-4", "-o", "addr", "show", "dev", "flannel.1"]);
    assert!(addrs.contains("inet 10.244.1.0/32"), "{addrs}");

    let ra = a.handle(&[Event::added(lb.clone())]);
    let rb = b.handle(&[Event::added(la.clone())]);
    assert_eq!((ra.added, ra.errors.len()), (1, 0), "{ra:?}");
    assert_eq!((rb.added, rb.errors.len()), (1, 0), "{rb:?}");

    assert_eq!(
        lines(&a.ns.ip(&["neigh", "show", "dev", "flannel.1"])),
        [format!("10.244.2.0 lladdr {mac_b} PERMANENT")]
    );
    assert_eq!(
        lines(&a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])),
        [format!("{mac_b} dst 192.168.77.2 self permanent")]
    );
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "root", "10.244.0.0/16"])),
        ["10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]
    );

    let gw_a = add_pod_gateway(&a);
    let gw_b = add_pod_gateway(&b);
    assert!(a.ns.ping(gw_a, gw_b), "no overlay connectivity a -> b");
    assert!(b.ns.ping(gw_b, gw_a), "no overlay connectivity b -> a");
    // The packets really went through the tunnel.
    let tx: u64 =
        a.ns.exec(&["cat", "/sys/class/net/flannel.1/statistics/tx_packets"])
            .trim()
            .parse()
            .unwrap();
    assert!(tx > 0, "nothing was sent through flannel.1");

    let removed = a.handle(&[Event::removed(lb.clone())]);
    assert_eq!(
        (removed.removed, removed.errors.len()),
        (1, 0),
        "{removed:?}"
    );
    assert_eq!(a.ns.ip(&["neigh", "show", "dev", "flannel.1"]).trim(), "");
    assert_eq!(
        a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])
            .trim(),
        ""
    );
    assert_eq!(a.ns.ip(&["route", "show", "dev", "flannel.1"]).trim(), "");
    assert!(!a.ns.ping(gw_a, gw_b), "traffic still flows after removal");
}

#[test]
fn direct_routing_routes_same_segment_peers_without_the_tunnel() {
    let (mut a, mut b, la, lb) = started(NET_CONF_DIRECT);
    a.handle(&[Event::added(lb.clone())]);
    b.handle(&[Event::added(la.clone())]);
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "10.244.2.0/24"])),
        ["10.244.2.0/24 via 192.168.77.2 dev eth0"]
    );
    assert_eq!(a.ns.ip(&["neigh", "show", "dev", "flannel.1"]).trim(), "");
    assert_eq!(
        a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])
            .trim(),
        ""
    );
    let (gw_a, gw_b) = (add_pod_gateway(&a), add_pod_gateway(&b));
    assert!(a.ns.ping(gw_a, gw_b));

    // A peer behind a router (not on-link) still goes through the tunnel.
    let far = lease(
        "10.244.3.0/24".parse().unwrap(),
        Ipv4Addr::new(172, 31, 0, 9),
        "vxlan",
        la.attrs.backend_data.as_ref().map(|d| d.value()),
    );
    a.ns.ip(&["route", "add", "172.31.0.0/16", "via", "192.168.77.2"]);
    let r = a.handle(&[Event::added(far.clone())]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "10.244.3.0/24"])),
        ["10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink"]
    );

    let r = a.handle(&[Event::removed(lb), Event::removed(far)]);
    assert_eq!((r.removed, r.errors.len()), (2, 0), "{r:?}");
    for dst in ["10.244.2.0/24", "10.244.3.0/24"] {
        assert_eq!(a.ns.ip(&["route", "show", dst]).trim(), "", "{dst}");
    }
}

#[test]
fn reconcile_repairs_hand_deleted_objects_and_prunes_stale_peers() {
    let (mut a, mut b, _la, lb) = started(NET_CONF);
    let mac_b = mac_of(&lb);
    a.handle(&[Event::added(lb.clone())]);
    let clean = a.reconcile(std::slice::from_ref(&lb));
    assert_eq!(clean.repaired, 0, "nothing to repair: {clean:?}");

    a.ns.ip(&["route", "del", "10.244.2.0/24"]);
    a.ns.ip(&["neigh", "del", "10.244.2.0", "dev", "flannel.1"]);
    a.ns.exec(&[
        "bridge",
        "fdb",
        "del",
        &mac_b.to_string(),
        "dev",
        "flannel.1",
        "dst",
        "192.168.77.2",
    ]);
    // Leftovers of a node that vanished while we were down (#2554).
    a.ns.ip(&[
        "neigh",
        "add",
        "10.244.9.0",
        "lladdr",
        "02:00:00:00:00:09",
        "dev",
        "flannel.1",
        "nud",
        "permanent",
    ]);
    a.ns.exec(&[
        "bridge",
        "fdb",
        "append",
        "02:00:00:00:00:09",
        "dev",
        "flannel.1",
        "dst",
        "192.168.77.9",
        "self",
        "permanent",
    ]);
    a.ns.ip(&[
        "route",
        "add",
        "10.244.9.0/24",
        "via",
        "10.244.9.0",
        "dev",
        "flannel.1",
        "onlink",
    ]);
    // Routes outside the flannel Network are not ours, even on the device.
    a.ns.ip(&["route", "add", "172.30.0.0/24", "dev", "flannel.1"]);

    let r = a.reconcile(std::slice::from_ref(&lb));
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!((r.added, r.removed, r.repaired), (3, 3, 6), "{r:?}");
    assert_eq!(
        lines(&a.ns.ip(&["neigh", "show", "dev", "flannel.1"])),
        [format!("10.244.2.0 lladdr {mac_b} PERMANENT")]
    );
    assert_eq!(
        lines(&a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])),
        [format!("{mac_b} dst 192.168.77.2 self permanent")]
    );
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "dev", "flannel.1"])),
        [
            "10.244.2.0/24 via 10.244.2.0 onlink",
            "172.30.0.0/24 scope link"
        ]
    );
    drop(b.backend.take());
}

#[test]
fn a_deleted_device_is_recreated_with_its_mac_and_all_peers_replayed() {
    let (mut a, _b, la, lb) = started(NET_CONF);
    let third = lease(
        "10.244.3.0/24".parse().unwrap(),
        Ipv4Addr::new(192, 168, 77, 3),
        "vxlan",
        Some(serde_json::json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:03"})),
    );
    a.handle(&[Event::added(lb.clone()), Event::added(third.clone())]);
    a.ns.ip(&["link", "del", "flannel.1"]);

    let r = a.reconcile(&[lb.clone(), third]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.repaired, 6, "{r:?}");
    let link = a.ns.ip(&["link", "show", "flannel.1"]);
    assert!(
        link.contains(&format!("link/ether {}", mac_of(&la))),
        "{link}"
    );
    assert!(a
        .ns
        .ip(&["-4", "addr", "show", "dev", "flannel.1"])
        .contains("10.244.1.0/32"));
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "dev", "flannel.1"])),
        [
            "10.244.2.0/24 via 10.244.2.0 onlink",
            "10.244.3.0/24 via 10.244.3.0 onlink"
        ]
    );

    // The same recovery happens when the loss is noticed by an event batch.
    a.ns.ip(&["link", "del", "flannel.1"]);
    let fourth = lease(
        "10.244.4.0/24".parse().unwrap(),
        Ipv4Addr::new(192, 168, 77, 4),
        "vxlan",
        Some(serde_json::json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:04"})),
    );
    let r = a.handle(&[Event::added(fourth)]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "dev", "flannel.1"])).len(),
        3
    );
    assert_eq!(
        lines(&a.ns.ip(&["neigh", "show", "dev", "flannel.1"])).len(),
        3
    );
}

#[test]
fn reconcile_restores_a_downed_and_flushed_device() {
    let (mut a, _b, _la, lb) = started(NET_CONF);
    a.handle(&[Event::added(lb.clone())]);
    a.ns.ip(&["addr", "flush", "dev", "flannel.1"]);
    // Taking the link down also makes the kernel drop the routes through it.
    a.ns.ip(&["link", "set", "flannel.1", "down"]);
    assert_eq!(a.ns.ip(&["route", "show", "dev", "flannel.1"]).trim(), "");

    let r = a.reconcile(std::slice::from_ref(&lb));
    assert!(r.errors.is_empty() && r.repaired >= 1, "{r:?}");
    let link = a.ns.ip(&["link", "show", "flannel.1"]);
    assert!(link.contains(",UP,"), "{link}");
    assert!(a
        .ns
        .ip(&["-4", "addr", "show", "dev", "flannel.1"])
        .contains("10.244.1.0/32"));
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "dev", "flannel.1"])),
        ["10.244.2.0/24 via 10.244.2.0 onlink"]
    );
    assert_eq!(a.reconcile(std::slice::from_ref(&lb)).repaired, 0);
}

#[test]
fn existing_devices_are_reused_or_recreated_and_foreign_addresses_pruned() {
    let (mut a, _b) = two_hosts();
    // Left by a previous run: compatible except for an old lease address and an extra one.
    a.ns.ip(&[
        "link",
        "add",
        "flannel.1",
        "address",
        "02:aa:00:00:00:01",
        "type",
        "vxlan",
        "id",
        "1",
        "dev",
        "eth0",
        "local",
        "192.168.77.1",
        "dstport",
        "8472",
        "nolearning",
    ]);
    a.ns.ip(&["addr", "add", "10.244.7.0/32", "dev", "flannel.1"]);
    a.ns.ip(&["addr", "add", "169.254.3.3/16", "dev", "flannel.1"]);
    a.start(NET_CONF).unwrap();
    let la = a.join();
    assert_eq!(mac_of(&la).to_string(), "02:aa:00:00:00:01");
    let addrs = a.ns.ip(&["-4", "-o", "addr", "show", "dev", "flannel.1"]);
    assert!(
        addrs.contains("10.244.1.0/32") && addrs.contains("169.254.3.3/16"),
        "{addrs}"
    );
    assert!(!addrs.contains("10.244.7.0"), "{addrs}");

    // Learning on, against a config without it: replaced by a fresh device.
    a.ns.ip(&["link", "del", "flannel.1"]);
    a.ns.ip(&[
        "link",
        "add",
        "flannel.1",
        "address",
        "02:aa:00:00:00:02",
        "type",
        "vxlan",
        "id",
        "1",
        "dev",
        "eth0",
        "local",
        "192.168.77.1",
        "learning",
    ]);
    let stored: MacAddr = "02:bb:00:00:00:01".parse().unwrap();
    let ext = a.ext();
    a.start_with(
        NET_CONF,
        ext,
        StoredMacs {
            v4: Some(stored),
            v6: None,
        },
    )
    .unwrap();
    let la = a.join();
    assert_eq!(mac_of(&la), stored, "a created device takes the stored MAC");
    let link = a.ns.ip(&["-d", "link", "show", "flannel.1"]);
    assert!(
        link.contains("nolearning") && link.contains(&stored.to_string()),
        "{link}"
    );
}

#[test]
fn event_batches_collapse_per_subnet_and_ignore_other_backends() {
    let (mut a, _b, _la, lb) = started(NET_CONF);
    let mut moved = lb.clone();
    moved.attrs.public_ip = Ipv4Addr::new(192, 168, 77, 20);
    moved.attrs.backend_data =
        Some(serde_json::json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:20"}).into());
    let transient = lease(
        "10.244.5.0/24".parse().unwrap(),
        Ipv4Addr::new(192, 168, 77, 5),
        "vxlan",
        Some(serde_json::json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:05"})),
    );
    let foreign = lease(
        "10.244.6.0/24".parse().unwrap(),
        Ipv4Addr::new(192, 168, 77, 6),
        "host-gw",
        None,
    );
    a.handle(&[Event::added(lb.clone())]);
    let r = a.handle(&[
        Event::added(moved),
        Event::added(transient.clone()),
        Event::removed(transient),
        Event::added(foreign),
    ]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!((r.added, r.removed), (1, 1), "{r:?}");
    assert_eq!(
        lines(&a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])),
        ["02:00:00:00:00:20 dst 192.168.77.20 self permanent"]
    );
    assert_eq!(
        lines(&a.ns.ip(&["neigh", "show", "dev", "flannel.1"])),
        ["10.244.2.0 lladdr 02:00:00:00:00:20 PERMANENT"]
    );
    assert_eq!(
        lines(&a.ns.ip(&["route", "show", "dev", "flannel.1"])),
        ["10.244.2.0/24 via 10.244.2.0 onlink"]
    );

    let broken = lease(
        "10.244.8.0/24".parse().unwrap(),
        Ipv4Addr::new(192, 168, 77, 8),
        "vxlan",
        Some(serde_json::json!({"VNI": 1})),
    );
    let r = a.handle(&[Event::added(broken)]);
    assert_eq!(r.added, 0);
    assert!(
        r.errors.len() == 1 && r.errors[0].contains("peer 10.244.8.0/24 (192.168.77.8)"),
        "{r:?}"
    );
}

fn many_peers(n: usize) -> Vec<Lease> {
    (0..n)
        .map(|i| {
            let (hi, lo) = ((i / 256) as u8, (i % 256) as u8);
            lease(
                format!("10.{}.{lo}.0/24", hi + 1).parse().unwrap(),
                Ipv4Addr::new(172, 16, hi, lo),
                "vxlan",
                Some(serde_json::json!({"VNI": 1, "VtepMAC": format!("02:00:00:00:{hi:02x}:{lo:02x}")})),
            )
        })
        .collect()
}

#[test]
fn two_thousand_peers_in_one_batch() {
    const PEERS: usize = 2000;
    let (mut a, _b) = two_hosts();
    a.subnet = "10.200.0.0/24".parse().unwrap();
    a.start(r#"{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}"#)
        .unwrap();
    a.join();
    let peers = many_peers(PEERS);
    let events: Vec<Event> = peers.iter().cloned().map(Event::added).collect();

    let started = Instant::now();
    let r = a.handle(&events);
    println!("handle(): {PEERS} peers added in {:?}", started.elapsed());
    assert_eq!(
        (r.added, r.errors.len()),
        (PEERS, 0),
        "{:?}",
        &r.errors[..r.errors.len().min(3)]
    );

    let counts = a.ns.run(|| {
        let mut nl = Handle::new().unwrap();
        let dev = nl.link_by_name("flannel.1").unwrap().unwrap().index;
        let routes = nl
            .route_list(Family::V4, None)
            .unwrap()
            .into_iter()
            .filter(|r| r.oif == Some(dev) && r.onlink)
            .count();
        let neighs = nl.neigh_list(Some(dev), Family::V4).unwrap().len();
        let fdbs = nl.fdb_list(dev).unwrap().len();
        (neighs, fdbs, routes)
    });
    assert_eq!(counts, (PEERS, PEERS, PEERS));

    let started = Instant::now();
    let r = a.reconcile(&peers);
    println!(
        "reconcile(): {PEERS} peers verified in {:?}",
        started.elapsed()
    );
    assert_eq!((r.repaired, r.errors.len()), (0, 0), "{r:?}");

    let started = Instant::now();
    let events: Vec<Event> = peers.into_iter().map(Event::removed).collect();
    let r = a.handle(&events);
    println!("handle(): {PEERS} peers removed in {:?}", started.elapsed());
    assert_eq!((r.removed, r.errors.len()), (PEERS, 0));
    assert_eq!(a.ns.ip(&["route", "show", "dev", "flannel.1"]).trim(), "");
    assert_eq!(
        a.ns.exec(&["bridge", "fdb", "show", "dev", "flannel.1"])
            .trim(),
        ""
    );
}

//! A node's address changes (DHCP renumbering, a moved VM; upstream closed #408 and #1052 as
//! won't-fix: restart flanneld). Here a host's underlay address is replaced while flanneld
//! runs: it follows the interface over netlink, moves its backend to the new address,
//! republishes its lease with the new PublicIP, and the other nodes update their routes,
//! neighbours and FDB entries from the new record — nobody restarts, and pods reach each
//! other again.

use std::net::Ipv4Addr;
use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::Segment;
use serde_json::json;

const NEW_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 77);

/// Replaces `node`'s underlay address with `NEW_IP`, as a DHCP renumbering does: the old one
/// goes (and with it the route to the other segment), the new one comes.
fn renumber(node: &Flanneld) {
    let ns = node.host.netns();
    let old = format!("{}/24", node.host.ip());
    ns.exec_ok(&["ip", "addr", "del", &old, "dev", "eth0"])
        .unwrap();
    ns.exec_ok(&["ip", "addr", "add", &format!("{NEW_IP}/24"), "dev", "eth0"])
        .unwrap();
    let other = Segment::B.subnet().to_string();
    let router = Segment::A.router_ip().to_string();
    ns.exec_ok(&["ip", "route", "replace", &other, "via", &router])
        .unwrap();
}

/// The PublicIP in `node`'s lease record.
fn published_ip(cluster: &Cluster, node: &Flanneld) -> Option<String> {
    let s = node.subnet().unwrap();
    let key = format!("{PREFIX}/subnets/{}-{}", s.addr(), s.prefix_len());
    let value = cluster.etcd.get(&key).ok().flatten()?;
    let v: serde_json::Value = serde_json::from_str(&value).ok()?;
    v["PublicIP"].as_str().map(str::to_owned)
}

fn follows_a_renumbered_host(backend: serde_json::Value, segments: &[Segment]) {
    let cluster = Cluster::new(&json!({"Network": "10.244.0.0/16", "Backend": backend}));
    let hosts: Vec<(Segment, String)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("ren{i}")))
        .collect();
    let hosts: Vec<(Segment, &str)> = hosts.iter().map(|(s, t)| (*s, t.as_str())).collect();
    let nodes = cluster.start_nodes(&hosts, &["--ip-masq"], None);
    let driver = our_driver();
    let pods = pods_in_full_mesh(&driver, &nodes, "ren");

    renumber(&nodes[0]);
    assert!(
        eventually(Duration::from_secs(60), || published_ip(
            &cluster, &nodes[0]
        )
        .as_deref()
            == Some("192.168.1.77")),
        "the lease still says {:?}:\n{}",
        published_ip(&cluster, &nodes[0]),
        nodes[0].log()
    );
    assert!(
        nodes[0]
            .log()
            .contains("republished with PublicIP 192.168.1.77"),
        "{}",
        nodes[0].log()
    );
    assert_full_mesh(
        &pods.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
    );
    for n in &nodes {
        assert_eq!(
            n.log().matches("Wrote subnet file").count(),
            1,
            "no restart, no new lease:\n{}",
            n.log()
        );
    }
}

#[test]
fn vxlan_follows_a_renumbered_host() {
    follows_a_renumbered_host(
        json!({"Type": "vxlan"}),
        &[Segment::A, Segment::A, Segment::B],
    );
}

#[test]
fn host_gw_follows_a_renumbered_host() {
    follows_a_renumbered_host(json!({"Type": "host-gw"}), &[Segment::A, Segment::A]);
}

#[test]
fn udp_follows_a_renumbered_host() {
    follows_a_renumbered_host(json!({"Type": "udp"}), &[Segment::A, Segment::B]);
}

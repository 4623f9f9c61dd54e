//! Reservations (upstream `Documentation/reservations.md`): a subnet record written without a
//! lifetime for a node's PublicIP. Each keyspace does what upstream's code for it does:
//!
//! - etcd v2 (flannel <= v0.17): the node reuses its reservation and it stays one, never
//!   renewed; a live lease an operator turns into a reservation is left one.
//! - etcd v3 (upstream's current code reads a missing etcd lease as expiring now): the node
//!   reuses it and puts it on a 24 h lease; a live lease turned into a reservation is put back
//!   on a lease at once.
//!
//! In both, another node's reservation is never handed out or touched, and pods reach the
//! reserved node like any other.

use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::Segment;
use serde_json::{json, Value};

const NETWORK: &str = "10.244.0.0/16";
const RESERVED: &str = "10.244.77.0/24";
/// A reservation for a node that is not running.
const ABSENT: &str = "10.244.78.0/24";
const ABSENT_IP: &str = "192.168.1.200";

fn vxlan() -> Value {
    json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}})
}

fn key(subnet: &str) -> String {
    format!("{PREFIX}/subnets/{}", subnet.replace('/', "-"))
}

/// A record as upstream writes it, for `ip`.
fn record(ip: &str, mac: &str) -> String {
    json!({"PublicIP": ip, "PublicIPv6": null, "BackendType": "vxlan",
           "BackendData": {"VNI": 1, "VtepMAC": mac}})
    .to_string()
}

fn renewals(node: &Flanneld) -> usize {
    node.log().matches("Lease renewed").count()
}

/// Waits until `node` has renewed its lease `more` more times: time for every node with the
/// same lease lifetime to renew as often, told by the log rather than by a clock.
fn wait_renewals(node: &Flanneld, more: usize) {
    let want = renewals(node) + more;
    assert!(
        eventually(Duration::from_secs(90), || renewals(node) >= want),
        "{} did not renew {more} more times:\n{}",
        node.host.netns().name(),
        node.log()
    );
}

/// The v2 node of `key` (`etcdctl -o json get`).
fn v2_node(cluster: &Cluster, key: &str) -> Value {
    let out = cluster.etcdctl2(&["-o", "json", "get", key]);
    serde_json::from_str::<Value>(&out).unwrap()["node"].clone()
}

/// The v3 record of `key` (`etcdctl get -w json`): its value and etcd lease id (0: none).
fn v3_record(cluster: &Cluster, key: &str) -> (String, u64) {
    let out = cluster
        .etcd
        .etcdctl(&["get", "-w", "json", "--", key])
        .unwrap();
    let kv = serde_json::from_str::<Value>(&out).unwrap()["kvs"][0].clone();
    let value = base64_decode(kv["value"].as_str().expect("the record exists"));
    (value, kv["lease"].as_u64().unwrap_or(0))
}

fn base64_decode(text: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// Starts flanneld with `args` and a lease lifetime of `ttl` seconds on `hosts`, the first of
/// which has the reservation: it gets that subnet and says `said`; the others get neither
/// reserved subnet.
fn start_on_reservation(
    cluster: &Cluster,
    hosts: Vec<conformance::Host>,
    args: &[&str],
    ttl: u64,
    said: &str,
) -> Vec<Flanneld> {
    let mut nodes: Vec<Flanneld> = hosts
        .into_iter()
        .map(|h| start_flanneld(h, &cluster.etcd, args, Some(ttl)))
        .collect();
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    let log = nodes[0].log();
    assert_eq!(nodes[0].subnet().unwrap().to_string(), RESERVED, "{log}");
    assert!(log.contains(said), "{log}");
    for n in &nodes[1..] {
        assert!(![RESERVED, ABSENT].contains(&n.subnet().unwrap().to_string().as_str()));
    }
    nodes
}

#[test]
fn etcd_v2_keeps_a_reservation_and_never_renews_it() {
    let cluster = Cluster::v2(Some(&vxlan()));
    let hosts: Vec<_> = ["rv2a", "rv2b", "rv2c"]
        .into_iter()
        .map(|tag| cluster.host(Segment::A, tag))
        .collect();
    let reserved_value = record(&hosts[0].ip().to_string(), "02:00:00:00:77:01");
    cluster.etcdctl2(&["set", &key(RESERVED), &reserved_value]);
    let absent_value = record(ABSENT_IP, "02:00:00:00:78:01");
    cluster.etcdctl2(&["set", &key(ABSENT), &absent_value]);

    let nodes = start_on_reservation(
        &cluster,
        hosts,
        &["--ip-masq", "--etcd-api=v2"],
        4,
        "is a reservation (no TTL): it stays one and is not renewed",
    );

    // Every other node renews (each half TTL) while the reservation stays without a TTL.
    wait_renewals(&nodes[1], 3);
    let reserved = v2_node(&cluster, &key(RESERVED));
    assert!(reserved["ttl"].is_null(), "{reserved}");
    assert_ne!(
        reserved["value"], reserved_value,
        "reuse wrote our attributes"
    );
    let absent = v2_node(&cluster, &key(ABSENT));
    assert!(absent["ttl"].is_null(), "{absent}");
    assert_eq!(
        absent["value"], absent_value,
        "another node's reservation is untouched"
    );

    // An operator turns node 2's live lease into a reservation: it is left one.
    let key2 = key(&nodes[1].subnet().unwrap().to_string());
    let value2 = v2_node(&cluster, &key2)["value"]
        .as_str()
        .unwrap()
        .to_owned();
    cluster.etcdctl2(&["set", &key2, &value2]);
    assert!(
        eventually(Duration::from_secs(30), || nodes[1]
            .log()
            .contains("is now a reservation (no TTL)")),
        "{}",
        nodes[1].log()
    );
    let renewed_before = renewals(&nodes[1]);
    wait_renewals(&nodes[2], 3);
    assert_eq!(renewals(&nodes[1]), renewed_before, "{}", nodes[1].log());
    let node2 = v2_node(&cluster, &key2);
    assert!(node2["ttl"].is_null(), "{node2}");

    // The reserved node is routed to like any other.
    let driver = our_driver();
    pods_in_full_mesh(&driver, &nodes[..2], "rv2");
}

#[test]
fn etcd_v3_puts_a_reservation_on_a_lease_as_upstream_does() {
    let cluster = Cluster::new(&vxlan());
    let hosts: Vec<_> = ["rv3a", "rv3b"]
        .into_iter()
        .map(|tag| cluster.host(Segment::A, tag))
        .collect();
    let reserved_value = record(&hosts[0].ip().to_string(), "02:00:00:00:77:01");
    cluster.etcd.put(&key(RESERVED), &reserved_value).unwrap();
    let absent_value = record(ABSENT_IP, "02:00:00:00:78:01");
    cluster.etcd.put(&key(ABSENT), &absent_value).unwrap();

    // A long lifetime: the next scheduled renewal is minutes away, so a record back on a
    // lease within the deadline below was put there on purpose.
    let nodes = start_on_reservation(
        &cluster,
        hosts,
        &["--ip-masq"],
        600,
        "etcd v3 mode puts it on a renewed lease, as upstream flannel does",
    );
    let (value, lease) = v3_record(&cluster, &key(RESERVED));
    assert_ne!(lease, 0, "reuse put the reservation on an etcd lease");
    assert_ne!(value, reserved_value, "reuse wrote our attributes");
    assert_eq!(
        v3_record(&cluster, &key(ABSENT)),
        (absent_value, 0),
        "another node's reservation is untouched"
    );

    // An operator turns node 2's lease into a reservation: it is put back on a lease now.
    let key2 = key(&nodes[1].subnet().unwrap().to_string());
    let (value2, lease2) = v3_record(&cluster, &key2);
    assert_ne!(lease2, 0);
    cluster.etcd.put(&key2, &value2).unwrap();
    assert!(
        eventually(Duration::from_secs(60), || v3_record(&cluster, &key2).1
            != 0),
        "{}",
        nodes[1].log()
    );
    assert!(
        nodes[1]
            .log()
            .contains("etcd v3 mode puts it back on one now"),
        "{}",
        nodes[1].log()
    );

    let driver = our_driver();
    pods_in_full_mesh(&driver, &nodes, "rv3");
}

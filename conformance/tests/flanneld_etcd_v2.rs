//! A flannel <= v0.17 cluster's store, kept as it is: etcd with `--enable-v2`, the config set
//! through the v2 API. Our flanneld on three hosts (two with `--etcd-api=v2`, one left on
//! auto) leases from the v2 keyspace, renews there, routes to a lease an old flanneld wrote,
//! and pods ping across vxlan.

use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::Segment;
use serde_json::json;

const NETWORK: &str = "10.244.0.0/16";
/// Short enough that expiry is observable, long enough for renewals (every half TTL) to be
/// routine on a busy machine.
const TTL_SECS: u64 = 8;

/// The lease keys as `etcdctl ls` shows them in the v2 keyspace.
fn v2_lease_keys(cluster: &Cluster) -> Vec<String> {
    let mut keys: Vec<String> = cluster
        .etcdctl2(&["ls", &format!("{PREFIX}/subnets")])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

#[test]
fn v2_keyspace_mesh_with_renewal_old_leases_and_expiry() {
    let cluster = Cluster::v2(Some(
        &json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}}),
    ));
    let mut nodes: Vec<Flanneld> = [
        (Segment::A, "v2h1", Some("--etcd-api=v2")),
        (Segment::A, "v2h2", Some("-etcd-api=v2")),
        (Segment::B, "v2h3", None),
    ]
    .into_iter()
    .map(|(seg, tag, api)| {
        let mut args = vec!["--ip-masq"];
        args.extend(api);
        start_flanneld(cluster.host(seg, tag), &cluster.etcd, &args, Some(TTL_SECS))
    })
    .collect();
    for n in &mut nodes {
        let env = n.wait_ready(START).unwrap();
        assert!(env.contains("FLANNEL_NETWORK=10.244.0.0/16\n"), "{env}");
    }
    assert!(
        nodes[2].log().contains("using the etcd v2 API"),
        "auto mode says it chose v2:\n{}",
        nodes[2].log()
    );
    let subnets: Vec<_> = nodes.iter().map(|n| n.subnet().unwrap()).collect();
    let mut expected: Vec<String> = subnets
        .iter()
        .map(|s| format!("{PREFIX}/subnets/{}-{}", s.addr(), s.prefix_len()))
        .collect();
    expected.sort();
    assert_eq!(v2_lease_keys(&cluster), expected);
    assert!(
        cluster.lease_keys().is_empty(),
        "nothing is written to the v3 keyspace"
    );

    let driver = our_driver();
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(&driver, n, &format!("v2-ctr-{i}")))
        .collect();
    let all_pods: Vec<&Pod> = pods.iter().collect();
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());

    // A flannel v0.17 node joins: its lease as Go wrote it, picked up by ours.
    let old_key = format!("{PREFIX}/subnets/10.244.250.0-24");
    cluster.etcdctl2(&[
            "set",
            "--ttl",
            "3600",
            &old_key,
            r#"{"PublicIP":"10.99.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"02:17:00:00:00:01","VNI":1}}"#,
        ],
    );
    let old_net: ipnet::Ipv4Net = "10.244.250.0/24".parse().unwrap();
    assert!(
        eventually(Duration::from_secs(10), || nodes[0]
            .route_to(old_net)
            .contains("dev flannel.1")),
        "no route to the old node's subnet: {:?}",
        nodes[0].route_to(old_net)
    );
    cluster.etcdctl2(&["rm", &old_key]);
    assert!(eventually(Duration::from_secs(10), || nodes[0]
        .route_to(old_net)
        .is_empty()));

    // Several TTLs later every lease is still there: renewals happen in the v2 keyspace.
    std::thread::sleep(Duration::from_secs(TTL_SECS * 2));
    assert_eq!(v2_lease_keys(&cluster), expected);
    assert!(
        nodes[0].log().contains("Lease renewed"),
        "{}",
        nodes[0].log()
    );
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());

    // A node stops for good: its key's TTL runs out and the others drop its route.
    let (observer, rest) = nodes.split_at_mut(1);
    stop_until_expired(&observer[0], &mut rest[1], TTL_SECS);
    assert_eq!(v2_lease_keys(&cluster).len(), 2);
    assert!(pings(&pods[0].netns, &pods[1].ip));
}

#[test]
fn without_any_config_the_error_names_keys_apis_and_the_fix() {
    let cluster = Cluster::v2(None);
    let mut node = start_flanneld(cluster.host(Segment::A, "v2none"), &cluster.etcd, &[], None);
    let key = format!("{PREFIX}/config");
    let wanted = format!(
        "Looked for {key} through the etcd v3 API (not found) and for {key} through the etcd \
         v2 API (not found). Create it with: ETCDCTL_API=3 etcdctl put {key} '"
    );
    assert!(
        eventually(Duration::from_secs(10), || node.log().contains(&wanted)),
        "{}",
        node.log()
    );
    // It keeps retrying, and starts as soon as the old-style config appears.
    let config = json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}}).to_string();
    cluster.etcdctl2(&["set", &key, &config]);
    node.wait_ready(START).unwrap();
    assert_eq!(v2_lease_keys(&cluster).len(), 1);
}

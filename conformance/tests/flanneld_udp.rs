//! Our flanneld with the udp backend on the three-host underlay (two segments joined by a
//! router): pods made through libcni reach each other through flannel0 and UDP 8285, and a
//! restarted node keeps its subnet and its traffic.

use conformance::support::flanneld::*;
use conformance::Segment;
use serde_json::json;

const NETWORK: &str = "10.244.0.0/16";

#[test]
fn udp_mesh_across_segments_and_restart() {
    let cluster = Cluster::new(&json!({"Network": NETWORK, "Backend": {"Type": "udp"}}));
    let mut nodes = cluster.start_nodes(
        &[(Segment::A, "h1"), (Segment::A, "h2"), (Segment::B, "h3")],
        &["--ip-masq"],
        None,
    );
    Cluster::assert_leases(&nodes, NETWORK, 1472);
    // Leases carry no BackendType, as upstream's udp leases.
    let leases = cluster
        .etcd
        .etcdctl(&["get", "--prefix", &format!("{PREFIX}/subnets/")])
        .unwrap();
    assert!(
        leases.contains("\"PublicIP\"") && !leases.contains("BackendType"),
        "{leases}"
    );

    let h1 = nodes[0].host.netns();
    let link = String::from_utf8_lossy(&h1.exec(&["ip", "-d", "link", "show", "flannel0"]).stdout)
        .into_owned();
    assert!(link.contains("mtu 1472") && link.contains("tun"), "{link}");
    assert_eq!(nodes[0].route_to(NETWORK), "10.244.0.0/16 dev flannel0");

    let driver = our_driver();
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(&driver, n, &format!("ctr-{i}")))
        .collect();
    let all_pods: Vec<&Pod> = pods.iter().collect();
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());

    // A restart closes the TUN device (it vanishes with the process) and makes it again;
    // the subnet is kept and every pod is reachable again.
    restart_with_tun(&mut nodes[1], "flannel0");
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());
}

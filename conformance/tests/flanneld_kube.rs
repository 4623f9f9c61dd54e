//! Our flanneld in kube mode (`--kube-subnet-mgr`) on the test underlay, against the test
//! API server (conformance::kubeapi) listening on the router: each host is a Node with a
//! podCIDR; pods added through libcni with the kube-flannel conflist reach each other over
//! vxlan; the annotations flanneld writes have upstream's keys and value shapes; a restart
//! keeps the VTEP MAC; a deleted Node's routes go; a Node without a podCIDR is fatal; the
//! DaemonSet's privileges (NET_ADMIN and NET_RAW) are enough.

mod flanneld_support;

use std::time::Duration;

use conformance::Segment;
use flanneld_support::kube::{annotation, KubeCluster, KubeFlanneld, NETWORK, PREFIX};
use flanneld_support::{eventually, pings};

#[test]
fn kube_mode_vxlan_mesh_annotations_restart_and_node_deletion() {
    let cluster = KubeCluster::new();
    let h1 = cluster.node(Segment::A, "h1", Some("10.244.1.0/24"));
    let h2 = cluster.node(Segment::B, "h2", Some("10.244.2.0/24"));
    let (ip1, ip2) = (h1.ip(), h2.ip());
    let mut nodes = [
        KubeFlanneld::start(&cluster, h1, "h1"),
        KubeFlanneld::start(&cluster, h2, "h2"),
    ];
    for (n, subnet) in nodes.iter_mut().zip(["10.244.1.1/24", "10.244.2.1/24"]) {
        let env = n.wait_ready();
        assert_eq!(
            env,
            format!("FLANNEL_NETWORK={NETWORK}\nFLANNEL_SUBNET={subnet}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
        );
    }

    // The annotations: upstream's keys, and the value shapes peers (ours or upstream's) read.
    for (n, ip) in nodes.iter().zip([ip1, ip2]) {
        let node = cluster.api.node(&n.name).unwrap();
        assert_eq!(annotation(&node, "kube-subnet-manager"), "true");
        assert_eq!(annotation(&node, "backend-type"), "vxlan");
        assert_eq!(annotation(&node, "public-ip"), ip.to_string());
        assert_eq!(
            annotation(&node, "backend-data"),
            format!("{{\"VNI\":1,\"VtepMAC\":\"{}\"}}", n.vtep_mac())
        );
        // The condition patch follows readiness.
        let condition = |name: &str| {
            cluster.api.node(name).unwrap()["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "NetworkUnavailable")
                .cloned()
        };
        assert!(eventually(Duration::from_secs(10), || condition(&n.name).is_some()));
        let condition = condition(&n.name).unwrap();
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "FlannelIsUp");
    }
    let patches: Vec<_> = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(patches.iter().all(|p| p.path.ends_with("/status")
        && p.content_type == "application/strategic-merge-patch+json"));

    // Pods on both nodes reach each other through the vxlan routes.
    let pods = [nodes[0].add_pod("ctr-1"), nodes[1].add_pod("ctr-2")];
    assert!(pods[0].ip.starts_with("10.244.1.") && pods[1].ip.starts_with("10.244.2."));
    for (a, b) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        assert!(
            eventually(Duration::from_secs(20), || pings(&a.netns, &b.ip)),
            "{} cannot reach {}: {}",
            a.ip,
            b.ip,
            nodes[0].route_to("10.244.2.0/24")
        );
    }
    let route = nodes[0].route_to("10.244.2.0/24");
    assert!(
        route.contains("dev flannel.1") && route.contains("onlink"),
        "{route}"
    );

    // A restart that has to re-create the VTEP keeps its MAC (from the annotation), so the
    // peers' ARP and FDB entries stay valid.
    let mac = nodes[0].vtep_mac();
    assert!(nodes[0].stop().success());
    nodes[0]
        .host
        .netns()
        .exec_ok(&["ip", "link", "del", "flannel.1"])
        .unwrap();
    nodes[0].spawn();
    nodes[0].wait_ready();
    assert_eq!(nodes[0].vtep_mac(), mac);
    assert!(eventually(Duration::from_secs(20), || pings(
        &pods[0].netns,
        &pods[1].ip
    )));

    // Someone strips our annotations: flanneld notices through the watch and writes them
    // back (upstream only writes them at startup).
    cluster.api.update_node("h1", |n| {
        let ann = n["metadata"]["annotations"].as_object_mut().unwrap();
        ann.retain(|k, _| !k.starts_with(PREFIX));
    });
    assert!(
        eventually(Duration::from_secs(20), || {
            let node = cluster.api.node("h1").unwrap();
            node["metadata"]["annotations"][format!("{PREFIX}kube-subnet-manager")] == "true"
                && node["metadata"]["annotations"][format!("{PREFIX}backend-data")]
                    .as_str()
                    .is_some_and(|d| d.contains(&mac))
        }),
        "annotations not restored: {}",
        cluster.api.node("h1").unwrap()["metadata"]
    );

    // h2's Node is deleted: h1 drops its route.
    cluster.api.delete_node("h2");
    assert!(
        eventually(Duration::from_secs(20), || nodes[0]
            .route_to("10.244.2.0/24")
            .is_empty()),
        "route of the deleted node is still there: {}",
        nodes[0].route_to("10.244.2.0/24")
    );
    assert!(nodes[0].stop().success());
}

#[test]
fn a_node_without_a_pod_cidr_is_fatal_like_upstream() {
    let cluster = KubeCluster::new();
    let host = cluster.node(Segment::A, "bare", None);
    let mut f = KubeFlanneld::start(&cluster, host, "bare");
    let status = f.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{}", f.log());
    assert!(
        f.log().contains(
            "Error registering network: failed to acquire lease: node \"bare\" pod cidr not assigned"
        ),
        "{}",
        f.log()
    );
    assert!(!f.path("subnet.env").exists());
}

/// The capabilities a process runs with (`CapEff` in /proc/<pid>/status).
fn effective_caps(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// deploy/kube-flannel.yml runs flanneld as root with NET_ADMIN and NET_RAW only (upstream's
/// privileges). Here it runs so, through `setpriv` with the bounding set cut to those two:
/// the vxlan device, routes, neighbours, FDB entries, masquerade rules and subnet.env must
/// all work, and pods on two nodes reach each other.
#[test]
fn kernel_backends_need_only_net_admin_and_net_raw() {
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_NET_RAW: u64 = 1 << 13;
    let cluster = KubeCluster::new();
    let wrapper = [
        "setpriv",
        "--bounding-set=-all,+net_admin,+net_raw",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ];
    let h1 = cluster.node(Segment::A, "c1", Some("10.244.1.0/24"));
    let h2 = cluster.node(Segment::B, "c2", Some("10.244.2.0/24"));
    let mut nodes = [
        KubeFlanneld::start_through(&cluster, h1, "c1", &wrapper),
        KubeFlanneld::start_through(&cluster, h2, "c2", &wrapper),
    ];
    for n in &mut nodes {
        n.wait_ready();
        // `ip netns exec` execs setpriv, which execs flanneld: the child's pid is flanneld's.
        let pid = n.child.as_ref().unwrap().id();
        assert_eq!(
            effective_caps(pid),
            CAP_NET_ADMIN | CAP_NET_RAW,
            "{}",
            n.log()
        );
    }
    let pods = [nodes[0].add_pod("cap-1"), nodes[1].add_pod("cap-2")];
    for (a, b) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        assert!(
            eventually(Duration::from_secs(20), || pings(&a.netns, &b.ip)),
            "{} cannot reach {}",
            a.ip,
            b.ip
        );
    }
    let rules = nodes[0]
        .host
        .netns()
        .exec_ok(&["iptables-save", "-t", "nat"])
        .unwrap();
    assert!(rules.contains("-A FLANNEL-POSTRTG"), "{rules}");
    // Nothing failed for want of a privilege.
    for n in &nodes {
        assert!(
            !n.log()
                .lines()
                .any(|l| l.starts_with('E') || l.starts_with('W')),
            "{}",
            n.log()
        );
    }
    for n in &mut nodes {
        assert!(n.stop().success());
    }
}

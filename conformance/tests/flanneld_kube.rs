//! Our flanneld in kube mode (`--kube-subnet-mgr`) on the test underlay, against the test
//! API server (conformance::kubeapi) listening on the router: each host is a Node with a
//! podCIDR; pods added through libcni with the kube-flannel conflist reach each other over
//! vxlan; the annotations flanneld writes have upstream's keys and value shapes; a restart
//! keeps the VTEP MAC; a deleted Node's routes go; a Node without a podCIDR is fatal; the
//! DaemonSet's privileges (NET_ADMIN and NET_RAW) are enough; the wireguard backend writes
//! upstream's annotations with its key file's public key and pods reach each other.

use std::time::Duration;

use conformance::kubeapi::fixture_node;
use conformance::support::flanneld::kube::*;
use conformance::support::flanneld::Pod;
use conformance::support::flanneld::START;
use conformance::support::flanneld::{eventually, pings};
use conformance::Segment;
use serde_json::{json, Value};

#[test]
fn kube_mode_vxlan_mesh_annotations_restart_and_node_deletion() {
    let cluster = KubeCluster::new();
    let h1 = cluster.node(Segment::A, "h1", Some("10.244.1.0/24"));
    let h2 = cluster.node(Segment::B, "h2", Some("10.244.2.0/24"));
    let (ip1, ip2) = (h1.ip(), h2.ip());
    let mut nodes = [
        start_kube(&cluster, h1, "h1"),
        start_kube(&cluster, h2, "h2"),
    ];
    for (n, subnet) in nodes.iter_mut().zip(["10.244.1.1/24", "10.244.2.1/24"]) {
        let env = n.wait_ready(START).unwrap();
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
            format!("{{\"VNI\":1,\"VtepMAC\":\"{}\"}}", vtep_mac(n))
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
    let pods = [
        add_kube_pod(&nodes[0], "ctr-1"),
        add_kube_pod(&nodes[1], "ctr-2"),
    ];
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
    let mac = vtep_mac(&nodes[0]);
    assert!(nodes[0].stop().unwrap().success());
    nodes[0]
        .host
        .netns()
        .exec_ok(&["ip", "link", "del", "flannel.1"])
        .unwrap();
    nodes[0].spawn().unwrap();
    nodes[0].wait_ready(START).unwrap();
    assert_eq!(vtep_mac(&nodes[0]), mac);
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
    assert!(nodes[0].stop().unwrap().success());
}

#[test]
fn a_node_without_a_pod_cidr_is_fatal_like_upstream() {
    let cluster = KubeCluster::new();
    let host = cluster.node(Segment::A, "bare", None);
    let mut f = start_kube(&cluster, host, "bare");
    let status = f.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.expect("flanneld exits").code(),
        Some(1),
        "{}",
        f.log()
    );
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
        start_kube_through(&cluster, h1, "c1", &wrapper),
        start_kube_through(&cluster, h2, "c2", &wrapper),
    ];
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
        // `ip netns exec` execs setpriv, which execs flanneld: the child's pid is flanneld's.
        let pid = n.pid().unwrap();
        assert_eq!(
            effective_caps(pid),
            CAP_NET_ADMIN | CAP_NET_RAW,
            "{}",
            n.log()
        );
    }
    let pods = [
        add_kube_pod(&nodes[0], "cap-1"),
        add_kube_pod(&nodes[1], "cap-2"),
    ];
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
        assert!(n.stop().unwrap().success());
    }
}

/// A Node annotated as a flannel node on `ip` would annotate it, without a flanneld here.
fn flannel_node(name: &str, pod_cidr: &str, ip: &str, mac: &str, created: &str) -> Value {
    let mut node = fixture_node(name, Some(pod_cidr), ip.parse().unwrap());
    node["metadata"]["creationTimestamp"] = json!(created);
    let ann = &mut node["metadata"]["annotations"];
    ann[format!("{PREFIX}backend-data")] = json!(format!(r#"{{"VNI":1,"VtepMAC":"{mac}"}}"#));
    ann[format!("{PREFIX}backend-type")] = json!("vxlan");
    ann[format!("{PREFIX}kube-subnet-manager")] = json!("true");
    ann[format!("{PREFIX}public-ip")] = json!(ip);
    node
}

fn neigh_mac(f: &KubeFlanneld, ip: &str) -> String {
    let out = f
        .host
        .netns()
        .exec(&["ip", "neigh", "show", ip, "dev", "flannel.1"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pod CIDRs are the controller manager's to keep unique; hand-assigned ones can repeat. Then
/// one Node stands for them on every flannel node: the node itself where it is one of them,
/// else the oldest; each node logs it once, and pods keep reaching each other.
#[test]
fn nodes_sharing_a_pod_cidr_are_routed_to_the_oldest() {
    let cluster = KubeCluster::new();
    let ha = cluster.node(Segment::A, "ka", Some("10.244.1.0/24"));
    let hb = cluster.node(Segment::A, "kb", Some("10.244.2.0/24"));
    let ghost_mac = "02:00:00:00:0a:01";
    cluster.api.put_node(flannel_node(
        "kghost",
        "10.244.1.0/24",
        "192.168.1.200",
        ghost_mac,
        "2026-02-01T00:00:00Z",
    ));
    let mut a = start_kube(&cluster, ha, "ka");
    let mut b = start_kube(&cluster, hb, "kb");
    a.wait_ready(START).unwrap();
    b.wait_ready(START).unwrap();
    let dup = "pod CIDRs 10.244.1.0-24 are assigned to Nodes ka, kghost";
    assert!(
        eventually(Duration::from_secs(30), || a
            .log()
            .contains(&format!("{dup}: this node keeps it (ka)"))),
        "{}",
        a.log()
    );
    assert!(
        eventually(Duration::from_secs(30), || b
            .log()
            .contains(&format!("{dup}: the oldest Node stands for it (ka)"))),
        "{}",
        b.log()
    );
    let a_mac = vtep_mac(&a);
    assert!(
        eventually(Duration::from_secs(30), || neigh_mac(&b, "10.244.1.0")
            .contains(&a_mac)),
        "kb routes 10.244.1.0/24 to ka: {}",
        neigh_mac(&b, "10.244.1.0")
    );
    let pa = add_kube_pod(&a, "kd-a");
    let pb = add_kube_pod(&b, "kd-b");
    assert!(eventually(Duration::from_secs(30), || pings(
        &pa.netns, &pb.ip
    )));
    assert!(eventually(Duration::from_secs(30), || pings(
        &pb.netns, &pa.ip
    )));

    // The other Node turns out older: kb routes there now, ka still keeps its own.
    cluster.api.update_node("kghost", |n| {
        n["metadata"]["creationTimestamp"] = json!("2025-06-01T00:00:00Z");
    });
    assert!(
        eventually(Duration::from_secs(30), || b.log().contains(&format!(
            "{dup}: the oldest Node stands for it (kghost)"
        ))),
        "{}",
        b.log()
    );
    assert!(
        eventually(Duration::from_secs(30), || neigh_mac(&b, "10.244.1.0")
            .contains(ghost_mac)),
        "{}",
        neigh_mac(&b, "10.244.1.0")
    );
    assert!(!a.log().contains("our lease record"), "{}", a.log());
    let own = a.route_to("10.244.1.0/24");
    assert!(
        !own.contains("flannel.1"),
        "ka never routes its own subnet away: {own}"
    );
    assert!(a.stop().unwrap().success());
    assert!(b.stop().unwrap().success());
}

/// A node's address changes (DHCP renumbering): kube-mode flanneld follows it, patches its
/// `public-ip` annotation, and the peers route to the new address; nobody restarts.
#[test]
fn kube_mode_follows_a_renumbered_node() {
    let cluster = KubeCluster::new();
    let h1 = cluster.node(Segment::A, "kr1", Some("10.244.1.0/24"));
    let h2 = cluster.node(Segment::A, "kr2", Some("10.244.2.0/24"));
    let old = format!("{}/24", h1.ip());
    let mut a = start_kube(&cluster, h1, "kr1");
    let mut b = start_kube(&cluster, h2, "kr2");
    a.wait_ready(START).unwrap();
    b.wait_ready(START).unwrap();
    let pa = add_kube_pod(&a, "kr-a");
    let pb = add_kube_pod(&b, "kr-b");
    assert!(eventually(Duration::from_secs(30), || pings(
        &pa.netns, &pb.ip
    )));

    let ns = a.host.netns();
    ns.exec_ok(&["ip", "addr", "del", &old, "dev", "eth0"])
        .unwrap();
    ns.exec_ok(&["ip", "addr", "add", "192.168.1.77/24", "dev", "eth0"])
        .unwrap();
    assert!(
        eventually(Duration::from_secs(60), || {
            let node = cluster.api.node("kr1").unwrap();
            annotation(&node, "public-ip") == "192.168.1.77"
        }),
        "{}",
        a.log()
    );
    assert!(
        a.log()
            .contains("Node annotations republished with PublicIP 192.168.1.77"),
        "{}",
        a.log()
    );
    assert!(eventually(Duration::from_secs(60), || pings(
        &pa.netns, &pb.ip
    )));
    assert!(eventually(Duration::from_secs(60), || pings(
        &pb.netns, &pa.ip
    )));
    for f in [&a, &b] {
        assert_eq!(
            f.log().matches("Wrote subnet file").count(),
            1,
            "{}",
            f.log()
        );
    }
    assert!(a.stop().unwrap().success());
    assert!(b.stop().unwrap().success());
}

#[test]
fn kube_mode_wireguard_mesh_with_upstream_annotations() {
    let cluster = KubeCluster::new();
    let net_conf = json!({"Network": NETWORK, "Backend": {"Type": "wireguard"}});
    let mut nodes: Vec<KubeFlanneld> = [
        (Segment::A, "wgk1", "10.244.31.0/24"),
        (Segment::B, "wgk2", "10.244.32.0/24"),
    ]
    .into_iter()
    .map(|(seg, name, cidr)| {
        let host = cluster.node(seg, name, Some(cidr));
        start_kube_with(
            &cluster,
            host,
            name,
            &[],
            &net_conf,
            &["--wireguard-impl=userspace"],
        )
    })
    .collect();
    for n in &mut nodes {
        let env = n.wait_ready(START).unwrap();
        assert!(env.contains("FLANNEL_MTU=1420\n"), "{env}");
    }
    for n in &nodes {
        let node = cluster.api.node(&n.name).expect("node object");
        assert_eq!(annotation(&node, "backend-type"), "wireguard");
        let data: Value = serde_json::from_str(&annotation(&node, "backend-data")).unwrap();
        let out = std::process::Command::new("wg")
            .arg("pubkey")
            .stdin(std::fs::File::open(n.path("wgkey")).unwrap())
            .output()
            .unwrap();
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(data, json!({"PublicKey": key, "Port": 51820}));
    }
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_kube_pod(n, &format!("wgk-{i}")))
        .collect();
    for (a, b) in [(0, 1), (1, 0)] {
        assert!(
            eventually(Duration::from_secs(30), || pings(
                &pods[a].netns,
                &pods[b].ip
            )),
            "{} -> {}",
            pods[a].ip,
            pods[b].ip
        );
    }
}

//! Our flanneld on an underlay of three hosts (two segments), etcd on the router, pods made
//! through libcni with the kube-flannel conflist and our plugins: every pod reaches every
//! other pod with vxlan, vxlan + DirectRouting and host-gw; a restart keeps the subnet; a
//! stopped node's lease expires and its routes disappear elsewhere; `DisableTxChecksumOffload`
//! turns the VTEP's checksum offload off as `ethtool -K` would, and keeps it off.

use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::Segment;
use serde_json::json;

const NETWORK: &str = "10.244.0.0/16";
/// Short enough that expiry is observable in a test, long enough for renewals (every half
/// TTL) to be routine on a busy machine.
const TTL_SECS: u64 = 8;

fn vxlan(direct_routing: bool) -> serde_json::Value {
    json!({"Network": NETWORK, "Backend": {"Type": "vxlan", "DirectRouting": direct_routing}})
}

#[test]
fn vxlan_mesh_restart_and_lease_expiry() {
    let cluster = Cluster::new(&vxlan(false));
    let mut nodes: Vec<Flanneld> = [(Segment::A, "h1"), (Segment::A, "h2"), (Segment::B, "h3")]
        .into_iter()
        .map(|(seg, tag)| {
            let args: &[&str] = if tag == "h1" {
                &["--ip-masq", "--healthz-port=8471"]
            } else {
                &["--ip-masq"]
            };
            start_flanneld(cluster.host(seg, tag), &cluster.etcd, args, Some(TTL_SECS))
        })
        .collect();
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    let subnets = Cluster::assert_leases(&nodes, NETWORK, 1450);
    assert_eq!(cluster.lease_keys().len(), 3);

    let driver = our_driver();
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(&driver, n, &format!("ctr-{i}")))
        .collect();
    for (pod, subnet) in pods.iter().zip(&subnets) {
        assert!(
            subnet.contains(&pod.ip.parse::<std::net::Ipv4Addr>().unwrap()),
            "{} not in {subnet}",
            pod.ip
        );
    }
    let all_pods: Vec<&Pod> = pods.iter().collect();
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());

    // Rules and health on h1.
    let nat = nodes[0]
        .host
        .netns()
        .exec_ok(&["iptables-save", "-t", "nat"])
        .unwrap();
    assert!(nat.contains(&format!("-A FLANNEL-POSTRTG -s {} -d {NETWORK} -m comment --comment \"flanneld masq\" -j RETURN", subnets[0])), "{nat}");
    let filter = nodes[0]
        .host
        .netns()
        .exec_ok(&["iptables-save", "-t", "filter"])
        .unwrap();
    assert!(
        filter.contains("-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD"),
        "{filter}"
    );
    let script =
        "exec 3<>/dev/tcp/127.0.0.1/8471; printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3";
    let ready = nodes[0].host.netns().exec(&["bash", "-c", script]);
    let ready = String::from_utf8_lossy(&ready.stdout).into_owned();
    // An HTTP/1.0 request is answered in HTTP/1.0, as upstream's Go net/http server does.
    assert!(
        ready.starts_with("HTTP/1.0 200 OK") && ready.ends_with("flanneld is ready"),
        "{ready}"
    );

    // Someone flushes our masquerade chain: the resync puts it back.
    nodes[0]
        .host
        .netns()
        .exec_ok(&["iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"])
        .unwrap();
    assert!(eventually(Duration::from_secs(15), || {
        let nat = nodes[0]
            .host
            .netns()
            .exec_ok(&["iptables-save", "-t", "nat"])
            .unwrap();
        nat.lines()
            .filter(|l| l.starts_with("-A FLANNEL-POSTRTG"))
            .count()
            == 6
    }));

    // A restart keeps the subnet, the routes keep working, and SIGTERM exits 0.
    assert!(
        nodes[1].stop().unwrap().success(),
        "flanneld exits 0 on SIGTERM"
    );
    nodes[1].restart().unwrap();
    nodes[1].wait_ready(START).unwrap();
    assert_eq!(nodes[1].subnet().unwrap(), subnets[1]);
    assert!(nodes[1].log().contains("reusing"), "{}", nodes[1].log());
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());

    // h3 stops for good: its lease expires, and h1 drops its route (and ARP/FDB entries).
    let (observer, rest) = nodes.split_at_mut(1);
    stop_until_expired(&observer[0], &mut rest[1], TTL_SECS);
    assert_eq!(cluster.lease_keys().len(), 2);
    // The others keep renewing through all this.
    assert!(pings(&pods[0].netns, &pods[1].ip));
}

#[test]
fn vxlan_direct_routing_routes_same_segment_peers_directly() {
    let cluster = Cluster::new(&vxlan(true));
    let nodes = cluster.start_nodes(
        &[(Segment::A, "h1"), (Segment::A, "h2"), (Segment::B, "h3")],
        &[],
        None,
    );
    let driver = our_driver();
    let _pods = pods_in_full_mesh(&driver, &nodes, "ctr");

    let (h1, h2, h3) = (&nodes[0], &nodes[1], &nodes[2]);
    // Without DisableTxChecksumOffload the kernel's default stays, as upstream.
    assert_eq!(tx_checksum(h1).as_deref(), Some("on"));
    let direct = h1.route_to(h2.subnet().unwrap());
    assert!(
        direct.contains(&format!("via {} dev eth0", h2.host.ip())),
        "same segment goes direct: {direct}"
    );
    let tunnel = h1.route_to(h3.subnet().unwrap());
    assert!(
        tunnel.contains("dev flannel.1") && tunnel.contains("onlink"),
        "other segment goes through vxlan: {tunnel}"
    );
}

#[test]
fn host_gw_mesh_on_one_segment() {
    let cluster = Cluster::new(&json!({"Network": NETWORK, "Backend": {"Type": "host-gw"}}));
    let mut nodes: Vec<Flanneld> = ["h1", "h2"]
        .into_iter()
        .map(|tag| start_flanneld(cluster.host(Segment::A, tag), &cluster.etcd, &[], None))
        .collect();
    for n in &mut nodes {
        let env = n.wait_ready(START).unwrap();
        assert!(
            env.contains("FLANNEL_MTU=1500\n"),
            "host-gw keeps the interface MTU: {env}"
        );
    }
    let driver = our_driver();
    let _pods = pods_in_full_mesh(&driver, &nodes, "ctr");
    let route = nodes[0].route_to(nodes[1].subnet().unwrap());
    assert!(
        route.contains(&format!("via {} dev eth0", nodes[1].host.ip())),
        "{route}"
    );

    // A route deleted by hand comes back with the periodic reconcile.
    nodes[0]
        .host
        .netns()
        .exec_ok(&[
            "ip",
            "route",
            "del",
            &nodes[1].subnet().unwrap().to_string(),
        ])
        .unwrap();
    assert!(
        eventually(Duration::from_secs(25), || !nodes[0]
            .route_to(nodes[1].subnet().unwrap())
            .is_empty()),
        "deleted route not restored"
    );
}

/// `tx-checksum-ip-generic` of a host's flannel.1 as `ethtool -k` reports it; `None` while
/// the device does not exist.
fn tx_checksum(node: &Flanneld) -> Option<String> {
    let out = node.host.netns().exec(&["ethtool", "-k", "flannel.1"]);
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("tx-checksum-ip-generic: "))
        .map(str::to_owned)
}

/// Upstream's troubleshooting guide works around bad VXLAN UDP checksums (flannel#1279,
/// #2152) with a udev rule running `ethtool -K flannel.1 tx-checksum-ip-generic off`.
/// `DisableTxChecksumOffload` has flanneld do it over SIOCETHTOOL whenever it creates or
/// adopts the device, including after the device was deleted under it.
#[test]
fn vxlan_disable_tx_checksum_offload_holds_across_device_recreation() {
    let cluster = Cluster::new(&json!({
        "Network": NETWORK,
        "Backend": {"Type": "vxlan", "DisableTxChecksumOffload": true}
    }));
    let nodes = cluster.start_nodes(&[(Segment::A, "ck1"), (Segment::B, "ck2")], &[], None);
    for n in &nodes {
        assert_eq!(tx_checksum(n).as_deref(), Some("off"), "{}", n.log());
        assert!(n
            .log()
            .contains("turned tx-checksum-ip-generic off on \"flannel.1\""));
    }
    let driver = our_driver();
    let pods = pods_in_full_mesh(&driver, &nodes, "ck");

    nodes[0]
        .host
        .netns()
        .exec_ok(&["ip", "link", "del", "flannel.1"])
        .unwrap();
    // Re-created by the next reconcile (every 10 s), and the offload turned off with it.
    assert!(
        eventually(Duration::from_secs(30), || {
            tx_checksum(&nodes[0]).as_deref() == Some("off")
        }),
        "flannel.1 not re-created with the offload off ({:?}):\n{}",
        tx_checksum(&nodes[0]),
        nodes[0].log()
    );
    assert_full_mesh(
        &pods.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
    );
}

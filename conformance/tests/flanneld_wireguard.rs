//! Our flanneld with the wireguard backend on the three-host underlay (two segments joined by
//! a router), etcd v3 and v2, pods made through libcni with the kube-flannel conflist: the
//! leases as upstream writes them, pods in full mesh through the encrypted tunnel, a
//! restarted node keeping its key, `/status`, `flannelctl` and `/metrics`, and bad config
//! or a bad key file refused with exit 1 naming the problem. This kernel has no WireGuard
//! module, so the userspace implementation runs (`--wireguard-impl=userspace`; `kernel` is
//! refused with a clear message, which is checked too).

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::{cni::our_bin_dir, Etcd, EtcdOptions, Segment, Underlay};
use serde_json::{json, Value};

const NETWORK: &str = "10.244.0.0/16";
const PSK: &str = "7rKnOpYbRpWlYHdRODo8bZjrSz53RrKY3W1Wj4lXq+Q=";
const HEALTHZ: &str = "127.0.0.1:8081";

fn wg_args() -> Vec<&'static str> {
    vec![
        "--ip-masq",
        "--wireguard-impl=userspace",
        "--healthz-ip=127.0.0.1",
        "--healthz-port=8081",
    ]
}

/// The key file goes to the node's own directory (the harness's `WIREGUARD_KEY_FILE`).
fn start(cluster: &Cluster, seg: Segment, tag: &str, args: &[&str]) -> Flanneld {
    start_flanneld(cluster.host(seg, tag), &cluster.etcd, args, None)
}

/// `wg pubkey` of this node's key file: what its lease must carry.
fn public_key(node: &Flanneld) -> String {
    let out = Command::new("wg")
        .arg("pubkey")
        .stdin(std::fs::File::open(node.dir().join("wgkey")).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn lease_value(cluster: &Cluster, subnet: ipnet::Ipv4Net) -> Value {
    let key = format!(
        "{PREFIX}/subnets/{}-{}",
        subnet.network(),
        subnet.prefix_len()
    );
    let text = cluster.etcd.get(&key).unwrap().expect("lease record");
    serde_json::from_str(&text).unwrap()
}

fn flannelctl(node: &Flanneld, args: &[&str]) -> (i32, String) {
    let out = node
        .host
        .netns()
        .command(our_bin_dir().join("flannelctl"))
        .args(args)
        .args(["--addr", HEALTHZ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn metrics(node: &Flanneld) -> String {
    let out = node.host.netns().exec(&[
        "bash",
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/8081; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn wireguard_mesh_with_psk_restart_keeps_the_key_and_status_shows_peers() {
    let cluster = Cluster::new(&json!({
        "Network": NETWORK,
        "Backend": {"Type": "wireguard", "PSK": PSK, "PersistentKeepaliveInterval": 25}
    }));
    let args = wg_args();
    let mut nodes = vec![
        start(&cluster, Segment::A, "h1", &args),
        start(&cluster, Segment::A, "h2", &args),
        start(&cluster, Segment::B, "h3", &args),
    ];
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    let subnets = Cluster::assert_leases(&nodes, NETWORK, 1420);

    // Leases exactly as upstream writes them.
    for (n, s) in nodes.iter().zip(&subnets) {
        let v = lease_value(&cluster, *s);
        assert_eq!(
            v,
            json!({
                "PublicIP": n.host.ip().to_string(),
                "PublicIPv6": null,
                "BackendType": "wireguard",
                "BackendData": {"PublicKey": public_key(n), "Port": 51820}
            })
        );
    }
    let h1 = nodes[0].host.netns();
    let link =
        String::from_utf8_lossy(&h1.exec(&["ip", "-d", "link", "show", "flannel-wg"]).stdout)
            .into_owned();
    assert!(link.contains("mtu 1420") && link.contains("tun"), "{link}");
    assert_eq!(
        nodes[0].route_to(NETWORK),
        "10.244.0.0/16 dev flannel-wg scope link"
    );

    let driver = our_driver();
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(&driver, n, &format!("wg-{i}")))
        .collect();
    let all_pods: Vec<&Pod> = pods.iter().collect();
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());

    // /status through flannelctl: the implementation, both peers with handshakes and bytes.
    let (code, text) = flannelctl(&nodes[0], &["status", "-o", "json"]);
    assert_eq!(code, 0, "{text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    let wg = &status["wireguard"];
    assert_eq!(wg["implementation"], "userspace", "{status}");
    let peers = wg["devices"][0]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{status}");
    for p in peers {
        assert!(p["handshakes"].as_u64().unwrap() >= 1, "{p}");
        assert!(p["rx_bytes"].as_u64().unwrap() > 0, "{p}");
        assert!(p["last_handshake"].is_string(), "{p}");
    }
    let routes: Vec<bool> = status["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["route"] == true)
        .collect();
    assert_eq!(routes, [true, true], "{status}");
    let (_, table) = flannelctl(&nodes[0], &["status"]);
    assert!(table.contains("WireGuard (userspace):"), "{table}");
    assert!(table.contains("flannel-wg port 51820"), "{table}");

    let m = metrics(&nodes[0]);
    for want in [
        "flannel_wireguard_peers{device=\"flannel-wg\",implementation=\"userspace\"} 2",
        "flannel_wireguard_handshakes_total{device=\"flannel-wg\",public_key=",
        "flannel_wireguard_last_handshake_timestamp_seconds{",
        "flannel_wireguard_rx_bytes_total{",
        "flannel_wireguard_tx_bytes_total{",
        "flannel_wireguard_dropped_packets_total{reason=\"replayed\"} 0",
        "flannel_wireguard_skipped_leases_total 0",
    ] {
        assert!(m.contains(want), "missing {want:?} in:\n{m}");
    }

    // A restart: the TUN device goes with the process; the key file is reused, so the lease
    // carries the same public key and every peer still trusts the node.
    let key_before = public_key(&nodes[1]);
    let file_before = std::fs::read(nodes[1].dir().join("wgkey")).unwrap();
    restart_with_tun(&mut nodes[1], "flannel-wg");
    assert_eq!(
        std::fs::read(nodes[1].dir().join("wgkey")).unwrap(),
        file_before
    );
    assert_eq!(
        lease_value(&cluster, subnets[1])["BackendData"]["PublicKey"],
        key_before
    );
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());
}

/// Starts one flanneld on a fresh host with `config` and waits for it to give up.
fn refused(
    cluster: &Cluster,
    tag: &str,
    config: Value,
    args: &[&str],
    prepare: impl FnOnce(&std::path::Path),
) -> (String, Flanneld) {
    cluster
        .etcd
        .put(&format!("{PREFIX}/config"), &config.to_string())
        .unwrap();
    let node = Flanneld::etcd(cluster.host(Segment::A, tag), &cluster.etcd.endpoint())
        .unwrap()
        .args(args);
    prepare(node.dir());
    let mut node = node.start().unwrap();
    let status = node
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("flanneld kept running with {config}:\n{}", node.log()));
    assert_eq!(status.code(), Some(1), "{config}:\n{}", node.log());
    (node.log(), node)
}

#[test]
fn bad_config_key_file_or_kernel_request_exit_1_naming_the_problem() {
    let cluster = Cluster::new(&json!({"Network": NETWORK, "Backend": {"Type": "wireguard"}}));
    let args = wg_args();
    for (i, (backend, want)) in [
        (
            json!({"Type": "wireguard", "Mode": "both"}),
            "Mode: no valid Mode configured: \"both\"",
        ),
        (
            json!({"Type": "wireguard", "ListenPort": 70000}),
            "ListenPort: 70000 is out of range (1-65535)",
        ),
        (
            json!({"Type": "wireguard", "ListenPortV6": 0}),
            "ListenPortV6: 0 is out of range",
        ),
        (
            json!({"Type": "wireguard", "PSK": "not-a-key"}),
            "PSK: could not parse psk",
        ),
        (
            json!({"Type": "wireguard", "MTU": 100}),
            "MTU: 100 is out of range",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let config = json!({"Network": NETWORK, "Backend": backend});
        let (log, node) = refused(&cluster, &format!("c{i}"), config, &args, |_| {});
        assert!(log.contains(want), "want {want:?} in:\n{log}");
        assert!(
            !node.dir().join("wgkey").exists(),
            "no key file is made for a config that cannot run"
        );
    }

    // A corrupt key file is an error and stays as it is.
    let good = json!({"Network": NETWORK, "Backend": {"Type": "wireguard"}});
    let (log, node) = refused(&cluster, "k1", good.clone(), &args, |dir| {
        std::fs::write(dir.join("wgkey"), "garbage").unwrap();
    });
    assert!(
        log.contains("could not parse private key from file"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(node.dir().join("wgkey")).unwrap(),
        "garbage"
    );

    // This kernel has no WireGuard: asking for it is refused, saying what to do.
    if Command::new("modprobe")
        .arg("wireguard")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    let kernel_args = ["--wireguard-impl=kernel"];
    let (log, node) = refused(&cluster, "k2", good, &kernel_args, |_| {});
    assert!(log.contains("the kernel has no WireGuard"), "{log}");
    assert!(log.contains("--wireguard-impl=userspace or auto"), "{log}");
    let left = node
        .host
        .netns()
        .exec(&["ip", "link", "show", "flannel-wg"]);
    assert!(!left.status.success(), "nothing left behind");
}

/// `ETCDCTL_API=2 etcdctl` run on the router, where etcd listens.
#[test]
fn wireguard_over_the_etcd_v2_keyspace() {
    let underlay = Underlay::new().unwrap();
    let ip = IpAddr::V4(Segment::A.router_ip());
    let etcd = Etcd::start(EtcdOptions::in_netns(underlay.router(), ip).enable_v2(true)).unwrap();
    let cluster = Cluster { underlay, etcd };
    let config = json!({"Network": NETWORK, "Backend": {"Type": "wireguard"}}).to_string();
    cluster.etcdctl2(&["set", &format!("{PREFIX}/config"), &config]);
    let mut args = wg_args();
    args.push("--etcd-api=v2");
    let mut nodes = vec![
        start(&cluster, Segment::A, "v1", &args),
        start(&cluster, Segment::B, "v2", &args),
    ];
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    let subnets = Cluster::assert_leases(&nodes, NETWORK, 1420);
    for (n, s) in nodes.iter().zip(&subnets) {
        let text = cluster.etcdctl2(&[
            "get",
            &format!("{PREFIX}/subnets/{}-{}", s.network(), s.prefix_len()),
        ]);
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["BackendType"], "wireguard");
        assert_eq!(v["BackendData"]["PublicKey"], public_key(n));
    }
    let driver = our_driver();
    pods_in_full_mesh(&driver, &nodes, "wg2");
}

fn routes_into_network(node: &Flanneld) -> Vec<String> {
    let out = node
        .host
        .netns()
        .exec(&["ip", "-4", "route", "show", "root", NETWORK]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn has_link(node: &Flanneld, name: &str) -> bool {
    node.host
        .netns()
        .exec(&["ip", "link", "show", name])
        .status
        .success()
}

#[test]
fn switching_vxlan_to_wireguard_and_back_leaves_nothing_of_the_other() {
    let vxlan = json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}});
    let wireguard = json!({"Network": NETWORK, "Backend": {"Type": "wireguard"}});
    let cluster = Cluster::new(&vxlan);
    let args = wg_args();
    let mut nodes = vec![
        start(&cluster, Segment::A, "s1", &args),
        start(&cluster, Segment::B, "s2", &args),
    ];
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    let subnets = Cluster::assert_leases(&nodes, NETWORK, 1450);
    let driver = our_driver();
    let pods = pods_in_full_mesh(&driver, &nodes, "sw");
    let all_pods: Vec<&Pod> = pods.iter().collect();
    let neigh = |n: &Flanneld| {
        String::from_utf8_lossy(
            &n.host
                .netns()
                .exec(&["ip", "neigh", "show", "dev", "flannel.1"])
                .stdout,
        )
        .into_owned()
    };
    assert!(
        neigh(&nodes[0]).contains("PERMANENT"),
        "vxlan has its ARP entries"
    );

    let switch = |nodes: &mut Vec<Flanneld>, config: &Value| {
        for n in nodes.iter_mut() {
            assert!(n.stop().unwrap().success());
        }
        cluster
            .etcd
            .put(&format!("{PREFIX}/config"), &config.to_string())
            .unwrap();
        for n in nodes.iter_mut() {
            n.restart().unwrap();
        }
        for n in nodes.iter_mut() {
            n.wait_ready(START).unwrap();
        }
    };

    switch(&mut nodes, &wireguard);
    for (n, s) in nodes.iter().zip(&subnets) {
        assert_eq!(
            n.subnet().unwrap(),
            *s,
            "the same subnet, so pods keep their addresses"
        );
        assert!(!has_link(n, "flannel.1"), "vxlan device left");
        let routes = routes_into_network(n);
        assert!(
            routes
                .iter()
                .all(|r| !r.contains("flannel.1") && !r.contains(" via ")),
            "vxlan routes left: {routes:?}"
        );
        assert!(
            routes.contains(&"10.244.0.0/16 dev flannel-wg scope link".to_owned()),
            "{routes:?}"
        );
        assert_eq!(lease_value(&cluster, *s)["BackendType"], "wireguard");
    }
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());

    switch(&mut nodes, &vxlan);
    for (n, s) in nodes.iter().zip(&subnets) {
        assert_eq!(n.subnet().unwrap(), *s);
        assert!(!has_link(n, "flannel-wg"), "wireguard device left");
        let routes = routes_into_network(n);
        assert!(
            routes.iter().all(|r| !r.contains("flannel-wg")),
            "wireguard routes left: {routes:?}"
        );
        assert!(has_link(n, "flannel.1"));
        assert_eq!(lease_value(&cluster, *s)["BackendType"], "vxlan");
    }
    assert_full_mesh(&all_pods, &nodes.iter().collect::<Vec<_>>());
    assert!(neigh(&nodes[0]).contains("PERMANENT"));
}

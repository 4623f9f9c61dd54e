//! Interop with an independent WireGuard: Debian's `wireguard-go`, configured with `wg set`
//! exactly as an upstream flannel node would configure its device, its lease written into
//! etcd in upstream's format, its private key in a file. Our flanneld nodes (userspace
//! WireGuard) and that node reach each other both ways, whichever side sends first, with and
//! without a PSK, and traffic resumes after either side restarts with the same keys.
//!
//! `conformance::wireguard_go` keeps each wireguard-go's control socket in a private `/run`.

use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::wireguard_go::{genkey, public_key, WgPeer, WireguardGo};
use conformance::{Host, Segment};
use ipnet::{IpNet, Ipv4Net};
use serde_json::{json, Value};

const NETWORK: &str = "10.244.0.0/16";
const PSK: &str = "7rKnOpYbRpWlYHdRODo8bZjrSz53RrKY3W1Wj4lXq+Q=";
const UPSTREAM_SUBNET: &str = "10.244.200.0/24";
const UPSTREAM_POD: &str = "10.244.200.1";

fn wg_args() -> Vec<&'static str> {
    vec!["--ip-masq", "--wireguard-impl=userspace"]
}

fn start(cluster: &Cluster, seg: Segment, tag: &str) -> Flanneld {
    // The key file goes to the node's own directory (the harness's WIREGUARD_KEY_FILE).
    start_flanneld(cluster.host(seg, tag), &cluster.etcd, &wg_args(), None)
}

/// A node run the way upstream flanneld runs it, with wireguard-go as the device.
struct UpstreamNode {
    host: Host,
    dir: tempfile::TempDir,
    public_key: String,
    subnet: Ipv4Net,
    device: Option<WireguardGo>,
}

impl UpstreamNode {
    /// Makes the key (as `wg genkey` does) and publishes the lease upstream would write: the
    /// record under a 600 s etcd lease.
    fn new(cluster: &Cluster, host: Host) -> UpstreamNode {
        let dir = tempfile::tempdir().unwrap();
        let public_key = genkey(&dir.path().join("wgkey")).unwrap();
        std::fs::write(dir.path().join("psk"), PSK).unwrap();
        let subnet: Ipv4Net = UPSTREAM_SUBNET.parse().unwrap();
        let lease = cluster.etcd.etcdctl(&["lease", "grant", "600"]).unwrap();
        let id = lease
            .split_whitespace()
            .nth(1)
            .expect("lease id")
            .to_owned();
        let value = json!({
            "PublicIP": host.ip().to_string(),
            "PublicIPv6": null,
            "BackendType": "wireguard",
            "BackendData": {"PublicKey": public_key, "Port": 51820}
        });
        let key = format!("{PREFIX}/subnets/10.244.200.0-24");
        cluster
            .etcd
            .etcdctl(&["put", &format!("--lease={id}"), &key, &value.to_string()])
            .unwrap();
        // Its "pods": the gateway address on a bridge, as the bridge plugin would leave it.
        let ns = host.netns();
        for cmd in [
            vec!["ip", "link", "add", "cni0", "type", "bridge"],
            vec!["ip", "addr", "add", "10.244.200.1/24", "dev", "cni0"],
            vec!["ip", "link", "set", "cni0", "up"],
        ] {
            ns.exec_ok(&cmd).unwrap();
        }
        UpstreamNode {
            host,
            dir,
            public_key,
            subnet,
            device: None,
        }
    }

    fn device(&self) -> &WireguardGo {
        self.device.as_ref().expect("device running")
    }

    /// Starts wireguard-go and configures it as upstream's `newWGDevice`, `Configure` and
    /// `addPeer` would, from the leases in etcd.
    fn start(&mut self, cluster: &Cluster, psk: bool) {
        let ns = self.host.netns();
        let dev = WireguardGo::start(ns, "flannel-wg").unwrap();
        let address = IpNet::from(Ipv4Net::new(self.subnet.network(), 32).unwrap());
        dev.configure(
            ns,
            &self.dir.path().join("wgkey"),
            51820,
            address,
            1420,
            NETWORK.parse().unwrap(),
        )
        .unwrap();
        let leases = cluster
            .etcd
            .etcdctl(&["get", "--prefix", &format!("{PREFIX}/subnets/")])
            .unwrap();
        let mut lines = leases.lines();
        while let (Some(key), Some(value)) = (lines.next(), lines.next()) {
            let v: Value = serde_json::from_str(value).unwrap();
            let peer = v["BackendData"]["PublicKey"].as_str().unwrap().to_owned();
            if peer == self.public_key {
                continue;
            }
            let subnet = key.rsplit('/').next().unwrap().replacen('-', "/", 1);
            let endpoint = format!(
                "{}:{}",
                v["PublicIP"].as_str().unwrap(),
                v["BackendData"]["Port"]
            );
            dev.add_peer(&WgPeer {
                public_key: peer,
                endpoint: endpoint.parse().unwrap(),
                allowed_ips: vec![subnet.parse().unwrap()],
                psk_file: psk.then(|| self.dir.path().join("psk")),
            })
            .unwrap();
        }
        self.device = Some(dev);
    }

    fn stop(&mut self) {
        if let Some(mut d) = self.device.take() {
            d.stop();
        }
        // The TUN device goes with the process.
        assert!(eventually(Duration::from_secs(10), || !self
            .host
            .netns()
            .exec(&["ip", "link", "show", "flannel-wg"])
            .status
            .success()));
    }

    fn pings(&self, to: &str) -> bool {
        self.host
            .netns()
            .exec(&["ping", "-c", "1", "-W", "1", "-I", UPSTREAM_POD, to])
            .status
            .success()
    }

    fn latest_handshake(&self, peer: &str) -> u64 {
        self.device().latest_handshake(peer).unwrap()
    }
}

fn our_key(node: &Flanneld) -> String {
    public_key(&node.dir().join("wgkey")).unwrap()
}

const RESUME: Duration = Duration::from_secs(40);

fn interop(psk: bool) {
    let mut backend = json!({"Type": "wireguard"});
    if psk {
        backend["PSK"] = json!(PSK);
    }
    let cluster = Cluster::new(&json!({"Network": NETWORK, "Backend": backend}));
    let mut up = UpstreamNode::new(&cluster, cluster.host(Segment::A, "u1"));
    let mut nodes = vec![
        start(&cluster, Segment::A, "o1"),
        start(&cluster, Segment::B, "o2"),
    ];
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    up.start(&cluster, psk);
    let driver = our_driver();
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(&driver, n, &format!("io-{psk}-{i}")))
        .collect();
    // Our routes include the upstream node's subnet, through flannel-wg.
    assert!(nodes[0].route_to(NETWORK).contains("dev flannel-wg"));
    assert_ne!(up.subnet, nodes[0].subnet().unwrap());

    // The upstream node sends first to o1 (it initiates that handshake)...
    assert!(
        eventually(RESUME, || up.pings(&pods[0].ip)),
        "upstream node -> pod on o1"
    );
    assert!(up.latest_handshake(&our_key(&nodes[0])) > 0);
    assert!(eventually(RESUME, || pings(&pods[0].netns, UPSTREAM_POD)));
    // ...and our pod on o2 sends first to it (o2 initiates).
    assert_eq!(
        up.latest_handshake(&our_key(&nodes[1])),
        0,
        "no handshake with o2 yet"
    );
    assert!(
        eventually(RESUME, || pings(&pods[1].netns, UPSTREAM_POD)),
        "pod on o2 -> upstream node"
    );
    assert!(up.latest_handshake(&our_key(&nodes[1])) > 0);
    assert!(eventually(RESUME, || up.pings(&pods[1].ip)));

    // Our node restarts: same key from its file, traffic resumes.
    nodes[0].restart().unwrap();
    nodes[0].wait_ready(START).unwrap();
    assert!(
        eventually(RESUME, || up.pings(&pods[0].ip)),
        "upstream node -> pod on the restarted o1"
    );
    assert!(eventually(RESUME, || pings(&pods[0].netns, UPSTREAM_POD)));

    // The upstream node's device restarts: same key, configured again; traffic resumes.
    up.stop();
    up.start(&cluster, psk);
    assert!(
        eventually(RESUME, || pings(&pods[1].netns, UPSTREAM_POD)),
        "pod on o2 -> restarted upstream node"
    );
    assert!(eventually(RESUME, || up.pings(&pods[0].ip)));
}

#[test]
fn wireguard_go_peer_without_psk() {
    interop(false);
}

#[test]
fn wireguard_go_peer_with_psk() {
    interop(true);
}

//! Interop with an independent WireGuard: Debian's `wireguard-go`, configured with `wg set`
//! exactly as an upstream flannel node would configure its device, its lease written into
//! etcd in upstream's format, its private key in a file. Our flanneld nodes (userspace
//! WireGuard) and that node reach each other both ways, whichever side sends first, with and
//! without a PSK, and traffic resumes after either side restarts with the same keys.
//!
//! wireguard-go keeps its control socket in `/run/wireguard/<dev>.sock`; each simulated
//! node runs it under a private tmpfs over `/run` in its own mount namespace (`ip netns
//! exec` makes one, and nothing mounted there reaches the machine's `/run`), and every `wg`
//! call enters that mount namespace with `nsenter`.

mod flanneld_support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conformance::{Host, Segment};
use flanneld_support::*;
use ipnet::Ipv4Net;
use serde_json::{json, Value};

const NETWORK: &str = "10.244.0.0/16";
const PSK: &str = "7rKnOpYbRpWlYHdRODo8bZjrSz53RrKY3W1Wj4lXq+Q=";
const UPSTREAM_SUBNET: &str = "10.244.200.0/24";
const UPSTREAM_POD: &str = "10.244.200.1";

fn wg_args() -> Vec<&'static str> {
    vec!["--ip-masq", "--wireguard-impl=userspace"]
}

fn start(cluster: &Cluster, seg: Segment, tag: &str) -> Flanneld {
    Flanneld::start_env(
        cluster.host(seg, tag),
        &cluster.etcd,
        &wg_args(),
        None,
        |dir| {
            vec![(
                "WIREGUARD_KEY_FILE".into(),
                dir.join("wgkey").display().to_string(),
            )]
        },
    )
}

/// A node run the way upstream flanneld runs it, with wireguard-go as the device.
struct UpstreamNode {
    host: Host,
    dir: tempfile::TempDir,
    public_key: String,
    subnet: Ipv4Net,
    device: Option<Child>,
}

impl UpstreamNode {
    /// Makes the key (as `wg genkey` does) and publishes the lease upstream would write: the
    /// record under a 600 s etcd lease, created only if absent.
    fn new(cluster: &Cluster, host: Host) -> UpstreamNode {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("wgkey");
        let out = Command::new("wg").arg("genkey").output().unwrap();
        std::fs::write(&key, out.stdout.trim_ascii_end()).unwrap();
        let out = Command::new("wg")
            .arg("pubkey")
            .stdin(std::fs::File::open(&key).unwrap())
            .output()
            .unwrap();
        let public_key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
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

    fn pid(&self) -> String {
        self.device
            .as_ref()
            .expect("device running")
            .id()
            .to_string()
    }

    /// `wg` inside the device's mount and network namespaces.
    fn wg(&self, args: &[&str]) -> std::process::Output {
        let pid = self.pid();
        let mut argv = vec!["nsenter", "-t", &pid, "-m", "-n", "wg"];
        argv.extend_from_slice(args);
        self.host.netns().exec(&argv)
    }

    /// Starts wireguard-go and configures it as upstream's `newWGDevice`, `Configure` and
    /// `addPeer` would, from the leases in etcd.
    fn start(&mut self, cluster: &Cluster, psk: bool) {
        let child = self
            .host
            .netns()
            .command("bash")
            .args([
                "-c",
                "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/wireguard && exec wireguard-go -f flannel-wg",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.device = Some(child);
        assert!(
            eventually(Duration::from_secs(20), || self
                .wg(&["show", "flannel-wg"])
                .status
                .success()),
            "wireguard-go did not come up"
        );
        let key = self.dir.path().join("wgkey").display().to_string();
        let out = self.wg(&[
            "set",
            "flannel-wg",
            "listen-port",
            "51820",
            "private-key",
            &key,
        ]);
        assert!(out.status.success(), "{out:?}");
        let ns = self.host.netns();
        for cmd in [
            vec!["ip", "addr", "add", "10.244.200.0/32", "dev", "flannel-wg"],
            vec!["ip", "link", "set", "flannel-wg", "mtu", "1420", "up"],
            vec![
                "ip",
                "route",
                "replace",
                NETWORK,
                "dev",
                "flannel-wg",
                "scope",
                "link",
            ],
        ] {
            ns.exec_ok(&cmd).unwrap();
        }
        let leases = cluster
            .etcd
            .etcdctl(&["get", "--prefix", &format!("{PREFIX}/subnets/")])
            .unwrap();
        let mut lines = leases.lines();
        let psk_file = self.dir.path().join("psk").display().to_string();
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
            let mut args = vec![
                "set",
                "flannel-wg",
                "peer",
                &peer,
                "endpoint",
                &endpoint,
                "allowed-ips",
                &subnet,
            ];
            if psk {
                args.extend(["preshared-key", &psk_file]);
            }
            let out = self.wg(&args);
            assert!(out.status.success(), "{out:?}");
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.device.take() {
            let _ = c.kill();
            let _ = c.wait();
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

    /// Our node's public key as wireguard-go sees its latest handshake with it (0: none).
    fn latest_handshake(&self, peer: &str) -> u64 {
        let out = self.wg(&["show", "flannel-wg", "latest-handshakes"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let (k, t) = l.split_once('\t')?;
                (k == peer).then(|| t.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0)
    }
}

impl Drop for UpstreamNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.device.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn our_key(node: &Flanneld) -> String {
    let out = Command::new("wg")
        .arg("pubkey")
        .stdin(std::fs::File::open(node.dir().join("wgkey")).unwrap())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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
        n.wait_ready();
    }
    up.start(&cluster, psk);
    let driver = our_driver();
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(&driver, n, &format!("io-{psk}-{i}")))
        .collect();
    // Our routes include the upstream node's subnet, through flannel-wg.
    assert!(nodes[0]
        .route_to(NETWORK.parse().unwrap())
        .contains("dev flannel-wg"));
    assert_ne!(up.subnet, nodes[0].subnet());

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
    nodes[0].restart();
    nodes[0].wait_ready();
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

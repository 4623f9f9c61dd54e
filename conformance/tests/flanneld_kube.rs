//! Our flanneld in kube mode (`--kube-subnet-mgr`) on the test underlay, against the test
//! API server (conformance::kubeapi) listening on the router: each host is a Node with a
//! podCIDR; pods added through libcni with the kube-flannel conflist reach each other over
//! vxlan; the annotations flanneld writes have upstream's keys and value shapes; a restart
//! keeps the VTEP MAC; a deleted Node's routes go; a Node without a podCIDR is fatal.

mod flanneld_support;

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use conformance::kubeapi::{fixture_node, KubeApi};
use conformance::{kube_flannel_conflist, Host, Netns, Segment, Underlay};
use flanneld_support::{eventually, flanneld_bin, our_driver, pings, Pod};
use serde_json::{json, Value};

const NETWORK: &str = "10.244.0.0/16";
const PREFIX: &str = "flannel.alpha.coreos.com/";

/// The underlay with the API server on the router's segment-A address.
struct KubeCluster {
    underlay: Underlay,
    api: KubeApi,
}

impl KubeCluster {
    fn new() -> KubeCluster {
        let underlay = Underlay::new().unwrap();
        let ip = IpAddr::V4(Segment::A.router_ip());
        let api = KubeApi::start_in(underlay.router(), ip).unwrap();
        KubeCluster { underlay, api }
    }

    /// A host and its Node object (with `pod_cidr`, if any).
    fn node(&self, seg: Segment, name: &str, pod_cidr: Option<&str>) -> Host {
        let host = self.underlay.add_host(seg, name).unwrap();
        self.api.put_node(fixture_node(name, pod_cidr, host.ip()));
        host
    }
}

/// One kube-mode flanneld.
struct KubeFlanneld {
    name: String,
    host: Host,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: usize,
    /// Flags and environment beyond the kube-mode essentials.
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl KubeFlanneld {
    fn start(cluster: &KubeCluster, host: Host, name: &str) -> KubeFlanneld {
        let net_conf = json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}});
        Self::start_with(cluster, host, name, &net_conf, &[])
    }

    /// With another net-conf and extra flags; a WireGuard key file lives in the node's dir.
    fn start_with(
        cluster: &KubeCluster,
        host: Host,
        name: &str,
        net_conf: &Value,
        extra: &[&str],
    ) -> KubeFlanneld {
        let dir = tempfile::Builder::new()
            .prefix("fr-kube-")
            .tempdir()
            .unwrap();
        cluster
            .api
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        std::fs::write(dir.path().join("net-conf.json"), net_conf.to_string()).unwrap();
        let env = vec![(
            "WIREGUARD_KEY_FILE".to_owned(),
            dir.path().join("wgkey").display().to_string(),
        )];
        let mut f = KubeFlanneld {
            name: name.to_owned(),
            host,
            dir,
            child: None,
            starts: 0,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            env,
        };
        f.spawn();
        f
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.path("flanneld.log"))
            .unwrap();
        let mut cmd = self.host.netns().command(flanneld_bin());
        cmd.args([
            "--kube-subnet-mgr".to_owned(),
            format!("--kubeconfig-file={}", self.path("kubeconfig").display()),
            format!("--net-config-path={}", self.path("net-conf.json").display()),
            format!("--subnet-file={}", self.path("subnet.env").display()),
            "--iface=eth0".to_owned(),
            "--ip-masq".to_owned(),
        ])
        .args(&self.extra)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .env("NODE_NAME", &self.name)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
        self.starts += 1;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("flanneld.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.log().matches("Wrote subnet file").count() >= self.starts {
                return std::fs::read_to_string(self.path("subnet.env")).unwrap();
            }
            if let Some(s) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("flanneld on {} exited ({s}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(10))
    }

    fn conflist(&self) -> String {
        kube_flannel_conflist("0.3.1", &self.path("subnet.env"), self.dir.path()).to_string()
    }

    fn add_pod(&self, id: &str) -> Pod {
        let netns = Netns::new("pod").unwrap();
        netns.set_loopback_up().unwrap();
        let result = our_driver()
            .add(
                &self.conflist(),
                self.host.netns(),
                &netns,
                "eth0",
                id,
                None,
            )
            .unwrap_or_else(|e| panic!("ADD {id}: {e:?}"));
        let cidr = result["ips"][0]["address"].as_str().unwrap();
        let ip = cidr.split('/').next().unwrap().to_owned();
        Pod { netns, ip }
    }

    fn route_to(&self, dst: &str) -> String {
        let out = self.host.netns().exec(&["ip", "-4", "route", "show", dst]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn vtep_mac(&self) -> String {
        let out = self
            .host
            .netns()
            .exec_ok(&["ip", "-j", "link", "show", "flannel.1"])
            .unwrap();
        let links: Value = serde_json::from_str(&out).unwrap();
        links[0]["address"].as_str().unwrap().to_owned()
    }
}

impl Drop for KubeFlanneld {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- flanneld log ({}) ---\n{}", self.name, self.log());
        }
    }
}

fn annotation(node: &Value, key: &str) -> String {
    node["metadata"]["annotations"][format!("{PREFIX}{key}")]
        .as_str()
        .unwrap_or_else(|| panic!("annotation {key} missing: {}", node["metadata"]))
        .to_owned()
}

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
        KubeFlanneld::start_with(
            &cluster,
            host,
            name,
            &net_conf,
            &["--wireguard-impl=userspace"],
        )
    })
    .collect();
    for n in &mut nodes {
        let env = n.wait_ready();
        assert!(env.contains("FLANNEL_MTU=1420\n"), "{env}");
    }
    for n in &nodes {
        let node = cluster.api.node(&n.name).expect("node object");
        assert_eq!(annotation(&node, "backend-type"), "wireguard");
        let data: Value = serde_json::from_str(&annotation(&node, "backend-data")).unwrap();
        let out = std::process::Command::new("wg")
            .arg("pubkey")
            .stdin(File::open(n.path("wgkey")).unwrap())
            .output()
            .unwrap();
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert_eq!(data, json!({"PublicKey": key, "Port": 51820}));
    }
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| n.add_pod(&format!("wgk-{i}")))
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

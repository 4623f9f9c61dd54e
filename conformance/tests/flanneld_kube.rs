//! Our flanneld in kube mode (`--kube-subnet-mgr`) on the test underlay, against the test
//! API server (conformance::kubeapi) listening on the router: each host is a Node with a
//! podCIDR; pods added through libcni with the kube-flannel conflist reach each other over
//! vxlan; the annotations flanneld writes have upstream's keys and value shapes; a restart
//! keeps the VTEP MAC; a deleted Node's routes go; a Node without a podCIDR is fatal.

mod flanneld_faults_support;
mod flanneld_support;

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use conformance::kubeapi::{fixture_node, Fault, KubeApi, Reply, Verb};
use conformance::{kube_flannel_conflist, Host, Netns, Segment, Underlay};
use flanneld_faults_support::Pinger;
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
    /// A program (and its arguments) flanneld is started through, e.g. `setpriv`.
    wrapper: Vec<String>,
}

impl KubeFlanneld {
    fn start(cluster: &KubeCluster, host: Host, name: &str) -> KubeFlanneld {
        Self::start_through(cluster, host, name, &[])
    }

    fn start_through(
        cluster: &KubeCluster,
        host: Host,
        name: &str,
        wrapper: &[&str],
    ) -> KubeFlanneld {
        let dir = tempfile::Builder::new()
            .prefix("fr-kube-")
            .tempdir()
            .unwrap();
        cluster
            .api
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        let net_conf = json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}});
        std::fs::write(dir.path().join("net-conf.json"), net_conf.to_string()).unwrap();
        let mut f = KubeFlanneld {
            name: name.to_owned(),
            host,
            dir,
            child: None,
            starts: 0,
            wrapper: wrapper.iter().map(|w| w.to_string()).collect(),
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
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = self.host.netns().command(program);
                c.args(args).arg(flanneld_bin());
                c
            }
            None => self.host.netns().command(flanneld_bin()),
        };
        cmd.args([
            "--kube-subnet-mgr".to_owned(),
            format!("--kubeconfig-file={}", self.path("kubeconfig").display()),
            format!("--net-config-path={}", self.path("net-conf.json").display()),
            format!("--subnet-file={}", self.path("subnet.env").display()),
            "--iface=eth0".to_owned(),
            "--ip-masq".to_owned(),
        ])
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

/// `ip -o monitor route` in a host, to prove afterwards that no pod route was ever deleted.
struct RouteMonitor {
    child: Child,
    out: PathBuf,
}

impl RouteMonitor {
    fn start(host: &Host, out: PathBuf) -> RouteMonitor {
        let file = File::create(&out).unwrap();
        let child = host
            .netns()
            .command("ip")
            .args(["-o", "monitor", "route"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        RouteMonitor { child, out }
    }

    /// Route deletions inside the pod network seen so far.
    fn deletions(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Deleted") && l.contains("10.244."))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl KubeFlanneld {
    fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits until `needle` appears `n` times in the log; returns how often it did.
    fn wait_for(&self, needle: &str, n: usize) -> usize {
        assert!(
            eventually(Duration::from_secs(60), || self.count(needle) >= n),
            "{} never logged {needle:?} {n} time(s):\n{}",
            self.name,
            self.log()
        );
        self.count(needle)
    }

    fn flannel_annotations(&self, api: &KubeApi) -> Value {
        let node = api.node(&self.name).unwrap();
        let mut ann = node["metadata"]["annotations"].as_object().unwrap().clone();
        ann.retain(|k, _| k.starts_with(PREFIX));
        Value::Object(ann)
    }
}

/// Relists: GETs of the Node collection that are not watches.
fn relists(api: &KubeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/nodes" && !r.is_watch())
        .count()
}

/// Runs one misbehaviour while both pods ping each other, then checks that not one ping was
/// lost and that every flanneld still holds its lease, annotations and routes.
fn through(
    what: &str,
    cluster: &KubeCluster,
    nodes: &mut [KubeFlanneld; 2],
    pods: &[Pod; 2],
    event: impl FnOnce(&mut [KubeFlanneld; 2]),
) {
    let before: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                std::fs::read_to_string(n.path("subnet.env")).unwrap(),
                n.flannel_annotations(&cluster.api),
            )
        })
        .collect();
    let routes = [
        nodes[0].route_to("10.244.2.0/24"),
        nodes[1].route_to("10.244.1.0/24"),
    ];
    let pingers = [
        Pinger::start(&pods[0].netns, &pods[1].ip, Duration::from_secs(8)),
        Pinger::start(&pods[1].netns, &pods[0].ip, Duration::from_secs(8)),
    ];
    event(nodes);
    for p in pingers {
        let stats = p.finish();
        assert_eq!(
            stats.transmitted, stats.received,
            "{what}: pings lost: {stats:?}"
        );
    }
    for (n, (env, ann)) in nodes.iter().zip(before) {
        assert_eq!(
            std::fs::read_to_string(n.path("subnet.env")).unwrap(),
            env,
            "{what}"
        );
        assert_eq!(
            n.flannel_annotations(&cluster.api),
            ann,
            "{what}: annotations changed"
        );
    }
    assert_eq!(
        [
            nodes[0].route_to("10.244.2.0/24"),
            nodes[1].route_to("10.244.1.0/24")
        ],
        routes,
        "{what}: routes changed"
    );
}

#[test]
fn kube_mode_rides_out_an_api_server_that_misbehaves_as_real_ones_do() {
    let cluster = KubeCluster::new();
    let h1 = cluster.node(Segment::A, "h1", Some("10.244.1.0/24"));
    let h2 = cluster.node(Segment::B, "h2", Some("10.244.2.0/24"));
    let monitors = [
        RouteMonitor::start(
            &h1,
            std::env::temp_dir().join(format!("fr-routes-h1-{}", std::process::id())),
        ),
        RouteMonitor::start(
            &h2,
            std::env::temp_dir().join(format!("fr-routes-h2-{}", std::process::id())),
        ),
    ];
    let mut nodes = [
        KubeFlanneld::start(&cluster, h1, "h1"),
        KubeFlanneld::start(&cluster, h2, "h2"),
    ];
    for n in &mut nodes {
        n.wait_ready();
    }
    let pods = [nodes[0].add_pod("ctr-1"), nodes[1].add_pod("ctr-2")];
    for (a, b) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        assert!(eventually(Duration::from_secs(20), || pings(
            &a.netns, &b.ip
        )));
    }
    let api = &cluster.api;

    // 1. Watches cut short by the server (its own limit, below our timeoutSeconds): each
    //    end is one line, and the watch resumes where it was, without a relist.
    let ended = "the API server ended the watch after";
    let lists = relists(api);
    through("watches cut short", &cluster, &mut nodes, &pods, |nodes| {
        api.set_watch_limit(Some(Duration::from_secs(2)));
        for n in nodes.iter() {
            n.wait_for(ended, 1);
        }
        api.set_watch_limit(None);
    });
    assert_eq!(
        relists(api),
        lists,
        "a watch that ends is resumed, not relisted"
    );

    // 2. Bookmarks: writes elsewhere move the version on, a bookmark carries it to each
    //    flanneld, and after compaction and lost connections both resume from it (from their
    //    last Node event they would need a relist).
    through("bookmarks", &cluster, &mut nodes, &pods, |nodes| {
        api.set_bookmark_interval(Some(Duration::from_millis(300)));
        api.unrelated_write();
        api.unrelated_write();
        std::thread::sleep(Duration::from_secs(2));
        let ends: Vec<usize> = nodes.iter().map(|n| n.count(ended)).collect();
        api.compact();
        api.drop_connections();
        for (n, e) in nodes.iter().zip(ends) {
            n.wait_for(ended, e + 1);
        }
        std::thread::sleep(Duration::from_secs(1));
    });
    assert_eq!(relists(api), lists, "resumed from the bookmark, no relist");
    api.set_bookmark_interval(None);

    // 3. 410 Gone: the version a watch resumes from is no longer in the history: one line
    //    each, one relist each, nothing else changes.
    let expired = "is no longer in the API server's history";
    through("410 Gone", &cluster, &mut nodes, &pods, |nodes| {
        api.unrelated_write();
        api.compact();
        api.drop_connections();
        for n in nodes.iter() {
            assert_eq!(n.wait_for(expired, 1), 1);
        }
    });
    assert_eq!(relists(api), lists + 2);

    // 4. 429 with Retry-After (priority and fairness) on the relists after another 410:
    //    every rejection is retried after the second it asks for, with one line each.
    let throttled = "answered 429 Too Many Requests to GET /api/v1/nodes";
    through(
        "429 Too Many Requests",
        &cluster,
        &mut nodes,
        &pods,
        |nodes| {
            api.inject(
                Fault::new(Reply::Throttled { retry_after: 1 })
                    .on(&[Verb::List], "nodes")
                    .times(4),
            );
            api.unrelated_write();
            api.compact();
            api.drop_connections();
            assert!(eventually(Duration::from_secs(60), || api.faults_pending()
                == 0
                && relists_done(api) >= lists + 4));
            for n in nodes.iter() {
                n.wait_for(expired, 2);
            }
        },
    );
    assert_eq!(nodes.iter().map(|n| n.count(throttled)).sum::<usize>(), 4);

    // 5. 5xx: a 503 with Retry-After on the watch is retried by the client after 2 s; a 500
    //    InternalError (no hint) is retried by the loop with backoff. One line each, then
    //    one line when the server answers again.
    let unavailable = "answered 503 Service Unavailable to GET /api/v1/nodes";
    let failed = "watching failed: 500 InternalError";
    let back = "the API server answers again";
    through("5xx", &cluster, &mut nodes, &pods, |nodes| {
        api.inject(
            Fault::new(Reply::Unavailable { retry_after: 2 })
                .on(&[Verb::Watch], "nodes")
                .times(2),
        );
        api.inject(
            Fault::new(Reply::Internal)
                .on(&[Verb::Watch], "nodes")
                .times(2),
        );
        api.drop_connections();
        assert!(eventually(Duration::from_secs(60), || api.faults_pending() == 0));
        for n in nodes.iter() {
            n.wait_for(back, 1);
        }
    });
    assert_eq!(nodes.iter().map(|n| n.count(unavailable)).sum::<usize>(), 2);
    assert_eq!(nodes.iter().map(|n| n.count(failed)).sum::<usize>(), 2);

    // 6. The API server restarts: every watch is lost, connections are refused for 3 s,
    //    and it comes back with an empty watch cache (so a 410 and one relist each).
    let refused = "watching failed: Connection refused";
    through("API server restart", &cluster, &mut nodes, &pods, |nodes| {
        api.restart(Duration::from_secs(3)).unwrap();
        for n in nodes.iter() {
            n.wait_for(back, 2);
            n.wait_for(expired, 3);
        }
    });
    for n in &nodes {
        assert_eq!(n.count(refused), 1, "one line for the outage:\n{}", n.log());
    }

    // 7. 409 Conflict: a restarted flanneld's condition patch loses to concurrent writers
    //    twice; it keeps trying until NetworkUnavailable=False lands (upstream gives up
    //    after 30 s and leaves the node tainted).
    api.update_node("h1", |n| {
        for c in n["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "NetworkUnavailable" {
                c["status"] = json!("True");
            }
        }
    });
    let conflict = "409 Conflict: Operation cannot be fulfilled on nodes \"h1\"";
    through("409 Conflict", &cluster, &mut nodes, &pods, |nodes| {
        api.inject(
            Fault::new(Reply::Conflict)
                .on(&[Verb::Patch], "nodes")
                .times(2),
        );
        assert!(nodes[0].stop().success());
        nodes[0].spawn();
        nodes[0].wait_ready();
        nodes[0].wait_for("NetworkUnavailable=False is set", 1);
    });
    assert!(nodes[0].count(conflict) >= 1, "{}", nodes[0].log());
    let condition = api.node("h1").unwrap()["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NetworkUnavailable")
        .cloned()
        .unwrap();
    assert_eq!(condition["status"], "False");

    for m in &monitors {
        assert_eq!(
            m.deletions(),
            Vec::<String>::new(),
            "a pod route was deleted"
        );
    }
    for n in &mut nodes {
        assert!(n.stop().success());
        if std::env::var_os("FLANNEL_RS_SHOW_LOGS").is_some() {
            eprintln!("--- flanneld log ({}) ---\n{}", n.name, n.log());
        }
    }
}

/// Relists that got an answer (failed attempts excluded).
fn relists_done(api: &KubeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path == "/api/v1/nodes" && !r.is_watch() && r.status == 200
        })
        .count()
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

//! A two-node kube-mode cluster enforcing NetworkPolicy, modelled on Kubernetes' e2e netpol
//! suite (`test/e2e/network/netpol/model.go`): namespaces x, y, z labelled as the API server
//! labels them; pods a, b, c in each (labelled `pod=<name>`), alternately on the two nodes,
//! attached through libcni with the kube-flannel conflist and our plugins, each serving TCP
//! and UDP on 80 and 81 with e2e's container port names (`serve-80-tcp`, ...). Pod objects
//! are written into the test API server with the address CNI gave them, as the kubelet
//! would report it.
//!
//! Reachability is always measured by real connections ([`crate::reach`]); flanneld's
//! `/status` is read only to know when a change has been enforced, never to judge it.

pub mod cases;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::kubeapi::{fixture_node, KubeApi};
use crate::reach::{probe_all, Proto, Servers};
use crate::{Driver, Netns, PluginDir, Segment, Underlay};
use serde_json::{json, Value};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
pub const PROBES: [(Proto, u16); 4] = [
    (Proto::Tcp, 80),
    (Proto::Tcp, 81),
    (Proto::Udp, 80),
    (Proto::Udp, 81),
];
const NETWORK: &str = "10.244.0.0/16";
/// Probes expected to fail wait this long; a cell that disagrees is probed again, longer.
const FIRST_TIMEOUT: Duration = Duration::from_millis(1000);
const RETRY_TIMEOUT: Duration = Duration::from_secs(3);
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

#[allow(unused_imports)] // not every test crate uses each
pub use crate::netpol::{namespace_object, pod_object, rv_of, KubeNode as Node, HEALTHZ_PORT};

/// One pod: its namespace, name, node, network namespace and servers.
pub struct TestPod {
    pub ns: &'static str,
    pub name: &'static str,
    pub node: usize,
    pub netns: Netns,
    pub ip: IpAddr,
    /// The pod's IPv6 address in a dual-stack cluster.
    pub ip6: Option<IpAddr>,
    pub container_id: String,
    _servers: Servers,
}

impl TestPod {
    pub fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }

    pub fn ips(&self) -> Vec<IpAddr> {
        std::iter::once(self.ip).chain(self.ip6).collect()
    }

    /// The address probes go to.
    pub fn addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.ip6.expect("a dual-stack pod")
        } else {
            self.ip
        }
    }
}

pub struct Cluster {
    pub underlay: Underlay,
    pub api: KubeApi,
    pub nodes: Vec<Node>,
    pub pods: Vec<TestPod>,
    driver: Driver,
    created: usize,
    /// Probe the pods' IPv6 addresses instead of their IPv4 ones.
    pub probe_v6: bool,
    /// Policies created and not yet deleted, as `(namespace, name)`.
    policies: RefCell<BTreeSet<(String, String)>>,
}

impl Cluster {
    /// Two nodes (one per underlay segment, so traffic between them crosses the router)
    /// running `backend`, plus `extra_args` for flanneld.
    pub fn start(backend: &str, extra_args: &[&str]) -> Cluster {
        Self::start_on(backend, extra_args, [Segment::A, Segment::B])
    }

    /// As [`Cluster::start`], with the nodes on `segments` (host-gw needs one segment).
    pub fn start_on(backend: &str, extra_args: &[&str], segments: [Segment; 2]) -> Cluster {
        Self::start_with(backend, extra_args, segments, false)
    }

    /// A dual-stack cluster: both nodes on segment A with IPv6 addresses on the underlay
    /// (the router does not route IPv6), `fd10::/56` as the IPv6 network, and every pod with
    /// an address of each family.
    pub fn start_dual_stack(backend: &str) -> Cluster {
        Self::start_with(backend, &[], [Segment::A, Segment::A], true)
    }

    fn start_with(
        backend: &str,
        extra_args: &[&str],
        segments: [Segment; 2],
        dual: bool,
    ) -> Cluster {
        let underlay = Underlay::new().unwrap();
        let api = KubeApi::start_in(underlay.router(), IpAddr::V4(Segment::A.router_ip())).unwrap();
        for ns in NAMESPACES {
            api.put("namespaces", namespace_object(ns, &[]));
        }
        let mut nodes = Vec::new();
        for (i, seg) in segments.into_iter().enumerate() {
            let name = format!("n{}", i + 1);
            let host = underlay.add_host(seg, &format!("np{}", i + 1)).unwrap();
            let cidr = format!("10.244.{}.0/24", i + 1);
            let mut node_obj = fixture_node(&name, Some(&cidr), host.ip());
            if dual {
                host.netns()
                    .exec_ok(&[
                        "ip",
                        "-6",
                        "addr",
                        "add",
                        &format!("fd00:50::{}/64", i + 1),
                        "dev",
                        "eth0",
                        "nodad",
                    ])
                    .unwrap();
                node_obj["spec"]["podCIDRs"] = json!([cidr, format!("fd10:0:0:{}::/64", i + 1)]);
            }
            api.put("nodes", node_obj);
            let mut net_conf = json!({"Network": NETWORK, "Backend": {"Type": backend}});
            if dual {
                net_conf["EnableIPv6"] = json!(true);
                net_conf["IPv6Network"] = json!("fd10::/56");
            }
            let args: Vec<&str> = std::iter::once("--network-policy")
                .chain(extra_args.iter().copied())
                .collect();
            let node = Node::start(&api, host, &name, &net_conf, &args).unwrap();
            nodes.push(node);
        }
        for n in &mut nodes {
            n.wait_ready(Duration::from_secs(90)).unwrap();
        }
        let driver = Driver::new(PluginDir::ours().unwrap_or_else(|e| panic!("our plugins: {e}")));
        let mut c = Cluster {
            underlay,
            api,
            nodes,
            pods: Vec::new(),
            driver,
            created: 0,
            probe_v6: false,
            policies: RefCell::default(),
        };
        for (i, (ns, name)) in NAMESPACES
            .iter()
            .flat_map(|ns| PODS.iter().map(move |p| (*ns, *p)))
            .enumerate()
        {
            let pod = c.attach(ns, name, i % 2);
            c.pods.push(pod);
        }
        let rv = c.publish_all();
        c.wait_enforced(rv);
        c
    }

    /// A pod through the real CNI chain on `node`, with its servers; not yet in the API.
    fn attach(&mut self, ns: &'static str, name: &'static str, node: usize) -> TestPod {
        self.created += 1;
        let netns = Netns::new("npp").unwrap();
        netns.set_loopback_up().unwrap();
        let container_id = format!("np-{ns}-{name}-{}", self.created);
        let n = &self.nodes[node];
        let result = self
            .driver
            .add(
                &n.conflist(),
                n.host.netns(),
                &netns,
                "eth0",
                &container_id,
                None,
            )
            .unwrap_or_else(|e| panic!("ADD {ns}/{name}: {e:?}"));
        let ips: Vec<IpAddr> = result["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i["address"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        let ip = *ips.iter().find(|a| a.is_ipv4()).expect("an IPv4 address");
        let ip6 = ips.iter().copied().find(IpAddr::is_ipv6);
        let servers = Servers::start(&netns, &PORTS).unwrap();
        TestPod {
            ns,
            name,
            node,
            netns,
            ip,
            ip6,
            container_id,
            _servers: servers,
        }
    }

    fn publish(&self, i: usize) -> u64 {
        let p = &self.pods[i];
        let node = &self.nodes[p.node].name;
        rv_of(&self.api.put(
            "pods",
            pod_object(p.ns, p.name, node, &p.ips(), json!({"pod": p.name})),
        ))
    }

    fn publish_all(&self) -> u64 {
        (0..self.pods.len())
            .map(|i| self.publish(i))
            .max()
            .unwrap_or(0)
    }

    pub fn index(&self, id: &str) -> usize {
        self.pods
            .iter()
            .position(|p| p.id() == id)
            .unwrap_or_else(|| panic!("no pod {id}"))
    }

    pub fn pod(&self, id: &str) -> &TestPod {
        &self.pods[self.index(id)]
    }

    /// Deletes a pod (CNI DEL, API delete) and creates it again on the same node: a new
    /// network namespace and, from host-local, a new address. Returns the new object's
    /// resourceVersion.
    pub fn recreate(&mut self, id: &str) -> u64 {
        let i = self.index(id);
        let (ns, name, node) = (self.pods[i].ns, self.pods[i].name, self.pods[i].node);
        let old = self.pods.remove(i);
        let n = &self.nodes[node];
        self.driver
            .del(
                &n.conflist(),
                n.host.netns(),
                &old.netns,
                "eth0",
                &old.container_id,
                None,
            )
            .unwrap_or_else(|e| panic!("DEL {id}: {e:?}"));
        self.api.delete("pods", ns, name);
        let old_ip = old.ip;
        drop(old);
        let pod = self.attach(ns, name, node);
        assert_ne!(pod.ip, old_ip, "host-local hands out the next address");
        self.pods.insert(i, pod);
        self.publish(i)
    }

    /// Waits until both nodes have enforced everything up to `rv`.
    pub fn wait_enforced(&self, rv: u64) {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        for n in &self.nodes {
            while n.enforced_version() < rv {
                assert!(
                    Instant::now() < deadline,
                    "{} did not enforce resourceVersion {rv} (status: {:?}):\n{}",
                    n.name,
                    n.netpol_status(),
                    n.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Creates (or replaces) a policy; returns its resourceVersion.
    pub fn policy(&self, ns: &str, name: &str, spec: Value) -> u64 {
        self.policies
            .borrow_mut()
            .insert((ns.to_owned(), name.to_owned()));
        rv_of(&self.api.put(
            "networkpolicies",
            json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
        ))
    }

    pub fn delete_policy(&self, ns: &str, name: &str) -> u64 {
        self.policies
            .borrow_mut()
            .remove(&(ns.to_owned(), name.to_owned()));
        rv_of(
            &self
                .api
                .delete("networkpolicies", ns, name)
                .expect("policy exists"),
        )
    }

    /// Sets a pod's labels (the e2e model's `pod=<name>` plus `extra`).
    pub fn label_pod(&self, id: &str, extra: &[(&str, &str)]) -> u64 {
        let p = self.pod(id);
        let mut labels = json!({"pod": p.name});
        for (k, v) in extra {
            labels[*k] = json!(v);
        }
        let node = &self.nodes[p.node].name;
        rv_of(
            &self
                .api
                .put("pods", pod_object(p.ns, p.name, node, &p.ips(), labels)),
        )
    }

    pub fn label_namespace(&self, ns: &str, extra: &[(&str, &str)]) -> u64 {
        rv_of(&self.api.put("namespaces", namespace_object(ns, extra)))
    }

    /// Deletes every policy and puts labels back as the model has them.
    pub fn reset(&self) -> u64 {
        let mut rv = 0;
        for ns in NAMESPACES {
            rv = rv.max(self.label_namespace(ns, &[]));
        }
        for p in &self.pods {
            rv = rv.max(self.label_pod(&p.id(), &[]));
        }
        let list: Vec<(String, String)> = self.policies.borrow().iter().cloned().collect();
        for (ns, name) in list {
            rv = rv.max(self.delete_policy(&ns, &name));
        }
        rv
    }

    /// Runs `cases` (all of [`cases::CASES`] when `None`) in order, restoring the model after
    /// each; returns the failures, each with its truth tables.
    pub fn run_cases(&mut self, only: Option<&[&str]>) -> Vec<String> {
        let mut failed = Vec::new();
        for (name, case) in cases::CASES {
            if only.is_some_and(|o| !o.contains(name)) {
                continue;
            }
            let started = Instant::now();
            let result = case(self);
            eprintln!(
                "netpol case {name:?}: {} in {:.1?}",
                if result.is_ok() { "ok" } else { "FAILED" },
                started.elapsed()
            );
            if let Err(e) = result {
                failed.push(format!("case {name:?}:\n{e}"));
            }
            let rv = self.reset();
            self.wait_enforced(rv);
        }
        failed
    }

    /// Each node reaches its own pods whatever the policies say (kubelet probes): a TCP
    /// connection from the node's namespace to every local pod's port 80.
    pub fn node_reaches_its_pods(&self) -> Result<(), String> {
        for (k, n) in self.nodes.iter().enumerate() {
            let local: Vec<IpAddr> = self
                .pods
                .iter()
                .filter(|p| p.node == k)
                .map(|p| p.ip)
                .collect();
            let got = probe_all(
                &[n.host.netns()],
                &local,
                Proto::Tcp,
                80,
                RETRY_TIMEOUT,
                |_, _| false,
            );
            if got[0].iter().any(|c| *c != Some(true)) {
                return Err(format!(
                    "node {} cannot reach its own pods {local:?}: {got:?}",
                    n.name
                ));
            }
        }
        Ok(())
    }

    /// Probes every pair for each of `probes` and compares with `expect`; cells that
    /// disagree are probed again with a longer timeout before they count. Returns the truth
    /// tables of what disagreed.
    pub fn check(
        &self,
        expect: &dyn Fn(Proto, u16) -> Reach,
        probes: &[(Proto, u16)],
    ) -> Result<(), String> {
        let sources: Vec<&Netns> = self.pods.iter().map(|p| &p.netns).collect();
        let targets: Vec<IpAddr> = self.pods.iter().map(|p| p.addr(self.probe_v6)).collect();
        let results: Vec<Vec<Vec<Option<bool>>>> = std::thread::scope(|s| {
            let handles: Vec<_> = probes
                .iter()
                .map(|&(proto, port)| {
                    let (sources, targets) = (&sources, &targets);
                    s.spawn(move || {
                        probe_all(sources, targets, proto, port, FIRST_TIMEOUT, |i, j| i == j)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut report = String::new();
        for (&(proto, port), mut got) in probes.iter().zip(results) {
            let want = expect(proto, port);
            for _ in 0..2 {
                let wrong: Vec<(usize, usize)> = (0..9)
                    .flat_map(|i| (0..9).map(move |j| (i, j)))
                    .filter(|&(i, j)| i != j && got[i][j] != Some(want.get(i, j)))
                    .collect();
                if wrong.is_empty() {
                    break;
                }
                let again = probe_all(&sources, &targets, proto, port, RETRY_TIMEOUT, |i, j| {
                    !wrong.contains(&(i, j))
                });
                for (i, j) in wrong {
                    got[i][j] = again[i][j];
                }
            }
            let bad = (0..9).any(|i| (0..9).any(|j| i != j && got[i][j] != Some(want.get(i, j))));
            if bad {
                let _ = writeln!(
                    report,
                    "{proto} {port}: expected\n{}observed\n{}",
                    want.table(self),
                    Reach::from_cells(&got).table(self)
                );
            }
        }
        if report.is_empty() {
            Ok(())
        } else {
            Err(report)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("--- flanneld log ({}) ---\n{}", n.name, n.log());
            }
        }
    }
}

/// A truth table over the nine pods (`from` row, `to` column), as in e2e's
/// `reachability.go`; the diagonal (a pod to itself) is not judged.
#[derive(Clone, PartialEq, Eq)]
pub struct Reach {
    allowed: [[bool; 9]; 9],
}

/// Which pods a row or column rule is about: a namespace, a pod name, both or neither.
#[derive(Clone, Copy, Default)]
pub struct Peer {
    pub ns: Option<&'static str>,
    pub pod: Option<&'static str>,
}

pub fn any() -> Peer {
    Peer::default()
}

pub fn ns(ns: &'static str) -> Peer {
    Peer {
        ns: Some(ns),
        pod: None,
    }
}

pub fn pod(id: &'static str) -> Peer {
    let (ns, pod) = id.split_once('/').expect("ns/pod");
    Peer {
        ns: Some(ns),
        pod: Some(pod),
    }
}

fn model_id(i: usize) -> (&'static str, &'static str) {
    (NAMESPACES[i / 3], PODS[i % 3])
}

impl Peer {
    fn matches(&self, i: usize) -> bool {
        let (ns, pod) = model_id(i);
        self.ns.is_none_or(|n| n == ns) && self.pod.is_none_or(|p| p == pod)
    }
}

impl Reach {
    pub fn all(allowed: bool) -> Reach {
        Reach {
            allowed: [[allowed; 9]; 9],
        }
    }

    fn from_cells(cells: &[Vec<Option<bool>>]) -> Reach {
        let mut r = Reach::all(false);
        for (i, row) in cells.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                r.allowed[i][j] = c.unwrap_or(true);
            }
        }
        r
    }

    pub fn get(&self, from: usize, to: usize) -> bool {
        self.allowed[from][to]
    }

    /// Every pair from `from` to `to` (e2e's `ExpectPeer`).
    pub fn set(mut self, from: Peer, to: Peer, allowed: bool) -> Reach {
        for i in 0..9 {
            for j in 0..9 {
                if from.matches(i) && to.matches(j) {
                    self.allowed[i][j] = allowed;
                }
            }
        }
        self
    }

    /// Everything into `to` (e2e's `ExpectAllIngress`).
    pub fn ingress(self, to: Peer, allowed: bool) -> Reach {
        self.set(any(), to, allowed)
    }

    /// Everything out of `from` (e2e's `ExpectAllEgress`).
    pub fn egress(self, from: Peer, allowed: bool) -> Reach {
        self.set(from, any(), allowed)
    }

    fn table(&self, c: &Cluster) -> String {
        let mut out = String::from("      ");
        for p in &c.pods {
            let _ = write!(out, "{:>4}", p.id());
        }
        out.push('\n');
        for (i, p) in c.pods.iter().enumerate() {
            let _ = write!(out, "{:>5} ", p.id());
            for j in 0..9 {
                let cell = if i == j {
                    "-"
                } else if self.allowed[i][j] {
                    "."
                } else {
                    "X"
                };
                let _ = write!(out, "{cell:>4}");
            }
            out.push('\n');
        }
        out
    }
}

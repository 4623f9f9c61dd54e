//! A flannel cluster on the test underlay: etcd on the router, our `flanneld` on each host
//! (in the host's namespace, its subnet.env in a temp dir), pods added through libcni with
//! the kube-flannel conflist and our plugins.

pub mod kube;

use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use crate::flanneld::{Flanneld, ETCD_PREFIX as PREFIX, LEASES_PREFIX};
use crate::{Driver, Etcd, EtcdOptions, Host, Netns, PluginDir, Segment, Underlay};
use ipnet::Ipv4Net;
use serde_json::Value;

/// The underlay plus an etcd listening on the router's segment-A address, reachable from
/// hosts on both segments.
pub struct Cluster {
    pub underlay: Underlay,
    pub etcd: Etcd,
}

impl Cluster {
    pub fn new(net_config: &Value) -> Cluster {
        let underlay = Underlay::new().unwrap();
        let ip = IpAddr::V4(Segment::A.router_ip());
        let etcd = Etcd::start(EtcdOptions::in_netns(underlay.router(), ip)).unwrap();
        etcd.put(&format!("{PREFIX}/config"), &net_config.to_string())
            .unwrap();
        Cluster { underlay, etcd }
    }

    /// The underlay with an etcd that also serves the v2 API, as flannel <= v0.17 clusters
    /// run it; `net_config`, if given, is set through the v2 API.
    pub fn v2(net_config: Option<&Value>) -> Cluster {
        let underlay = Underlay::new().unwrap();
        let ip = IpAddr::V4(Segment::A.router_ip());
        let options = EtcdOptions::in_netns(underlay.router(), ip).enable_v2(true);
        let etcd = Etcd::start(options).unwrap();
        let cluster = Cluster { underlay, etcd };
        if let Some(config) = net_config {
            cluster.etcdctl2(&["set", &format!("{PREFIX}/config"), &config.to_string()]);
        }
        cluster
    }

    /// `ETCDCTL_API=2 etcdctl` run on the router, where etcd listens; returns stdout.
    pub fn etcdctl2(&self, args: &[&str]) -> String {
        self.etcd
            .etcdctl_v2(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
    }

    pub fn host(&self, seg: Segment, tag: &str) -> Host {
        self.underlay.add_host(seg, tag).unwrap()
    }

    /// Starts flanneld with `args` (and the lease TTL `ttl`) on a new host per
    /// `(segment, tag)` and waits until every one of them is ready.
    pub fn start_nodes(
        &self,
        hosts: &[(Segment, &str)],
        args: &[&str],
        ttl: Option<u64>,
    ) -> Vec<Flanneld> {
        let mut nodes: Vec<Flanneld> = hosts
            .iter()
            .map(|&(seg, tag)| start_flanneld(self.host(seg, tag), &self.etcd, args, ttl))
            .collect();
        for n in &mut nodes {
            n.wait_ready(START).unwrap_or_else(|e| panic!("{e}"));
        }
        nodes
    }

    /// Every node wrote upstream's subnet.env for `network`: its own /24, `mtu`, masquerading
    /// on; no two nodes got the same subnet. Returns the subnets in node order.
    pub fn assert_leases(nodes: &[Flanneld], network: &str, mtu: u32) -> Vec<Ipv4Net> {
        for n in nodes {
            let env = std::fs::read_to_string(n.subnet_file()).unwrap();
            assert!(
                env.starts_with(&format!(
                    "FLANNEL_NETWORK={network}\nFLANNEL_SUBNET=10.244."
                )),
                "{env}"
            );
            assert!(
                env.ends_with(&format!("/24\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ=true\n")),
                "{env}"
            );
        }
        let subnets: Vec<_> = nodes.iter().map(|n| n.subnet().unwrap()).collect();
        let mut distinct = subnets.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), nodes.len(), "{subnets:?}");
        subnets
    }

    /// Keys of the lease records currently in etcd.
    pub fn lease_keys(&self) -> Vec<String> {
        self.etcd.keys(LEASES_PREFIX).unwrap()
    }
}

/// How long a flanneld may take to become ready on a loaded machine.
pub const START: Duration = Duration::from_secs(60);

/// Starts flanneld on `host` against `etcd`, with `args` after the essentials and leases
/// living `ttl` seconds when given.
pub fn start_flanneld(host: Host, etcd: &Etcd, args: &[&str], ttl: Option<u64>) -> Flanneld {
    let f = Flanneld::etcd(host, &etcd.endpoint()).unwrap().args(args);
    let f = match ttl {
        Some(secs) => f.lease_ttl(secs),
        None => f,
    };
    f.start().unwrap_or_else(|e| panic!("{e}"))
}

/// A pod on a node, attached through libcni.
pub struct Pod {
    pub netns: Netns,
    pub ip: String,
}

pub fn our_driver() -> Driver {
    Driver::new(PluginDir::ours().unwrap_or_else(|e| panic!("our plugins: {e}")))
}

pub fn add_pod(driver: &Driver, node: &Flanneld, id: &str) -> Pod {
    attach_pod(driver, &node.conflist(), &node.host, id)
}

/// A new pod namespace attached through libcni with `conflist` on `host`, and the CNI
/// result (every address it got).
pub fn attach(driver: &Driver, conflist: &str, host: &Host, id: &str) -> (Netns, Value) {
    let netns = Netns::new("pod").unwrap();
    netns.set_loopback_up().unwrap();
    let result = driver
        .add(conflist, host.netns(), &netns, "eth0", id, None)
        .unwrap_or_else(|e| panic!("ADD {id}: {e:?}"));
    (netns, result)
}

/// A new pod namespace attached through libcni with `conflist` on `host`.
pub fn attach_pod(driver: &Driver, conflist: &str, host: &Host, id: &str) -> Pod {
    let (netns, result) = attach(driver, conflist, host, id);
    let cidr = result["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address")
        .to_owned();
    let ip = cidr.split('/').next().unwrap().to_owned();
    Pod { netns, ip }
}

/// Retries `f` until it holds or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn pings(from: &Netns, to: &str) -> bool {
    from.exec(&["ping", "-c", "1", "-W", "1", to])
        .status
        .success()
}

/// One pod per node (container ids `<prefix>-<i>`), then every pod must reach every other.
pub fn pods_in_full_mesh(driver: &Driver, nodes: &[Flanneld], prefix: &str) -> Vec<Pod> {
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(driver, n, &format!("{prefix}-{i}")))
        .collect();
    assert_full_mesh(
        &pods.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
    );
    pods
}

/// A TUN backend's node restarts: its device goes with the process (a TUN device lives as
/// long as the file descriptors that made it), comes back with the new one, and the node
/// keeps its subnet.
pub fn restart_with_tun(node: &mut Flanneld, device: &str) {
    let subnet = node.subnet().unwrap();
    assert!(
        node.stop().unwrap().success(),
        "flanneld exits 0 on SIGTERM"
    );
    let gone = node.host.netns().exec(&["ip", "link", "show", device]);
    assert!(!gone.status.success(), "{device} outlived its process");
    node.restart().unwrap();
    node.wait_ready(START).unwrap();
    assert_eq!(node.subnet().unwrap(), subnet, "the subnet is kept");
}

/// `gone` stops for good: once its lease's TTL (`ttl_secs`) has run out, `observer` has no
/// route to its subnet any more.
pub fn stop_until_expired(observer: &Flanneld, gone: &mut Flanneld, ttl_secs: u64) {
    let subnet = gone.subnet().unwrap();
    assert!(!observer.route_to(subnet).is_empty());
    assert!(gone.stop().unwrap().success());
    assert!(
        eventually(Duration::from_secs(ttl_secs * 3), || observer
            .route_to(subnet)
            .is_empty()),
        "route to the expired node's subnet is still there: {}",
        observer.route_to(subnet)
    );
}

/// Every pod reaches every other pod (retrying while routes converge).
pub fn assert_full_mesh(pods: &[&Pod], nodes: &[&Flanneld]) {
    for a in pods {
        for b in pods {
            if a.ip == b.ip {
                continue;
            }
            assert!(
                eventually(Duration::from_secs(20), || pings(&a.netns, &b.ip)),
                "{} cannot reach {}; routes:\n{}",
                a.ip,
                b.ip,
                nodes
                    .iter()
                    .map(|n| format!(
                        "{}:\n{}",
                        n.host.netns().name(),
                        String::from_utf8_lossy(&n.host.netns().exec(&["ip", "route"]).stdout)
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

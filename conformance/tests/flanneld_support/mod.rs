//! A flannel cluster on the test underlay: etcd on the router, our `flanneld` on each host
//! (in the host's namespace, its subnet.env in a temp dir), pods added through libcni with
//! the kube-flannel conflist and our plugins.

#![allow(dead_code)] // each test crate uses its own subset

pub mod kube;

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use conformance::{
    cmd, cni::our_bin_dir, kube_flannel_conflist, Driver, Etcd, EtcdOptions, Host, Netns,
    PluginDir, Segment, Underlay,
};
use ipnet::Ipv4Net;
use serde_json::Value;

pub const PREFIX: &str = "/coreos.com/network";
/// flanneld's test hook for short lease lifetimes (see flanneld's `options` module).
pub const LEASE_TTL_ENV: &str = "FLANNEL_RS_TEST_LEASE_TTL";
const START_TIMEOUT: Duration = Duration::from_secs(60);

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
            .map(|&(seg, tag)| Flanneld::start(self.host(seg, tag), &self.etcd, args, ttl))
            .collect();
        for n in &mut nodes {
            n.wait_ready();
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
        let subnets: Vec<_> = nodes.iter().map(Flanneld::subnet).collect();
        let mut distinct = subnets.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), nodes.len(), "{subnets:?}");
        subnets
    }

    /// Keys of the lease records currently in etcd.
    pub fn lease_keys(&self) -> Vec<String> {
        let out = self
            .etcd
            .etcdctl(&[
                "get",
                "--prefix",
                "--keys-only",
                &format!("{PREFIX}/subnets/"),
            ])
            .unwrap();
        out.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// One flanneld process on a host.
pub struct Flanneld {
    pub host: Host,
    dir: tempfile::TempDir,
    args: Vec<String>,
    ttl: Option<u64>,
    child: Option<Child>,
    starts: u32,
}

pub fn flanneld_bin() -> PathBuf {
    our_bin_dir().join("flanneld")
}

impl Flanneld {
    /// Starts flanneld on `host` against `etcd`, with `args` added to the essentials.
    pub fn start(host: Host, etcd: &Etcd, args: &[&str], ttl: Option<u64>) -> Flanneld {
        let dir = tempfile::Builder::new()
            .prefix("fr-flanneld-")
            .tempdir()
            .unwrap();
        let mut all = vec![
            format!("--etcd-endpoints={}", etcd.endpoint()),
            "--iface=eth0".to_owned(),
        ];
        all.push(format!(
            "--subnet-file={}",
            dir.path().join("subnet.env").display()
        ));
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let mut f = Flanneld {
            host,
            dir,
            args: all,
            ttl,
            child: None,
            starts: 0,
        };
        f.spawn();
        f
    }

    fn spawn(&mut self) {
        let bin = flanneld_bin();
        assert!(
            bin.is_file(),
            "{} is missing: build it with `cargo build --release -p flanneld`",
            bin.display()
        );
        self.starts += 1;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = self.host.netns().command(&bin);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(ttl) = self.ttl {
            cmd.env(LEASE_TTL_ENV, ttl.to_string());
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    pub fn subnet_file(&self) -> PathBuf {
        self.dir.path().join("subnet.env")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("flanneld.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until this run of flanneld has written subnet.env; returns its content.
    pub fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let written = self.log().matches("Wrote subnet file").count();
            if written >= self.starts as usize {
                return std::fs::read_to_string(self.subnet_file())
                    .expect("subnet.env after it was written");
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "flanneld on {} exited ({status}) before writing subnet.env:\n{}",
                    self.host.netns().name(),
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "flanneld on {} not ready in time:\n{}",
                self.host.netns().name(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The lease network from subnet.env (FLANNEL_SUBNET holds the gateway address).
    pub fn subnet(&self) -> Ipv4Net {
        let text = std::fs::read_to_string(self.subnet_file()).expect("subnet.env");
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
            .expect("FLANNEL_SUBNET");
        v.parse::<Ipv4Net>().unwrap().trunc()
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("flanneld is running");
        match cmd::terminate(&mut child, Duration::from_secs(10)).unwrap() {
            Some(status) => status,
            None => {
                let _ = child.kill();
                panic!("flanneld ignored SIGTERM:\n{}", self.log());
            }
        }
    }

    /// Starts it again with the same flags and files (subnet.env is kept, as on tmpfs).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// The kube-flannel conflist pointed at this node's subnet.env and private data dirs.
    pub fn conflist(&self) -> String {
        kube_flannel_conflist("0.3.1", &self.subnet_file(), self.dir.path()).to_string()
    }

    /// `ip route show <dst>` on this host, trimmed.
    pub fn route_to(&self, dst: Ipv4Net) -> String {
        let out = self
            .host
            .netns()
            .exec(&["ip", "-4", "route", "show", &dst.to_string()]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Flanneld {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- flanneld log ({}) ---\n{}",
                self.host.netns().name(),
                self.log()
            );
        }
    }
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

/// A new pod namespace attached through libcni with `conflist` on `host`.
pub fn attach_pod(driver: &Driver, conflist: &str, host: &Host, id: &str) -> Pod {
    let netns = Netns::new("pod").unwrap();
    netns.set_loopback_up().unwrap();
    let result = driver
        .add(conflist, host.netns(), &netns, "eth0", id, None)
        .unwrap_or_else(|e| panic!("ADD {id}: {e:?}"));
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

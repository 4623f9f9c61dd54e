//! Kube mode on the test underlay: the test API server (conformance::kubeapi) listening on
//! the router, each host a Node with a podCIDR, our flanneld with `--kube-subnet-mgr` on it.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use conformance::kubeapi::{fixture_node, KubeApi};
use conformance::{kube_flannel_conflist, Host, Segment, Underlay};
use serde_json::{json, Value};

use super::{attach_pod, eventually, flanneld_bin, our_driver, Pod};

pub const NETWORK: &str = "10.244.0.0/16";
/// The annotation prefix (`--kube-annotation-prefix`'s default).
pub const PREFIX: &str = "flannel.alpha.coreos.com/";

/// The underlay with the API server on the router's segment-A address.
pub struct KubeCluster {
    pub underlay: Underlay,
    pub api: KubeApi,
}

impl KubeCluster {
    pub fn new() -> KubeCluster {
        let underlay = Underlay::new().unwrap();
        let ip = IpAddr::V4(Segment::A.router_ip());
        let api = KubeApi::start_in(underlay.router(), ip).unwrap();
        KubeCluster { underlay, api }
    }

    /// A host and its Node object (with `pod_cidr`, if any).
    pub fn node(&self, seg: Segment, name: &str, pod_cidr: Option<&str>) -> Host {
        let host = self.underlay.add_host(seg, name).unwrap();
        self.api.put_node(fixture_node(name, pod_cidr, host.ip()));
        host
    }
}

/// One kube-mode flanneld.
pub struct KubeFlanneld {
    pub name: String,
    pub host: Host,
    dir: tempfile::TempDir,
    pub child: Option<Child>,
    starts: usize,
    /// A program (and its arguments) flanneld is started through, e.g. `setpriv`.
    wrapper: Vec<String>,
}

impl KubeFlanneld {
    pub fn start(cluster: &KubeCluster, host: Host, name: &str) -> KubeFlanneld {
        Self::start_through(cluster, host, name, &[])
    }

    pub fn start_through(
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

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn spawn(&mut self) {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("flanneld.log")).unwrap_or_default()
    }

    pub fn wait_ready(&mut self) -> String {
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
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
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

    pub fn stop(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(10))
    }

    pub fn conflist(&self) -> String {
        kube_flannel_conflist("0.3.1", &self.path("subnet.env"), self.dir.path()).to_string()
    }

    pub fn add_pod(&self, id: &str) -> Pod {
        attach_pod(&our_driver(), &self.conflist(), &self.host, id)
    }

    pub fn route_to(&self, dst: &str) -> String {
        let out = self.host.netns().exec(&["ip", "-4", "route", "show", dst]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn vtep_mac(&self) -> String {
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

pub fn annotation(node: &Value, key: &str) -> String {
    node["metadata"]["annotations"][format!("{PREFIX}{key}")]
        .as_str()
        .unwrap_or_else(|| panic!("annotation {key} missing: {}", node["metadata"]))
        .to_owned()
}

impl KubeFlanneld {
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits until `needle` appears `n` times in the log; returns how often it did.
    pub fn wait_for(&self, needle: &str, n: usize) -> usize {
        assert!(
            eventually(Duration::from_secs(60), || self.count(needle) >= n),
            "{} never logged {needle:?} {n} time(s):\n{}",
            self.name,
            self.log()
        );
        self.count(needle)
    }

    pub fn flannel_annotations(&self, api: &KubeApi) -> Value {
        let node = api.node(&self.name).unwrap();
        let mut ann = node["metadata"]["annotations"].as_object().unwrap().clone();
        ann.retain(|k, _| k.starts_with(PREFIX));
        Value::Object(ann)
    }
}

//! NetworkPolicy in the bed: a kube-mode flanneld enforcing policy on a host ([`KubeNode`]),
//! and the API objects of Kubernetes' e2e netpol model (`test/e2e/network/netpol/model.go`):
//! Namespaces labelled as the API server labels them, Pods whose containers serve e2e's
//! ports under e2e's names (`serve-80-tcp`, ...), as the kubelet reports them once running.
//! Used by the netpol tests and by `bench_netpol`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cni::{kube_flannel_conflist, our_bin_dir};
use crate::kubeapi::KubeApi;
use crate::reach::in_netns;
use crate::topology::Host;

/// Where a [`KubeNode`] serves `/healthz`, `/metrics` and `/status` (inside its host).
pub const HEALTHZ_PORT: u16 = 18471;

/// The e2e model's container for one port and protocol.
fn container(port: u16, proto: &str) -> Value {
    let p = proto.to_lowercase();
    json!({
        "name": format!("cont-{port}-{p}"),
        "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "ports": [{"containerPort": port, "name": format!("serve-{port}-{p}"), "protocol": proto}]
    })
}

/// A running Pod of the e2e model on `node` with addresses `ips` (the first is `podIP`).
pub fn pod_object(ns: &str, name: &str, node: &str, ips: &[IpAddr], labels: Value) -> Value {
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let first = ips.first().map(ToString::to_string);
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"nodeName": node, "containers": [
            container(80, "TCP"), container(81, "TCP"), container(80, "UDP"), container(81, "UDP")
        ]},
        "status": {"phase": "Running", "podIP": first, "podIPs": pod_ips,
                   "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// A Namespace with the label the API server sets (`kubernetes.io/metadata.name`), e2e's
/// `ns=<name>`, and `extra`.
pub fn namespace_object(ns: &str, extra: &[(&str, &str)]) -> Value {
    let mut labels = json!({"kubernetes.io/metadata.name": ns, "ns": ns});
    for (k, v) in extra {
        labels[*k] = json!(v);
    }
    json!({"metadata": {"name": ns, "labels": labels}, "spec": {"finalizers": ["kubernetes"]},
           "status": {"phase": "Active"}})
}

/// A stored object's resourceVersion as a number.
pub fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One kube-mode flanneld on a host (`NODE_NAME` = `name`), its files in a temp dir.
pub struct KubeNode {
    pub name: String,
    pub host: Host,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: usize,
    args: Vec<String>,
}

impl KubeNode {
    /// Writes the kubeconfig for `api` and `net_conf`, and starts flanneld with `args`
    /// beside the essentials (`--kube-subnet-mgr`, `--iface=eth0`, `--ip-masq`, the health
    /// endpoint on 127.0.0.1, a one-second resync).
    pub fn start(
        api: &KubeApi,
        host: Host,
        name: &str,
        net_conf: &Value,
        args: &[&str],
    ) -> io::Result<KubeNode> {
        let dir = tempfile::Builder::new().prefix("fr-kubenode-").tempdir()?;
        api.write_kubeconfig(&dir.path().join("kubeconfig"))?;
        std::fs::write(dir.path().join("net-conf.json"), net_conf.to_string())?;
        let mut node = KubeNode {
            name: name.to_owned(),
            host,
            dir,
            child: None,
            starts: 0,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        node.spawn()?;
        Ok(node)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.path("flanneld.log"))?;
        let mut cmd = self.host.netns().command(our_bin_dir().join("flanneld"));
        cmd.args([
            "--kube-subnet-mgr".to_owned(),
            format!("--kubeconfig-file={}", self.path("kubeconfig").display()),
            format!("--net-config-path={}", self.path("net-conf.json").display()),
            format!("--subnet-file={}", self.path("subnet.env").display()),
            "--iface=eth0".to_owned(),
            "--ip-masq".to_owned(),
            "--healthz-ip=127.0.0.1".to_owned(),
            format!("--healthz-port={HEALTHZ_PORT}"),
            "--iptables-resync=1".to_owned(),
        ])
        .args(&self.args)
        .env("NODE_NAME", &self.name)
        // Each node its own WireGuard key, as on separate machines (the default path is
        // shared by every host of the bed).
        .env("WIREGUARD_KEY_FILE", self.path("wg.key"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        self.child = Some(cmd.spawn()?);
        self.starts += 1;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("flanneld.log")).unwrap_or_default()
    }

    /// Waits until this run wrote subnet.env (with `--network-policy`, only after the first
    /// policy sync); the reason when it exits or does not get there.
    pub fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while self.log().matches("Wrote subnet file").count() < self.starts {
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "flanneld on {} exited ({s}):\n{}",
                    self.name,
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "flanneld on {} not ready within {within:?}:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGTERM and wait; `None` if it ignored it (it is killed then).
    pub fn stop(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let status = crate::cmd::terminate(&mut child, Duration::from_secs(10))?;
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(status)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it (if running) and starts it again, with `args` in place of the extra flags
    /// when given.
    pub fn restart(&mut self, args: Option<&[&str]>) -> io::Result<()> {
        self.stop()?;
        if let Some(a) = args {
            self.args = a.iter().map(|s| (*s).to_owned()).collect();
        }
        self.spawn()
    }

    pub fn conflist(&self) -> String {
        kube_flannel_conflist("0.3.1", &self.path("subnet.env"), self.dir.path()).to_string()
    }

    /// `GET path` from the daemon, over a connection made inside the host's namespace.
    pub fn http_get(&self, path: &str) -> io::Result<String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: flanneld\r\nConnection: close\r\n\r\n");
        in_netns(self.host.netns().path(), move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", HEALTHZ_PORT))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(request.as_bytes())?;
            let mut response = String::new();
            s.read_to_string(&mut response)?;
            Ok(response)
        })?
    }

    /// `/status` (the JSON body), when the daemon answers.
    pub fn status(&self) -> Option<Value> {
        let response = self.http_get("/status").ok()?;
        let body = response.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    }

    /// The `network_policy` part of `/status`.
    pub fn netpol_status(&self) -> Option<Value> {
        self.status()
            .map(|s| s["network_policy"].clone())
            .filter(|v| !v.is_null())
    }

    /// The highest resourceVersion this node has enforced (0 before the first sync).
    pub fn enforced_version(&self) -> u64 {
        self.netpol_status()
            .and_then(|s| s["resource_version"].as_u64())
            .unwrap_or(0)
    }

    /// The value of one sample of `/metrics` (`name{labels}` exactly as printed).
    pub fn metric(&self, sample: &str) -> Option<f64> {
        self.http_get("/metrics").ok()?.lines().find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// `nft list table inet flannel-netpol` on the host ("" when there is none).
    pub fn nft_table(&self) -> String {
        String::from_utf8_lossy(
            &self
                .host
                .netns()
                .exec(&["nft", "list", "table", "inet", "flannel-netpol"])
                .stdout,
        )
        .into_owned()
    }
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        self.kill();
    }
}

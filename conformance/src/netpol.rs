//! NetworkPolicy in the bed: a kube-mode flanneld enforcing policy on a host ([`KubeNode`]),
//! and the API objects of Kubernetes' e2e netpol model (`test/e2e/network/netpol/model.go`):
//! Namespaces labelled as the API server labels them, Pods whose containers serve e2e's
//! ports under e2e's names (`serve-80-tcp`, ...), as the kubelet reports them once running.
//! Used by the netpol tests and by `bench_netpol`.

use std::net::IpAddr;

use serde_json::{json, Value};

pub use crate::flanneld::HEALTHZ_PORT;
use crate::flanneld::{Flanneld, FlanneldError};
use crate::kubeapi::KubeApi;
use crate::topology::Host;

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

/// One kube-mode flanneld on a host enforcing policy: the bed's [`Flanneld`] (`NODE_NAME` =
/// `name`) with its health endpoint on and a one-second resync, plus what policy tests read.
pub struct KubeNode {
    flanneld: Flanneld,
}

/// Flags every [`KubeNode`] run has before the test's own.
const NODE_ARGS: [&str; 1] = ["--iptables-resync=1"];

impl KubeNode {
    /// Writes the kubeconfig for `api` and `net_conf`, and starts flanneld with `args`
    /// beside the essentials (see [`Flanneld::kube`], [`Flanneld::health`], a one-second
    /// resync).
    pub fn start(
        api: &KubeApi,
        host: Host,
        name: &str,
        net_conf: &Value,
        args: &[&str],
    ) -> Result<KubeNode, FlanneldError> {
        let flanneld = Flanneld::kube(host, api, name, net_conf)?;
        let mut node = KubeNode { flanneld };
        node.flanneld.set_args(&Self::args(args));
        node.flanneld.spawn()?;
        Ok(node)
    }

    fn args(extra: &[&str]) -> Vec<String> {
        let health = Flanneld::<Host>::health_args();
        health
            .into_iter()
            .chain(NODE_ARGS.iter().chain(extra).map(|a| (*a).to_owned()))
            .collect()
    }

    /// Stops it (if running) and starts it again, with `args` in place of the test's flags
    /// when given.
    pub fn restart(&mut self, args: Option<&[&str]>) -> Result<(), FlanneldError> {
        if let Some(a) = args {
            self.flanneld.set_args(&Self::args(a));
        }
        self.flanneld.restart()
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

impl std::ops::Deref for KubeNode {
    type Target = Flanneld;
    fn deref(&self) -> &Flanneld {
        &self.flanneld
    }
}

impl std::ops::DerefMut for KubeNode {
    fn deref_mut(&mut self) -> &mut Flanneld {
        &mut self.flanneld
    }
}

//! Kube mode on the test underlay: the test API server (crate::kubeapi) listening on
//! the router, each host a Node with a podCIDR, our flanneld with `--kube-subnet-mgr` on it.

use std::net::IpAddr;
use std::time::Duration;

use crate::kubeapi::{fixture_node, KubeApi};
use crate::{Host, Segment, Underlay};
use serde_json::{json, Value};

use super::{attach_pod, eventually, our_driver, Flanneld, Pod};

pub const NETWORK: &str = "10.244.0.0/16";
/// The annotation prefix (`--kube-annotation-prefix`'s default).
pub const PREFIX: &str = "flannel.alpha.coreos.com/";

/// The underlay with the API server on the router's segment-A address.
pub struct KubeCluster {
    pub underlay: Underlay,
    pub api: KubeApi,
}

impl KubeCluster {
    #[allow(clippy::new_without_default)] // makes namespaces, dirs, servers: not a default value
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

/// One kube-mode flanneld: the bed's harness in kube mode.
pub type KubeFlanneld = Flanneld;

/// Starts flanneld as node `name` of `cluster` on `host`, vxlan over [`NETWORK`].
pub fn start_kube(cluster: &KubeCluster, host: Host, name: &str) -> KubeFlanneld {
    start_kube_through(cluster, host, name, &[])
}

/// [`start_kube`] through a wrapper program (e.g. `setpriv`).
pub fn start_kube_through(
    cluster: &KubeCluster,
    host: Host,
    name: &str,
    wrapper: &[&str],
) -> KubeFlanneld {
    let net_conf = json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}});
    start_kube_with(cluster, host, name, wrapper, &net_conf, &[])
}

/// With a net-conf and extra flags of the test's choosing.
pub fn start_kube_with(
    cluster: &KubeCluster,
    host: Host,
    name: &str,
    wrapper: &[&str],
    net_conf: &Value,
    extra: &[&str],
) -> KubeFlanneld {
    Flanneld::kube(host, &cluster.api, name, net_conf)
        .unwrap()
        .through(wrapper)
        .args(extra)
        .start()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A pod on `node` attached through libcni with our plugins.
pub fn add_kube_pod(node: &KubeFlanneld, id: &str) -> Pod {
    attach_pod(&our_driver(), &node.conflist(), &node.host, id)
}

/// The MAC address of the node's `flannel.1`.
pub fn vtep_mac(node: &KubeFlanneld) -> String {
    let out = node
        .host
        .netns()
        .exec_ok(&["ip", "-j", "link", "show", "flannel.1"])
        .unwrap();
    let links: Value = serde_json::from_str(&out).unwrap();
    links[0]["address"].as_str().unwrap().to_owned()
}

pub fn annotation(node: &Value, key: &str) -> String {
    node["metadata"]["annotations"][format!("{PREFIX}{key}")]
        .as_str()
        .unwrap_or_else(|| panic!("annotation {key} missing: {}", node["metadata"]))
        .to_owned()
}

/// Waits until `needle` appears `n` times in the node's log; returns how often it did.
pub fn wait_logged(node: &KubeFlanneld, needle: &str, n: usize) -> usize {
    assert!(
        eventually(Duration::from_secs(60), || node.count(needle) >= n),
        "{} never logged {needle:?} {n} time(s):\n{}",
        node.name,
        node.log()
    );
    node.count(needle)
}

/// The node's annotations under [`PREFIX`].
pub fn flannel_annotations(node: &KubeFlanneld, api: &KubeApi) -> Value {
    let obj = api.node(&node.name).unwrap();
    let mut ann = obj["metadata"]["annotations"].as_object().unwrap().clone();
    ann.retain(|k, _| k.starts_with(PREFIX));
    Value::Object(ann)
}

//! The policy inputs flanneld keeps from the API: every Namespace's labels, every Pod's labels,
//! addresses, node, container ports and whether it uses the host network, and every
//! NetworkPolicy. The watch layer (`watch.rs`) fills it; the compiler reads it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::policy::{Policy, PolicyKey, Protocol};
use super::selector::Labels;

/// The label the API server puts on every Namespace (immutable, since Kubernetes 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A named container port, as NetworkPolicy's named ports resolve it (by name and protocol).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// What policy enforcement needs of a Pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub labels: Labels,
    /// `spec.nodeName`; empty while unscheduled.
    pub node: String,
    /// `status.podIPs` (or `status.podIP`).
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
    pub host_network: bool,
    /// Phase `Succeeded` or `Failed`: its address may already belong to another pod.
    pub finished: bool,
}

impl PodInfo {
    /// A running pod on `node` with `labels`, addresses and named container ports.
    pub fn running(
        node: &str,
        labels: &[(&str, &str)],
        ips: &[IpAddr],
        ports: &[(&str, Protocol, u16)],
    ) -> PodInfo {
        PodInfo {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            node: node.to_owned(),
            ips: ips.to_vec(),
            ports: ports
                .iter()
                .map(|&(name, protocol, port)| NamedPort {
                    name: name.to_owned(),
                    protocol,
                    port,
                })
                .collect(),
            host_network: false,
            finished: false,
        }
    }

    /// Whether policies see this pod at all: never with the host network (its traffic is the
    /// node's), nor without an address, nor once it has finished.
    pub fn takes_part(&self) -> bool {
        !self.host_network && !self.ips.is_empty() && !self.finished
    }

    /// The port a named port resolves to on this pod.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Namespace name → its labels as stored.
    pub namespaces: BTreeMap<String, Labels>,
    /// Namespace → pod name → pod.
    pub pods: BTreeMap<String, BTreeMap<String, PodInfo>>,
    pub policies: BTreeMap<PolicyKey, Policy>,
}

impl Cluster {
    /// A namespace's labels with `kubernetes.io/metadata.name` always present: selectors may
    /// rely on it, and a Namespace not listed yet (or from a server that does not set the
    /// label) is still selectable by name.
    pub fn namespace_labels(&self, namespace: &str) -> Labels {
        let mut labels = self.namespaces.get(namespace).cloned().unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned());
        labels
    }

    pub fn put_pod(&mut self, namespace: &str, name: &str, pod: PodInfo) {
        self.pods
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned(), pod);
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        if let Some(ns) = self.pods.get_mut(namespace) {
            ns.remove(name);
            if ns.is_empty() {
                self.pods.remove(namespace);
            }
        }
    }

    pub fn pod_count(&self) -> usize {
        self.pods.values().map(BTreeMap::len).sum()
    }
}

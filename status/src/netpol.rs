//! The `network_policy` part of `/status` (and of `flannelctl status`): whether enforcement is
//! in sync, what it holds, the policies that fail closed and why, and for each of this node's
//! pods the policies that select it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetpolReport {
    /// The first complete listing of Namespaces, Pods and NetworkPolicies is enforced.
    pub synced: bool,
    /// NetworkPolicies in the cluster.
    pub policies: usize,
    /// Pods in the cluster flanneld knows of (any node).
    pub pods: usize,
    /// Rules and set elements in the `inet flannel-netpol` table.
    pub rules: usize,
    pub set_elements: usize,
    /// When the table was last brought up to date (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
    /// The highest resourceVersion of a Namespace, Pod or NetworkPolicy change enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<u64>,
    /// Policies flanneld cannot understand; the pods they select fail closed.
    pub failed_policies: Vec<FailedPolicy>,
    /// This node's pods that take part in policy, with the policies selecting them.
    pub local_pods: Vec<PodPolicies>,
    /// The last failure to write the table, until a write succeeds (API outages are logged
    /// and counted by the list + watch loops; the last rules stay meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedPolicy {
    /// `namespace/name`.
    pub policy: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodPolicies {
    /// `namespace/name`.
    pub pod: String,
    pub ips: Vec<IpAddr>,
    /// Policies isolating the pod for ingress (`namespace/name`); empty: not isolated.
    pub ingress: Vec<String>,
    pub egress: Vec<String>,
}

//! Namespaces, Pods and NetworkPolicies as read from the API server, reduced to what policy
//! enforcement uses (anchors: kube-rs keeps whole listings twice while it relists, and Pod
//! objects carry managed fields, annotations and status flanneld never reads).
//!
//! Metadata keeps name, namespace, labels, uid and resourceVersion; a Pod keeps its node,
//! host-network flag, container ports, phase and addresses; a NetworkPolicy keeps its `spec`
//! as raw JSON, parsed by [`super::policy`] so that one malformed policy becomes a policy that
//! fails closed instead of a list that cannot be decoded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ClusterResourceScope, NamespaceResourceScope, Resource};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::cluster::{NamedPort, PodInfo};
use super::policy::{Policy, PolicyKey, Protocol};

#[derive(Deserialize)]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    uid: Option<String>,
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = SlimMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        labels: m.labels,
        uid: m.uid,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

macro_rules! resource {
    ($t:ty, $scope:ty, $kind:literal, $group:literal, $plural:literal) => {
        impl Resource for $t {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                $group.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                "v1".into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// `v1/Namespace`: its labels.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyNamespace {
    #[serde(deserialize_with = "slim_meta", default)]
    pub metadata: ObjectMeta,
}
resource!(
    PolicyNamespace,
    ClusterResourceScope,
    "Namespace",
    "",
    "namespaces"
);

#[derive(Debug, Clone, Default, Deserialize)]
struct ContainerPort {
    name: Option<String>,
    #[serde(rename = "containerPort")]
    container_port: Option<i64>,
    protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Container {
    ports: Option<Vec<ContainerPort>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PodSpec {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
    #[serde(rename = "hostNetwork")]
    host_network: Option<bool>,
    containers: Option<Vec<Container>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PodIp {
    ip: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PodStatus {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pod_ips: Option<Vec<PodIp>>,
}

/// `v1/Pod`, reduced.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyPod {
    #[serde(deserialize_with = "slim_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<PodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}
resource!(PolicyPod, NamespaceResourceScope, "Pod", "", "pods");

/// `networking.k8s.io/v1` NetworkPolicy with its spec as JSON.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyObject {
    #[serde(deserialize_with = "slim_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Value,
}
resource!(
    PolicyObject,
    NamespaceResourceScope,
    "NetworkPolicy",
    "networking.k8s.io",
    "networkpolicies"
);

/// `(namespace, name)` of an object; empty strings when the server sent none.
pub fn key_of(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The resourceVersion as a number, where it is one (etcd revisions are); only used to say
/// how far enforcement has got, never to order anything.
pub fn resource_version(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

impl PolicyNamespace {
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.metadata.labels.clone().unwrap_or_default()
    }
}

impl PolicyPod {
    pub fn info(&self) -> PodInfo {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let mut ips: Vec<IpAddr> = status
            .pod_ips
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.ip.as_deref()?.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                status
                    .pod_ip
                    .as_deref()
                    .and_then(|s| s.parse::<IpAddr>().ok()),
            );
        }
        let ports = spec
            .containers
            .unwrap_or_default()
            .into_iter()
            .flat_map(|c| c.ports.unwrap_or_default())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.filter(|n| !n.is_empty())?,
                    protocol: Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?,
                    port: u16::try_from(p.container_port?).ok().filter(|n| *n > 0)?,
                })
            })
            .collect();
        PodInfo {
            labels: self.metadata.labels.clone().unwrap_or_default(),
            node: spec.node_name.unwrap_or_default(),
            ips,
            ports,
            host_network: spec.host_network.unwrap_or(false),
            finished: matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")),
        }
    }
}

impl PolicyObject {
    pub fn key(&self) -> PolicyKey {
        let (namespace, name) = key_of(&self.metadata);
        PolicyKey { namespace, name }
    }

    pub fn policy(&self) -> Policy {
        Policy::parse(self.key(), &self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_keeps_what_policy_needs() {
        let pod: PolicyPod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "x", "labels": {"pod": "a"},
                "resourceVersion": "42", "annotations": {"big": "x"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "c80", "ports": [{"name": "serve-80-tcp", "containerPort": 80},
                                          {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
                                          {"containerPort": 9000}]},
                {"name": "sidecar"}]},
            "status": {"phase": "Running", "podIP": "10.244.1.5",
                "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:1::5"}]}
        }))
        .unwrap();
        assert!(pod.metadata.annotations.is_none() && pod.metadata.managed_fields.is_none());
        assert_eq!(resource_version(&pod.metadata), Some(42));
        let info = pod.info();
        assert_eq!(info.node, "n1");
        assert_eq!(
            info.ips,
            [
                "10.244.1.5".parse::<IpAddr>().unwrap(),
                "fd00:1::5".parse().unwrap()
            ]
        );
        assert_eq!(info.named_port("serve-80-udp", Protocol::Udp), Some(80));
        assert_eq!(info.named_port("serve-80-udp", Protocol::Tcp), None);
        assert_eq!(info.ports.len(), 2, "unnamed ports are not named ports");
        assert!(info.takes_part());
    }

    #[test]
    fn pods_without_address_on_the_host_network_or_finished_take_no_part() {
        let pending: PolicyPod = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}}),
        )
        .unwrap();
        assert!(!pending.info().takes_part());
        let host: PolicyPod = serde_json::from_value(json!({"metadata": {"name": "h"},
            "spec": {"hostNetwork": true}, "status": {"podIP": "192.168.1.1"}}))
        .unwrap();
        assert!(!host.info().takes_part());
        let done: PolicyPod = serde_json::from_value(json!({"metadata": {"name": "d"},
            "status": {"phase": "Succeeded", "podIP": "10.244.1.9"}}))
        .unwrap();
        assert!(!done.info().takes_part());
        // A watch bookmark is only metadata.
        let bookmark: PolicyPod = serde_json::from_value(
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}}),
        )
        .unwrap();
        assert_eq!(resource_version(&bookmark.metadata), Some(7));
    }

    #[test]
    fn a_policy_spec_that_does_not_parse_still_decodes() {
        let obj: PolicyObject = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "x"},
            "spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": 7}]}}
        }))
        .unwrap();
        let p = obj.policy();
        assert_eq!(p.key.to_string(), "x/p");
        assert!(p.error.is_some());
    }
}

//! A Node as flannel needs it: metadata and the pod CIDRs. Real Node objects carry
//! `status.images` and friends (tens of kilobytes each); decoding only these fields keeps a
//! relist of a large cluster cheap.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ClusterResourceScope, Resource};
use serde::Deserialize;
use serde_json::Value;

use super::annotations::Annotations;
use crate::subnet::{BackendData, Lease, LeaseAttrs};

/// Leases have no expiry in kube mode; upstream stamps them a day ahead and never looks again.
const NOMINAL_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeSpec {
    #[serde(rename = "podCIDR", default)]
    pub pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs", default)]
    pub pod_cidrs: Option<Vec<String>>,
}

/// `v1/Node`, reduced to what flannel reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FlannelNode {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeSpec,
}

impl Resource for FlannelNode {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Node".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "nodes".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A node's pod CIDRs split by family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodCidrs {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

/// Why a node's pod CIDRs cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Neither field is set (the controller manager has not allocated one yet).
    NotAssigned,
    /// More than two CIDRs.
    TooMany,
    Invalid(String),
}

impl FlannelNode {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// `metadata.creationTimestamp` in seconds (0 when absent): the order in which two Nodes
    /// holding the same pod CIDR are ranked.
    pub fn created(&self) -> u64 {
        self.metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| u64::try_from(t.0.as_second()).ok())
            .unwrap_or(0)
    }

    pub fn annotations(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.metadata.annotations.as_ref().unwrap_or(&EMPTY)
    }

    /// `spec.podCIDRs` (one or two entries) when set, else `spec.podCIDR`. Host bits are
    /// dropped, as Go's `ParseCIDR` returns the network.
    pub fn pod_cidrs(&self) -> Result<PodCidrs, CidrError> {
        let list: Vec<&str> = match &self.spec.pod_cidrs {
            Some(l) if !l.is_empty() => l.iter().map(String::as_str).collect(),
            _ => match self.spec.pod_cidr.as_deref() {
                None | Some("") => return Err(CidrError::NotAssigned),
                Some(one) => vec![one],
            },
        };
        if list.len() > 2 {
            return Err(CidrError::TooMany);
        }
        let mut out = PodCidrs::default();
        for text in list {
            match text.parse::<IpNet>() {
                Ok(IpNet::V4(n)) => out.v4 = Some(n.trunc()),
                Ok(IpNet::V6(n)) => out.v6 = Some(n.trunc()),
                Err(_) => return Err(CidrError::Invalid(text.to_owned())),
            }
        }
        Ok(out)
    }

    /// The lease a peer node stands for (upstream `nodeToLease`): a parseable `public-ip`
    /// (and `public-ipv6` with IPv6) and a pod CIDR of every enabled family are required.
    pub fn to_lease(&self, a: &Annotations, ipv4: bool, ipv6: bool) -> Result<Lease, String> {
        let ann = self.annotations();
        let cidrs = self
            .pod_cidrs()
            .map_err(|e| format!("unusable pod CIDRs: {e:?}"))?;
        let data = |key: &str| -> Result<Option<Value>, String> {
            match ann.get(key) {
                None => Ok(None),
                Some(text) => serde_json::from_str::<Value>(text)
                    .map(|v| Some(v).filter(|v| !v.is_null()))
                    .map_err(|e| format!("{key} is not JSON: {e}")),
            }
        };
        let mut attrs = LeaseAttrs {
            public_ip: std::net::Ipv4Addr::UNSPECIFIED,
            public_ipv6: None,
            backend_type: ann.get(&a.backend_type).cloned().unwrap_or_default(),
            backend_data: None,
            backend_v6_data: None,
        };
        let mut subnet = Ipv4Net::default();
        if ipv4 {
            let ip = ann.get(&a.public_ip).map(String::as_str).unwrap_or("");
            attrs.public_ip = ip
                .parse()
                .map_err(|_| format!("invalid {} {ip:?}", a.public_ip))?;
            attrs.backend_data = data(&a.backend_data)?.map(BackendData::from);
            subnet = cidrs.v4.ok_or("Missing IPv4 address on n.Spec.PodCIDRs")?;
        }
        let mut ipv6_subnet = None;
        if ipv6 {
            let ip = ann.get(&a.public_ipv6).map(String::as_str).unwrap_or("");
            attrs.public_ipv6 = Some(
                ip.parse()
                    .map_err(|_| format!("invalid {} {ip:?}", a.public_ipv6))?,
            );
            attrs.backend_v6_data = data(&a.backend_v6_data)?.map(BackendData::from);
            ipv6_subnet = Some(cidrs.v6.ok_or("Missing IPv6 address on n.Spec.PodCIDRs")?);
        }
        Ok(Lease {
            enable_ipv4: ipv4,
            enable_ipv6: ipv6,
            subnet,
            ipv6_subnet,
            attrs,
            expiration: Some(SystemTime::now() + NOMINAL_TTL),
            created: self.created(),
        })
    }
}

/// Whether `cidr` lies inside `network` (upstream `containsCIDR`).
pub fn contains(network: IpNet, cidr: IpNet) -> bool {
    network.contains(&cidr)
        && matches!(
            (network.addr(), cidr.addr()),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: Value) -> FlannelNode {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_cidrs_prefers_the_list_and_masks_host_bits() {
        let n = node(
            json!({"metadata": {"name": "a"}, "spec": {"podCIDR": "10.244.1.0/24",
            "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::5/64"]}}),
        );
        assert_eq!(
            n.pod_cidrs().unwrap(),
            PodCidrs {
                v4: Some("10.244.1.0/24".parse().unwrap()),
                v6: Some("fd00:10:244:1::/64".parse().unwrap())
            }
        );
        let n = node(json!({"metadata": {"name": "a"}, "spec": {"podCIDR": "10.244.7.9/24"}}));
        assert_eq!(
            n.pod_cidrs().unwrap().v4,
            Some("10.244.7.0/24".parse().unwrap())
        );
        let n = node(json!({"metadata": {"name": "a"}, "spec": {}}));
        assert_eq!(n.pod_cidrs(), Err(CidrError::NotAssigned));
        let n = node(
            json!({"metadata": {"name": "a"}, "spec": {"podCIDRs": ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]}}),
        );
        assert_eq!(n.pod_cidrs(), Err(CidrError::TooMany));
    }

    #[test]
    fn peer_lease_needs_managed_annotations_and_matching_family() {
        let a = Annotations::new("flannel.alpha.coreos.com").unwrap();
        let n = node(json!({
            "metadata": {"name": "b", "annotations": {
                "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"12:c6:65:89:b4:e3\"}",
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/kube-subnet-manager": "true",
                "flannel.alpha.coreos.com/public-ip": "192.168.1.11"}},
            "spec": {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]},
            "status": {"images": [{"names": ["registry.k8s.io/pause:3.9"], "sizeBytes": 321520}]}
        }));
        let l = n.to_lease(&a, true, false).unwrap();
        assert_eq!(l.subnet, "10.244.2.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(l.attrs.public_ip.to_string(), "192.168.1.11");
        assert_eq!(l.attrs.backend_type, "vxlan");
        assert_eq!(l.attrs.backend_data.as_ref().unwrap().value()["VNI"], 1);
        assert!(n
            .to_lease(&a, true, true)
            .unwrap_err()
            .contains("public-ipv6"));

        let bare = node(json!({"metadata": {"name": "c"}, "spec": {"podCIDR": "10.244.3.0/24"}}));
        assert!(bare
            .to_lease(&a, true, false)
            .unwrap_err()
            .contains("public-ip"));
    }

    #[test]
    fn containment_is_per_family() {
        let net: IpNet = "10.244.0.0/16".parse().unwrap();
        assert!(contains(net, "10.244.3.0/24".parse().unwrap()));
        assert!(!contains(net, "10.245.3.0/24".parse().unwrap()));
        assert!(!contains(net, "10.0.0.0/8".parse().unwrap()));
    }
}

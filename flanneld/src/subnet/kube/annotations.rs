//! The node annotations flannel publishes and reads, named from `--kube-annotation-prefix`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use netops::netlink::MacAddr;
use serde_json::Value;

use super::KubeError;
use crate::subnet::{BackendData, LeaseAttrs};
use crate::subnet::{StoredMacs, VxlanLeaseData};

/// Full annotation keys for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotations {
    pub subnet_kube_managed: String,
    pub backend_data: String,
    pub backend_v6_data: String,
    pub backend_type: String,
    pub public_ip: String,
    pub public_ipv6: String,
    pub public_ip_overwrite: String,
    pub public_ipv6_overwrite: String,
    pub node_public_ip: String,
    pub node_public_ipv6: String,
}

/// Upstream checks the prefix with this expression through Go's `MatchString`, which is not
/// anchored at the start: only the tail has to look like `fqdn/` or `fqdn/name-`.
const PREFIX_PATTERN: &str = r"(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$";

impl Annotations {
    /// Validates and completes `prefix` as upstream does: at most one slash; none means a
    /// `/` is appended; a prefix ending in neither `/` nor `-` gets a `-`.
    pub fn new(prefix: &str) -> Result<Annotations, KubeError> {
        let mut p = prefix.to_owned();
        match p.matches('/').count() {
            0 => p.push('/'),
            1 => {}
            _ => return Err(KubeError::PrefixSlashes),
        }
        if !p.ends_with('/') && !p.ends_with('-') {
            p.push('-');
        }
        let re = regex::Regex::new(PREFIX_PATTERN).expect("constant pattern compiles");
        if !re.is_match(&p) {
            return Err(KubeError::PrefixFormat);
        }
        let key = |name: &str| format!("{p}{name}");
        Ok(Annotations {
            subnet_kube_managed: key("kube-subnet-manager"),
            backend_data: key("backend-data"),
            backend_v6_data: key("backend-v6-data"),
            backend_type: key("backend-type"),
            public_ip: key("public-ip"),
            public_ipv6: key("public-ipv6"),
            public_ip_overwrite: key("public-ip-overwrite"),
            public_ipv6_overwrite: key("public-ipv6-overwrite"),
            node_public_ip: key("node-public-ip"),
            node_public_ipv6: key("node-public-ipv6"),
        })
    }

    /// Whether flannel manages this node (others are ignored by the peer watch).
    pub fn is_managed(&self, annotations: &BTreeMap<String, String>) -> bool {
        annotations
            .get(&self.subnet_kube_managed)
            .map(String::as_str)
            == Some("true")
    }

    /// `node-public-ip(v6)`: addresses an operator pinned for this node. They replace
    /// `--public-ip(v6)` and so also decide the interface.
    pub fn stored_public_ips(
        &self,
        annotations: &BTreeMap<String, String>,
    ) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        let v4 = annotations.get(&self.node_public_ip).and_then(|s| {
            s.parse()
                .map_err(|_| log::warn!("ignoring unparsable {}: {s:?}", self.node_public_ip))
                .ok()
        });
        let v6 = annotations.get(&self.node_public_ipv6).and_then(|s| {
            s.parse()
                .map_err(|_| log::warn!("ignoring unparsable {}: {s:?}", self.node_public_ipv6))
                .ok()
        });
        (v4, v6)
    }

    /// The VTEP MACs a previous run published in `backend-data` / `backend-v6-data`.
    pub fn stored_macs(&self, annotations: &BTreeMap<String, String>) -> StoredMacs {
        let mac = |key: &str| -> Option<MacAddr> {
            let text = annotations.get(key)?;
            let value: Value = serde_json::from_str(text).ok()?;
            VxlanLeaseData::from_json(&value).ok().map(|d| d.vtep_mac)
        };
        StoredMacs {
            v4: mac(&self.backend_data),
            v6: mac(&self.backend_v6_data),
        }
    }

    /// What the annotations must say for `attrs`, and the attributes actually published
    /// (`public-ip-overwrite` replaces the public address peers see).
    ///
    /// Like upstream, vxlan without backend data (and so without a VTEP for that family)
    /// publishes neither data nor address for it, and v6 keys are only written when the node
    /// has an IPv6 public address.
    pub fn desired(
        &self,
        current: &BTreeMap<String, String>,
        attrs: &LeaseAttrs,
    ) -> (BTreeMap<String, String>, LeaseAttrs) {
        let mut want = BTreeMap::new();
        let mut published = attrs.clone();
        want.insert(self.backend_type.clone(), attrs.backend_type.clone());
        let vxlan = attrs.backend_type == "vxlan";
        if !vxlan || attrs.backend_data.is_some() {
            want.insert(self.backend_data.clone(), data_text(&attrs.backend_data));
            let ip = match overwrite(current, &self.public_ip_overwrite) {
                Some(ip) => {
                    log::info!(
                        "Overriding public ip with '{ip}' from node annotation '{}'",
                        self.public_ip_overwrite
                    );
                    published.public_ip = ip;
                    ip
                }
                None => attrs.public_ip,
            };
            want.insert(self.public_ip.clone(), ip.to_string());
        }
        if let Some(v6) = attrs.public_ipv6 {
            if !vxlan || attrs.backend_v6_data.is_some() {
                want.insert(
                    self.backend_v6_data.clone(),
                    data_text(&attrs.backend_v6_data),
                );
                let ip = match overwrite(current, &self.public_ipv6_overwrite) {
                    Some(ip) => {
                        published.public_ipv6 = Some(ip);
                        ip
                    }
                    None => v6,
                };
                want.insert(self.public_ipv6.clone(), ip.to_string());
            }
        }
        want.insert(self.subnet_kube_managed.clone(), "true".to_owned());
        (want, published)
    }
}

fn overwrite<T: std::str::FromStr>(current: &BTreeMap<String, String>, key: &str) -> Option<T> {
    let text = current.get(key).filter(|s| !s.is_empty())?;
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            log::warn!("ignoring unparsable {key}: {text:?}");
            None
        }
    }
}

/// Backend data as upstream writes it: Go's compact JSON, `null` when there is none
/// (host-gw).
pub fn data_text(data: &Option<BackendData>) -> String {
    match data {
        Some(v) => v.as_json().to_owned(),
        None => "null".to_owned(),
    }
}

/// The annotations of `want` whose value differs from `current` (what a patch must carry).
pub fn changed(
    current: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    want.iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn prefix_is_completed_and_validated_like_upstream() {
        let a = Annotations::new("flannel.alpha.coreos.com").unwrap();
        assert_eq!(a.backend_data, "flannel.alpha.coreos.com/backend-data");
        assert_eq!(
            a.public_ipv6_overwrite,
            "flannel.alpha.coreos.com/public-ipv6-overwrite"
        );
        let a = Annotations::new("example.com/team").unwrap();
        assert_eq!(a.public_ip, "example.com/team-public-ip");
        let a = Annotations::new("example.com/team-").unwrap();
        assert_eq!(a.backend_type, "example.com/team-backend-type");
        assert!(matches!(
            Annotations::new("a.b/c/d"),
            Err(KubeError::PrefixSlashes)
        ));
        for bad in ["nodomain", "example.com/Team", "example.com/te am"] {
            let err = Annotations::new(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*",
                "{bad}"
            );
        }
        // Only the tail is checked, as with Go's unanchored MatchString.
        assert!(Annotations::new("Example.com").is_ok());
    }

    fn vxlan_attrs() -> LeaseAttrs {
        LeaseAttrs {
            public_ip: "192.168.1.10".parse().unwrap(),
            public_ipv6: None,
            backend_type: "vxlan".into(),
            backend_data: Some(json!({"VNI": 1, "VtepMAC": "12:c6:65:89:b4:e3"}).into()),
            backend_v6_data: None,
        }
    }

    #[test]
    fn desired_annotations_have_upstreams_keys_and_value_shapes() {
        let a = Annotations::new("flannel.alpha.coreos.com").unwrap();
        let (want, published) = a.desired(&BTreeMap::new(), &vxlan_attrs());
        assert_eq!(
            want,
            map(&[
                (
                    "flannel.alpha.coreos.com/backend-data",
                    r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}"#
                ),
                ("flannel.alpha.coreos.com/backend-type", "vxlan"),
                ("flannel.alpha.coreos.com/kube-subnet-manager", "true"),
                ("flannel.alpha.coreos.com/public-ip", "192.168.1.10"),
            ])
        );
        assert_eq!(published, vxlan_attrs());

        let hostgw = LeaseAttrs {
            backend_type: "host-gw".into(),
            backend_data: None,
            ..vxlan_attrs()
        };
        let (want, _) = a.desired(&BTreeMap::new(), &hostgw);
        assert_eq!(want["flannel.alpha.coreos.com/backend-data"], "null");
    }

    #[test]
    fn overwrite_replaces_the_published_address() {
        let a = Annotations::new("flannel.alpha.coreos.com").unwrap();
        let current = map(&[(
            "flannel.alpha.coreos.com/public-ip-overwrite",
            "203.0.113.7",
        )]);
        let (want, published) = a.desired(&current, &vxlan_attrs());
        assert_eq!(want["flannel.alpha.coreos.com/public-ip"], "203.0.113.7");
        assert_eq!(
            published.public_ip,
            "203.0.113.7".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            changed(&current, &want).len(),
            4,
            "the overwrite annotation itself is left alone"
        );
    }

    #[test]
    fn dual_stack_writes_v6_keys() {
        let a = Annotations::new("flannel.alpha.coreos.com").unwrap();
        let attrs = LeaseAttrs {
            public_ipv6: Some("fd00::10".parse().unwrap()),
            backend_v6_data: Some(json!({"VNI": 1, "VtepMAC": "12:c6:65:89:b4:e4"}).into()),
            ..vxlan_attrs()
        };
        let (want, _) = a.desired(&BTreeMap::new(), &attrs);
        assert_eq!(want["flannel.alpha.coreos.com/public-ipv6"], "fd00::10");
        assert_eq!(
            want["flannel.alpha.coreos.com/backend-v6-data"],
            r#"{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e4"}"#
        );
        let macs = a.stored_macs(&want);
        assert_eq!(macs.v4.unwrap().to_string(), "12:c6:65:89:b4:e3");
        assert_eq!(macs.v6.unwrap().to_string(), "12:c6:65:89:b4:e4");
    }

    #[test]
    fn stored_public_ips_and_macs_tolerate_garbage() {
        let a = Annotations::new("flannel.alpha.coreos.com").unwrap();
        let node = map(&[
            ("flannel.alpha.coreos.com/node-public-ip", "10.0.0.9"),
            ("flannel.alpha.coreos.com/node-public-ipv6", "not-an-ip"),
            ("flannel.alpha.coreos.com/backend-data", "null"),
        ]);
        assert_eq!(
            a.stored_public_ips(&node),
            (Some("10.0.0.9".parse().unwrap()), None)
        );
        assert_eq!(a.stored_macs(&node), StoredMacs::default());
    }
}

//! The resource kinds the server knows: where each lives in the URL space, what its objects
//! and lists are called, and which of its lists a strategic merge patch merges by key.
//! Everything else in the server (storage, list paging, watches, faults) is the same for
//! every kind, so a kind is one entry here.

/// One served resource, e.g. `nodes` in the core group.
#[derive(Debug)]
pub struct Kind {
    /// The URL plural (`nodes`), also the name faults and recorded requests use.
    pub resource: &'static str,
    pub kind: &'static str,
    /// `v1` for the core group, `networking.k8s.io/v1` otherwise.
    pub api_version: &'static str,
    pub namespaced: bool,
    /// Whether writes through the main resource leave `status` alone and writes through
    /// `/status` touch only `status` (the API server's status strategy).
    pub status_subresource: bool,
    /// Lists a strategic merge patch merges item by item (`patchMergeKey` in the API types),
    /// as paths from the object root and the key field.
    pub merge_keys: &'static [(&'static [&'static str], &'static str)],
}

impl Kind {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub fn prefix(&self) -> String {
        if self.api_version.contains('/') {
            format!("/apis/{}", self.api_version)
        } else {
            format!("/api/{}", self.api_version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const CONTAINER_KEYS: &[(&[&str], &str)] = &[
    (&["spec", "containers"], "name"),
    (&["spec", "initContainers"], "name"),
    (&["spec", "volumes"], "name"),
    (&["status", "conditions"], "type"),
    (&["status", "podIPs"], "ip"),
];

/// Every kind the server serves. Nodes and Pods are what flanneld's subnet manager reads;
/// Namespaces and NetworkPolicies are there for list + watch of policy inputs.
pub const KINDS: &[Kind] = &[
    Kind {
        resource: "nodes",
        kind: "Node",
        api_version: "v1",
        namespaced: false,
        status_subresource: true,
        merge_keys: &[
            (&["status", "conditions"], "type"),
            (&["status", "addresses"], "type"),
            (&["spec", "taints"], "key"),
        ],
    },
    Kind {
        resource: "pods",
        kind: "Pod",
        api_version: "v1",
        namespaced: true,
        status_subresource: true,
        merge_keys: CONTAINER_KEYS,
    },
    Kind {
        resource: "namespaces",
        kind: "Namespace",
        api_version: "v1",
        namespaced: false,
        status_subresource: true,
        merge_keys: &[(&["status", "conditions"], "type")],
    },
    Kind {
        resource: "networkpolicies",
        kind: "NetworkPolicy",
        api_version: "networking.k8s.io/v1",
        namespaced: true,
        status_subresource: false,
        merge_keys: &[],
    },
];

pub fn by_resource(resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.resource == resource)
}

/// What a request path names: a collection, one object, or one object's subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: &'static Kind,
    /// `None`: across all namespaces (or a cluster-scoped kind).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        self.resource == other.resource
    }
}
impl Eq for Kind {}

/// Parses `/api/v1/nodes/n1/status`, `/api/v1/namespaces/x/pods`,
/// `/apis/networking.k8s.io/v1/networkpolicies` and the like; `None` for paths the server
/// does not serve.
pub fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segs.as_slice() {
        ["api", version, rest @ ..] => (version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (api_version, rest) = rest;
    let find = |resource: &str| by_resource(resource).filter(|k| k.api_version == api_version);
    let owned = |s: &&str| s.to_string();
    match rest {
        // A namespace's own subresources look like a namespaced collection; the real
        // server tells them apart the same way.
        ["namespaces", name, sub @ ("status" | "finalize")] => Some(Target {
            kind: find("namespaces")?,
            namespace: None,
            name: Some(name.to_string()),
            subresource: Some(sub.to_string()),
        }),
        ["namespaces", ns, resource, tail @ ..] if tail.len() <= 2 => {
            let kind = find(resource).filter(|k| k.namespaced)?;
            Some(Target {
                kind,
                namespace: Some(ns.to_string()),
                name: tail.first().map(owned),
                subresource: tail.get(1).map(owned),
            })
        }
        [resource, tail @ ..] if tail.len() <= 2 => {
            let kind = find(resource)?;
            // A namespaced kind is only served across namespaces as a collection.
            if kind.namespaced && !tail.is_empty() {
                return None;
            }
            Some(Target {
                kind,
                namespace: None,
                name: tail.first().map(owned),
                subresource: tail.get(1).map(owned),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collections_objects_and_subresources() {
        let t = parse_path("/api/v1/nodes/n1/status").unwrap();
        assert_eq!(
            (t.kind.resource, t.name.as_deref(), t.subresource.as_deref()),
            ("nodes", Some("n1"), Some("status"))
        );
        let t = parse_path("/api/v1/namespaces/x/pods").unwrap();
        assert_eq!(
            (t.kind.resource, t.namespace.as_deref()),
            ("pods", Some("x"))
        );
        assert!(t.name.is_none());
        let t = parse_path("/api/v1/namespaces/x/status").unwrap();
        assert_eq!(
            (t.kind.resource, t.name.as_deref()),
            ("namespaces", Some("x"))
        );
        let t = parse_path("/api/v1/namespaces/x").unwrap();
        assert_eq!(
            (t.kind.resource, t.name.as_deref()),
            ("namespaces", Some("x"))
        );
        let t = parse_path("/apis/networking.k8s.io/v1/namespaces/y/networkpolicies/p").unwrap();
        assert_eq!(t.kind.kind, "NetworkPolicy");
        assert!(parse_path("/api/v1/networkpolicies").is_none());
        assert!(parse_path("/api/v1/pods/p").is_none());
        assert!(parse_path("/api/v1/widgets").is_none());
    }
}

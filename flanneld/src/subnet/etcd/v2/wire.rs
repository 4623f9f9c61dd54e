//! etcd's v2 keys API on the wire: URL paths, form bodies, the JSON of nodes, events and
//! errors, and how a node becomes a [`Lease`].

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::subnet::{parse_subnet_key, AttrsError, Lease, LeaseAttrs};

/// etcd v2 error codes flanneld reacts to (etcd `error/error.go`).
pub mod code {
    /// "Key not found".
    pub const KEY_NOT_FOUND: u64 = 100;
    /// "Compare failed": a `prevValue`/`prevIndex` condition did not hold.
    pub const TEST_FAILED: u64 = 101;
    /// "Key already exists": a `prevExist=false` create lost.
    pub const NODE_EXIST: u64 = 105;
    /// "The event in requested index is outdated and cleared": the watch fell out of etcd's
    /// 1000-event history and has to start over from a listing.
    pub const EVENT_INDEX_CLEARED: u64 = 401;
}

/// The header carrying the store index a response was served at.
pub const INDEX_HEADER: &str = "x-etcd-index";

/// One key or directory.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Node {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub dir: bool,
    #[serde(default)]
    pub nodes: Vec<Node>,
    /// Seconds left; absent for keys without a TTL.
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(rename = "modifiedIndex", default)]
    pub modified_index: u64,
    #[serde(rename = "createdIndex", default)]
    pub created_index: u64,
}

/// A successful answer: what happened and to which node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Response {
    pub action: String,
    #[serde(default)]
    pub node: Option<Node>,
}

/// An error answer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ApiError {
    #[serde(rename = "errorCode")]
    pub code: u64,
    pub message: String,
    #[serde(default)]
    pub cause: String,
    /// The store index when the error happened; for a missing key, where a watch can start.
    #[serde(default)]
    pub index: u64,
}

/// What a watch event means for the lease set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key holds a (new) value.
    Written,
    /// The key is gone: deleted by someone, or its TTL ran out.
    Gone,
}

/// Classifies a v2 action; `None` for actions a watch never reports (`get`).
pub fn event_kind(action: &str) -> Option<EventKind> {
    match action {
        "set" | "create" | "update" | "compareAndSwap" => Some(EventKind::Written),
        "delete" | "compareAndDelete" | "expire" => Some(EventKind::Gone),
        _ => None,
    }
}

/// Characters left as they are in a key's URL path: etcd keys are `/`-separated, and the
/// unreserved set is safe everywhere. `&` of dual-stack keys, spaces and `%` are escaped.
const KEY_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `/v2/keys/<key>` with the key escaped, e.g. `/v2/keys/coreos.com/network/config`.
pub fn key_path(key: &str) -> String {
    let key = key.strip_prefix('/').unwrap_or(key);
    format!(
        "/v2/keys/{}",
        percent_encoding::utf8_percent_encode(key, KEY_PATH)
    )
}

/// A form body or query string from `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// When a node with `ttl` seconds left expires; never for a key without a TTL (a
/// reservation, which flannel ≤ v0.17 kept as it was).
pub fn expiration(ttl: Option<i64>) -> Option<SystemTime> {
    let secs = u64::try_from(ttl?).unwrap_or(0);
    Some(SystemTime::now() + Duration::from_secs(secs))
}

/// Why a node could not become a lease.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Not a lease key (upstream skips these with a warning).
    #[error("Ignoring bad subnet node {0}")]
    BadKey(String),
    #[error("{key}: {source}")]
    BadValue { key: String, source: AttrsError },
}

/// Decodes a lease record written by us or by flannel v0.10–v0.17.
pub fn lease_from_node(node: &Node) -> Result<Lease, NodeError> {
    let (subnet, ipv6_subnet) = match parse_subnet_key(&node.key) {
        Some(parsed) if !node.dir => parsed,
        _ => return Err(NodeError::BadKey(node.key.clone())),
    };
    let value = node.value.as_deref().unwrap_or_default();
    let attrs = LeaseAttrs::from_json(value.as_bytes()).map_err(|source| NodeError::BadValue {
        key: node.key.clone(),
        source,
    })?;
    Ok(Lease {
        // As with the v3 store, records always carry IPv4.
        enable_ipv4: true,
        enable_ipv6: ipv6_subnet.is_some(),
        subnet,
        ipv6_subnet,
        attrs,
        expiration: expiration(node.ttl),
        created: node.created_index,
    })
}

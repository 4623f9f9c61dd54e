//! Objects, resource versions and the Node event history watches replay from.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::patch::{merge_patch, strategic_merge_patch};

/// One Node change as a watch delivers it.
#[derive(Debug, Clone)]
pub struct NodeEvent {
    pub rv: u64,
    pub kind: &'static str,
    pub object: Value,
}

/// A request as the server received it, for tests to inspect.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: String,
    pub body: String,
}

/// Why a patch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    NotFound,
    UnsupportedType(String),
    BadBody(String),
}

#[derive(Debug, Default)]
pub struct Store {
    rv: u64,
    nodes: BTreeMap<String, Value>,
    pods: BTreeMap<(String, String), Value>,
    events: Vec<NodeEvent>,
    /// Watches from a resourceVersion below this get 410 Gone (history was compacted).
    oldest_watchable: u64,
    pub requests: Vec<Recorded>,
}

fn set_rv(obj: &mut Value, rv: u64) {
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
}

impl Store {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, kind: &'static str, object: Value) {
        self.events.push(NodeEvent {
            rv: self.rv,
            kind,
            object,
        });
    }

    /// Adds or replaces a Node, filling in the fields the API server owns.
    pub fn put_node(&mut self, mut node: Value) -> Value {
        let name = node["metadata"]["name"]
            .as_str()
            .expect("a node needs metadata.name")
            .to_owned();
        node["kind"] = json!("Node");
        node["apiVersion"] = json!("v1");
        let rv = self.bump();
        let existed = self.nodes.contains_key(&name);
        if node["metadata"]["uid"].is_null() {
            node["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
        }
        if node["metadata"]["creationTimestamp"].is_null() {
            node["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        set_rv(&mut node, rv);
        self.nodes.insert(name, node.clone());
        self.record(if existed { "MODIFIED" } else { "ADDED" }, node.clone());
        node
    }

    pub fn node(&self, name: &str) -> Option<&Value> {
        self.nodes.get(name)
    }

    pub fn delete_node(&mut self, name: &str) -> Option<Value> {
        let mut node = self.nodes.remove(name)?;
        let rv = self.bump();
        set_rv(&mut node, rv);
        self.record("DELETED", node.clone());
        Some(node)
    }

    pub fn put_pod(&mut self, mut pod: Value) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = pod["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_owned();
        let rv = self.bump();
        set_rv(&mut pod, rv);
        self.pods.insert((ns, name), pod);
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<&Value> {
        self.pods.get(&(ns.to_owned(), name.to_owned()))
    }

    pub fn node_list(&self) -> Value {
        json!({
            "kind": "NodeList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": self.nodes.values().collect::<Vec<_>>(),
        })
    }

    /// Events after `rv`, or `None` if that part of the history is gone.
    pub fn events_after(&self, rv: u64) -> Option<Vec<NodeEvent>> {
        if rv + 1 < self.oldest_watchable {
            return None;
        }
        Some(self.events.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Synthetic ADDED events for every Node (a watch without a resourceVersion).
    pub fn current_as_added(&self) -> Vec<NodeEvent> {
        self.nodes
            .values()
            .map(|n| NodeEvent {
                rv: self.rv,
                kind: "ADDED",
                object: n.clone(),
            })
            .collect()
    }

    /// Forgets the event history, as etcd compaction does: watches resuming from an older
    /// resourceVersion must relist.
    pub fn compact(&mut self) {
        self.events.clear();
        self.oldest_watchable = self.rv + 1;
    }

    /// Applies a PATCH. Through `status`, only metadata and status change; through the main
    /// resource, only metadata and spec (the API server's status strategy). A patch that
    /// changes nothing does not bump the resourceVersion.
    pub fn patch_node(
        &mut self,
        name: &str,
        status: bool,
        content_type: &str,
        body: &[u8],
    ) -> Result<Value, PatchError> {
        let old = self.nodes.get(name).ok_or(PatchError::NotFound)?.clone();
        let patch: Value =
            serde_json::from_slice(body).map_err(|e| PatchError::BadBody(e.to_string()))?;
        if !patch.is_object() {
            return Err(PatchError::BadBody("patch is not a JSON object".into()));
        }
        let mut new = old.clone();
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/strategic-merge-patch+json" => strategic_merge_patch(&mut new, &patch),
            "application/merge-patch+json" => merge_patch(&mut new, &patch),
            other => return Err(PatchError::UnsupportedType(other.to_owned())),
        }
        let kept = if status { "spec" } else { "status" };
        match old.get(kept) {
            Some(v) => new[kept] = v.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove(kept);
                }
            }
        }
        // Clients cannot rename or re-version an object through a patch.
        new["metadata"]["name"] = old["metadata"]["name"].clone();
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old {
            return Ok(old);
        }
        let rv = self.bump();
        set_rv(&mut new, rv);
        self.nodes.insert(name.to_owned(), new.clone());
        self.record("MODIFIED", new.clone());
        Ok(new)
    }
}

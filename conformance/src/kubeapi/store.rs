//! Objects of every kind, one resourceVersion counter (etcd's revision) and the event history
//! watches replay from and continued lists read from.
//!
//! The history is kept as etcd keeps it: a base state at the compaction point plus every
//! change after it. A watch or a list continuation from before the compaction point gets
//! 410 Gone; anything after it can be answered exactly as of its resourceVersion.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Value};

use super::kinds::Kind;
use super::patch::{merge_patch, strategic_merge_patch_with};

/// Where an object lives: its kind's resource, namespace (`""` when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

/// One change as a watch delivers it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub key: Key,
    pub kind: &'static str,
    pub object: Value,
}

/// Kept for callers that knew only Nodes.
pub type NodeEvent = Change;

/// A request as the server received it, for tests to inspect.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: String,
    pub body: String,
    /// The status the server answered with (200 for a watch that started).
    pub status: u16,
    pub at: std::time::Instant,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        super::http::query_param(&self.query, name)
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }
}

/// Why a write was refused; the server turns each into the API server's Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    NotFound,
    AlreadyExists,
    /// The write named a resourceVersion that is no longer current.
    Conflict,
    UnsupportedType(String),
    BadBody(String),
}

/// Kept for callers that knew only node patches.
pub type PatchError = WriteError;

/// A page of a list: the items, the list's resourceVersion and where the next page starts.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

/// A list continuation or watch from before the compaction point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

#[derive(Debug, Default)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// The state as of `compacted`; `objects` is `base` plus every change in `history`.
    base: BTreeMap<Key, Value>,
    compacted: u64,
    history: Vec<Change>,
    pub requests: Vec<Recorded>,
}

fn set_rv(obj: &mut Value, rv: u64) {
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
}

fn rv_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Through the main resource: everything but `status` (when the kind has a status
    /// subresource).
    Main,
    /// Through `/status`: metadata and `status` only.
    Status,
}

impl Store {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn record(&mut self, key: &Key, kind: &'static str, object: &Value) {
        self.history.push(Change {
            rv: self.rv,
            key: key.clone(),
            kind,
            object: object.clone(),
        });
    }

    /// Adds or replaces an object as a controller would, filling in the fields the API
    /// server owns; returns it as stored.
    pub fn put(&mut self, kind: &'static Kind, mut obj: Value) -> Value {
        let key = key_of(kind, &obj);
        obj["kind"] = json!(kind.kind);
        obj["apiVersion"] = json!(kind.api_version);
        self.rv += 1;
        let rv = self.rv;
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
        }
        if obj["metadata"]["creationTimestamp"].is_null() {
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        set_rv(&mut obj, rv);
        let existed = self.objects.insert(key.clone(), obj.clone()).is_some();
        self.record(&key, if existed { "MODIFIED" } else { "ADDED" }, &obj);
        obj
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn delete(&mut self, key: &Key, precondition: Option<&str>) -> Result<Value, WriteError> {
        let current = self.objects.get(key).ok_or(WriteError::NotFound)?;
        if precondition.is_some_and(|rv| Some(rv) != rv_of(current)) {
            return Err(WriteError::Conflict);
        }
        let mut obj = self.objects.remove(key).expect("present above");
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        self.record(key, "DELETED", &obj);
        Ok(obj)
    }

    /// Bumps the resourceVersion without touching any served object, as writes to other
    /// resources (Leases, Events) do on a real cluster all the time.
    pub fn unrelated_write(&mut self) {
        self.rv += 1;
    }

    /// Forgets the history up to now, as etcd compaction or a restarted API server's empty
    /// watch cache does: watches and list continuations from before now get 410 Gone.
    pub fn compact(&mut self) {
        self.base = self.objects.clone();
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Changes of `kind` (in `namespace`, if given) after `rv`.
    pub fn changes_after(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Change>, Expired> {
        if rv < self.compacted {
            return Err(Expired {
                requested: rv,
                oldest: self.compacted,
            });
        }
        Ok(self
            .history
            .iter()
            .filter(|c| c.rv > rv && matches(kind, namespace, &c.key))
            .cloned()
            .collect())
    }

    /// The current objects of `kind` as synthetic ADDED changes (a watch without a
    /// resourceVersion starts with them).
    pub fn current_as_added(&self, kind: &Kind, namespace: Option<&str>) -> Vec<Change> {
        self.objects
            .iter()
            .filter(|(k, _)| matches(kind, namespace, k))
            .map(|(k, o)| Change {
                rv: self.rv,
                key: k.clone(),
                kind: "ADDED",
                object: o.clone(),
            })
            .collect()
    }

    /// The objects as of `rv` (not older than the compaction point).
    fn state_at(&self, rv: u64) -> BTreeMap<Key, Value> {
        let mut state = self.base.clone();
        for c in self.history.iter().take_while(|c| c.rv <= rv) {
            match c.kind {
                "DELETED" => state.remove(&c.key),
                _ => state.insert(c.key.clone(), c.object.clone()),
            };
        }
        state
    }

    /// One page of a list, the first (`token` `None`) or a continuation, at most `limit`
    /// items (0: all). Continuations read the state as of the first page, as the real
    /// server's do, and expire with the compaction of that state.
    pub fn list(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        limit: usize,
        token: Option<&str>,
    ) -> Result<Page, ListError> {
        let (rv, start, snapshot) = match token {
            None => (self.rv, None, None),
            Some(t) => {
                let (rv, mut start) = decode_token(t).ok_or(ListError::BadContinue)?;
                start.resource = kind.resource;
                if rv < self.compacted {
                    return Err(ListError::Expired);
                }
                (rv, Some(start), Some(self.state_at(rv)))
            }
        };
        let objects = snapshot.as_ref().unwrap_or(&self.objects);
        let mut items = objects
            .iter()
            .filter(|(k, _)| matches(kind, namespace, k))
            .filter(|(k, _)| start.as_ref().is_none() || start.as_ref() < Some(*k));
        let mut page = Vec::new();
        let mut last = None;
        for (k, o) in items.by_ref() {
            if limit > 0 && page.len() == limit {
                // Put it back in the count below.
                return Ok(Page {
                    remaining: 1 + items.count(),
                    items: page,
                    rv,
                    continue_token: last.map(|l: &Key| encode_token(rv, l)),
                });
            }
            page.push(list_item(o));
            last = Some(k);
        }
        Ok(Page {
            items: page,
            rv,
            continue_token: None,
            remaining: 0,
        })
    }

    /// Replaces an object (PUT). A resourceVersion in the body must be the current one.
    pub fn replace(
        &mut self,
        kind: &'static Kind,
        key: &Key,
        part: Part,
        mut new: Value,
    ) -> Result<Value, WriteError> {
        let old = self.objects.get(key).ok_or(WriteError::NotFound)?.clone();
        if rv_of(&new).is_some_and(|rv| Some(rv) != rv_of(&old)) {
            return Err(WriteError::Conflict);
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        self.commit(kind, key, part, old, new)
    }

    /// Applies a PATCH. A resourceVersion in the patch is a precondition, as on the real
    /// server. A patch that changes nothing does not bump the resourceVersion.
    pub fn patch(
        &mut self,
        kind: &'static Kind,
        key: &Key,
        part: Part,
        content_type: &str,
        body: &[u8],
    ) -> Result<Value, WriteError> {
        let old = self.objects.get(key).ok_or(WriteError::NotFound)?.clone();
        let patch: Value =
            serde_json::from_slice(body).map_err(|e| WriteError::BadBody(e.to_string()))?;
        if !patch.is_object() {
            return Err(WriteError::BadBody("patch is not a JSON object".into()));
        }
        if rv_of(&patch).is_some_and(|rv| Some(rv) != rv_of(&old)) {
            return Err(WriteError::Conflict);
        }
        let mut new = old.clone();
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/strategic-merge-patch+json" => {
                strategic_merge_patch_with(&mut new, &patch, kind.merge_keys)
            }
            "application/merge-patch+json" => merge_patch(&mut new, &patch),
            other => return Err(WriteError::UnsupportedType(other.to_owned())),
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        self.commit(kind, key, part, old, new)
    }

    /// Keeps what `part` may not change, then stores `new` if anything changed.
    fn commit(
        &mut self,
        kind: &'static Kind,
        key: &Key,
        part: Part,
        old: Value,
        mut new: Value,
    ) -> Result<Value, WriteError> {
        if kind.status_subresource {
            let kept: &[&str] = match part {
                Part::Status => &["spec"],
                Part::Main => &["status"],
            };
            for field in kept {
                match old.get(*field) {
                    Some(v) => new[*field] = v.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove(*field);
                        }
                    }
                }
            }
        }
        // Clients cannot rename, move or re-type an object through a write.
        for field in ["name", "namespace", "uid", "creationTimestamp"] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        new["kind"] = json!(kind.kind);
        new["apiVersion"] = json!(kind.api_version);
        if new == old {
            return Ok(old);
        }
        self.rv += 1;
        set_rv(&mut new, self.rv);
        self.objects.insert(key.clone(), new.clone());
        self.record(key, "MODIFIED", &new);
        Ok(new)
    }
}

/// Why a list page could not be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListError {
    BadContinue,
    Expired,
}

pub fn key_of(kind: &'static Kind, obj: &Value) -> Key {
    let name = obj["metadata"]["name"]
        .as_str()
        .expect("an object needs metadata.name")
        .to_owned();
    let namespace = if kind.namespaced {
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned()
    } else {
        String::new()
    };
    Key {
        resource: kind.resource,
        namespace,
        name,
    }
}

fn matches(kind: &Kind, namespace: Option<&str>, key: &Key) -> bool {
    key.resource == kind.resource
        && (namespace.is_none() || namespace == Some(key.namespace.as_str()))
}

/// List items carry no kind or apiVersion on the real server; the list does.
fn list_item(obj: &Value) -> Value {
    let mut item = obj.clone();
    if let Some(o) = item.as_object_mut() {
        o.remove("kind");
        o.remove("apiVersion");
    }
    item
}

/// Opaque to clients, like the real server's (which is base64 JSON of the same facts).
fn encode_token(rv: u64, last: &Key) -> String {
    let raw = json!({"rv": rv, "start": [last.namespace, last.name]}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The key's resource is left for the caller, who knows which kind is listed.
fn decode_token(token: &str) -> Option<(u64, Key)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let start = v["start"].as_array()?;
    Some((
        v["rv"].as_u64()?,
        Key {
            resource: "",
            namespace: start.first()?.as_str()?.to_owned(),
            name: start.get(1)?.as_str()?.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::kinds::by_resource;
    use super::*;

    fn node(name: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {}})
    }

    #[test]
    fn continued_lists_read_the_first_pages_state_and_expire_with_compaction() {
        let nodes = by_resource("nodes").unwrap();
        let mut s = Store::default();
        for n in ["a", "b", "c"] {
            s.put(nodes, node(n));
        }
        let first = s.list(nodes, None, 2, None).unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!(first.remaining, 1);
        assert!(first.items[0].get("kind").is_none());
        // Changed after the first page: the continuation still sees the old state.
        let b = key_of(nodes, &node("b"));
        s.delete(&key_of(nodes, &node("c")), None).unwrap();
        s.put(nodes, node("d"));
        let token = first.continue_token.unwrap();
        let rest = s.list(nodes, None, 2, Some(&token)).unwrap();
        let names: Vec<_> = rest
            .items
            .iter()
            .map(|i| i["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("c")]);
        assert_eq!(rest.rv, first.rv);
        assert!(s.get(&b).is_some());
        s.compact();
        assert_eq!(
            s.list(nodes, None, 2, Some(&token)).unwrap_err(),
            ListError::Expired
        );
    }

    #[test]
    fn stale_writes_conflict_and_watch_history_expires() {
        let nodes = by_resource("nodes").unwrap();
        let mut s = Store::default();
        let stored = s.put(nodes, node("a"));
        let key = key_of(nodes, &stored);
        let stale = stored["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        let patch = json!({"metadata": {"labels": {"x": "1"}}}).to_string();
        s.patch(
            nodes,
            &key,
            Part::Main,
            "application/merge-patch+json",
            patch.as_bytes(),
        )
        .unwrap();
        let stale_patch = json!({"metadata": {"resourceVersion": stale, "labels": {"x": "2"}}});
        assert_eq!(
            s.patch(
                nodes,
                &key,
                Part::Main,
                "application/merge-patch+json",
                stale_patch.to_string().as_bytes()
            ),
            Err(WriteError::Conflict)
        );
        let mut replaced = stored.clone();
        replaced["metadata"]["labels"] = json!({"x": "3"});
        assert_eq!(
            s.replace(nodes, &key, Part::Main, replaced),
            Err(WriteError::Conflict)
        );
        assert_eq!(s.changes_after(nodes, None, 0).unwrap().len(), 2);
        s.compact();
        assert!(s.changes_after(nodes, None, 1).is_err());
        assert!(s
            .changes_after(nodes, None, s.resource_version())
            .unwrap()
            .is_empty());
    }
}

//! Following all Nodes and turning them into the same snapshot/change messages the etcd
//! watch produces, so the node loop and the peer set need not know where leases come from.
//!
//! [`ListWatch`] lists, watches from the list's resourceVersion, and lists again when the
//! version has expired (410); each (re)list becomes one [`WatchMsg::Snapshot`], which the
//! peer set diffs against what it had, so routes of nodes that still exist are never
//! touched by a relist.

use std::collections::HashMap;

use kube::Api;
use tokio::sync::{mpsc, watch as signal};

use super::annotations::Annotations;
use super::node::FlannelNode;
use crate::k8s::{ListWatch, Update};
use crate::subnet::etcd::WatchMsg;
use crate::subnet::peers::Change;
use crate::subnet::Lease;

/// Tracks which lease each node name stands for, so deletions and pod CIDR changes can
/// name the lease slot that goes away.
pub(crate) struct NodeLeases {
    annotations: Annotations,
    ipv4: bool,
    ipv6: bool,
    known: HashMap<String, Lease>,
}

fn delete_of(l: &Lease) -> Change {
    Change::Delete {
        subnet: l.subnet,
        ipv6_subnet: l.ipv6_subnet,
    }
}

impl NodeLeases {
    pub(crate) fn new(annotations: Annotations, (ipv4, ipv6): (bool, bool)) -> NodeLeases {
        NodeLeases {
            annotations,
            ipv4,
            ipv6,
            known: HashMap::new(),
        }
    }

    /// The lease `node` stands for; `None` for nodes flannel does not manage (yet) or whose
    /// annotations or CIDRs are unusable (upstream skips them too).
    fn lease_of(&self, node: &FlannelNode) -> Option<Lease> {
        if !self.annotations.is_managed(node.annotations()) {
            return None;
        }
        node.to_lease(&self.annotations, self.ipv4, self.ipv6)
            .map_err(|e| log::warn!("skipping node {}: {e}", node.name()))
            .ok()
    }

    /// Feeds one update; returns the message to deliver, if any.
    pub(crate) fn apply(&mut self, update: Update<FlannelNode>) -> Option<WatchMsg> {
        match update {
            Update::Listed(nodes) => {
                self.known = nodes
                    .iter()
                    .filter_map(|n| Some((n.name().to_owned(), self.lease_of(n)?)))
                    .collect();
                Some(WatchMsg::Snapshot(self.known.values().cloned().collect()))
            }
            Update::Applied(node) => {
                let name = node.name().to_owned();
                let mut changes = Vec::new();
                let old = self.known.remove(&name);
                match self.lease_of(&node) {
                    Some(lease) => {
                        if let Some(old) = old.filter(|o| o.key() != lease.key()) {
                            changes.push(delete_of(&old));
                        }
                        changes.push(Change::Put(lease.clone()));
                        self.known.insert(name, lease);
                    }
                    None => changes.extend(old.as_ref().map(delete_of)),
                }
                (!changes.is_empty()).then_some(WatchMsg::Changes(changes))
            }
            Update::Deleted(node) => self
                .known
                .remove(node.name())
                .map(|old| WatchMsg::Changes(vec![delete_of(&old)])),
        }
    }
}

/// Runs until `stop` turns true or the receiver of `tx` is gone. `synced` turns true after
/// the first full list was delivered.
pub async fn follow_nodes(
    api: Api<FlannelNode>,
    annotations: Annotations,
    families: (bool, bool),
    tx: mpsc::Sender<WatchMsg>,
    synced: signal::Sender<bool>,
    mut stop: signal::Receiver<bool>,
) {
    let mut leases = NodeLeases::new(annotations, families);
    let mut nodes = ListWatch::new(api, "node watch");
    loop {
        let update = tokio::select! {
            u = nodes.next() => u,
            _ = stop.wait_for(|s| *s) => return,
        };
        let snapshot = matches!(update, Update::Listed(_));
        if let Some(msg) = leases.apply(update) {
            if tx.send(msg).await.is_err() {
                return;
            }
        }
        if snapshot {
            let _ = synced.send(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: &str, ip: &str, managed: bool) -> FlannelNode {
        let mut ann = json!({
            "flannel.alpha.coreos.com/backend-data": "null",
            "flannel.alpha.coreos.com/backend-type": "host-gw",
            "flannel.alpha.coreos.com/public-ip": ip,
        });
        if managed {
            ann["flannel.alpha.coreos.com/kube-subnet-manager"] = json!("true");
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": ann},
            "spec": {"podCIDR": cidr}
        }))
        .unwrap()
    }

    fn leases() -> NodeLeases {
        NodeLeases::new(
            Annotations::new("flannel.alpha.coreos.com").unwrap(),
            (true, false),
        )
    }

    fn keys(msg: &WatchMsg) -> Vec<String> {
        match msg {
            WatchMsg::Snapshot(ls) => {
                let mut k: Vec<_> = ls.iter().map(Lease::key).collect();
                k.sort();
                k
            }
            WatchMsg::Changes(cs) => cs
                .iter()
                .map(|c| match c {
                    Change::Put(l) => format!("put {}", l.key()),
                    Change::Delete {
                        subnet,
                        ipv6_subnet,
                    } => format!("del {}", crate::subnet::subnet_key(*subnet, *ipv6_subnet)),
                })
                .collect(),
        }
    }

    #[test]
    fn a_listing_becomes_one_snapshot_of_managed_nodes() {
        let mut l = leases();
        let snap = l
            .apply(Update::Listed(vec![
                node("a", "10.244.1.0/24", "10.0.0.1", true),
                node("b", "10.244.2.0/24", "10.0.0.2", false),
                node("c", "10.244.3.0/24", "bogus", true),
            ]))
            .unwrap();
        assert_eq!(keys(&snap), ["10.244.1.0-24"]);
    }

    #[test]
    fn updates_and_deletes_name_the_slot_that_goes_away() {
        let mut l = leases();
        l.apply(Update::Listed(Vec::new()));
        let put = l.apply(Update::Applied(node(
            "a",
            "10.244.1.0/24",
            "10.0.0.1",
            true,
        )));
        assert_eq!(keys(&put.unwrap()), ["put 10.244.1.0-24"]);
        // The pod CIDR moved: the old slot is deleted before the new one is written.
        let moved = l.apply(Update::Applied(node(
            "a",
            "10.244.9.0/24",
            "10.0.0.1",
            true,
        )));
        assert_eq!(
            keys(&moved.unwrap()),
            ["del 10.244.1.0-24", "put 10.244.9.0-24"]
        );
        // No longer managed by flannel: gone.
        let unmanaged = l.apply(Update::Applied(node(
            "a",
            "10.244.9.0/24",
            "10.0.0.1",
            false,
        )));
        assert_eq!(keys(&unmanaged.unwrap()), ["del 10.244.9.0-24"]);
        assert!(l
            .apply(Update::Deleted(node(
                "a",
                "10.244.9.0/24",
                "10.0.0.1",
                false
            )))
            .is_none());
        l.apply(Update::Applied(node(
            "b",
            "10.244.2.0/24",
            "10.0.0.2",
            true,
        )));
        let del = l.apply(Update::Deleted(node(
            "b",
            "10.244.2.0/24",
            "10.0.0.2",
            true,
        )));
        assert_eq!(keys(&del.unwrap()), ["del 10.244.2.0-24"]);
    }
}

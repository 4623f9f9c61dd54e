//! Following all Nodes and turning them into the same snapshot/change messages the etcd
//! watch produces, so the node loop and the peer set need not know where leases come from.
//!
//! [`ListWatch`] lists, watches from the list's resourceVersion, and lists again when the
//! version has expired (410); each (re)list becomes one [`WatchMsg::Snapshot`], which the
//! peer set diffs against what it had, so routes of nodes that still exist are never
//! touched by a relist.

use std::collections::HashMap;

use ipnet::{Ipv4Net, Ipv6Net};
use kube::Api;
use tokio::sync::{mpsc, watch as signal};

use super::annotations::Annotations;
use super::node::FlannelNode;
use crate::k8s::{ListWatch, Update};
use crate::subnet::peers::Change;
use crate::subnet::store::WatchMsg;
use crate::subnet::Lease;

/// A lease slot: its v4 subnet and, when dual-stack, its v6 one.
type Slot = (Ipv4Net, Option<Ipv6Net>);

fn slot_of(l: &Lease) -> Slot {
    (l.subnet, l.ipv6_subnet)
}

/// Tracks which lease each node name stands for, so deletions and pod CIDR changes can
/// name the lease slot that goes away.
///
/// Pod CIDRs are the controller manager's to keep unique; when two Nodes carry the same ones
/// anyway (hand-assigned CIDRs), one Node stands for the slot: this node when it is one of
/// them (its own subnet is never routed elsewhere), else the oldest (`creationTimestamp`,
/// then name), the same on every node. Each such duplicate is logged once.
pub(crate) struct NodeLeases {
    annotations: Annotations,
    ipv4: bool,
    ipv6: bool,
    /// This node's name.
    own: String,
    known: HashMap<String, Lease>,
    /// Slots held by more than one Node: their names and the one standing for the slot, as
    /// last logged.
    duplicates: HashMap<Slot, (Vec<String>, String)>,
}

fn delete_of(slot: Slot) -> Change {
    Change::Delete {
        subnet: slot.0,
        ipv6_subnet: slot.1,
    }
}

impl NodeLeases {
    pub(crate) fn new(
        annotations: Annotations,
        (ipv4, ipv6): (bool, bool),
        own: &str,
    ) -> NodeLeases {
        NodeLeases {
            annotations,
            ipv4,
            ipv6,
            own: own.to_owned(),
            known: HashMap::new(),
            duplicates: HashMap::new(),
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

    /// The Node standing for `slot`, and its lease.
    fn holder(&self, slot: Slot) -> Option<(&str, &Lease)> {
        self.known
            .iter()
            .filter(|(_, l)| slot_of(l) == slot)
            .min_by_key(|(name, l)| (**name != self.own, l.created, name.as_str()))
            .map(|(name, l)| (name.as_str(), l))
    }

    /// Logs `slot` once each time the Nodes holding it, or the one standing for it, change
    /// while there is more than one.
    fn report(&mut self, slot: Slot) {
        let mut names: Vec<String> = self
            .known
            .iter()
            .filter(|(_, l)| slot_of(l) == slot)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        if names.len() < 2 {
            self.duplicates.remove(&slot);
            return;
        }
        let holder = self.holder(slot).map_or("", |h| h.0).to_owned();
        let seen = (names, holder);
        if self.duplicates.get(&slot) == Some(&seen) {
            return;
        }
        let (names, holder) = seen;
        let key = crate::subnet::subnet_key(slot.0, slot.1);
        let why = if holder == self.own {
            "this node keeps it"
        } else {
            "the oldest Node stands for it"
        };
        log::error!(
            "pod CIDRs {key} are assigned to Nodes {}: {why} ({holder}); every node needs pod CIDRs of its own",
            names.join(", ")
        );
        self.duplicates.insert(slot, (names, holder));
    }

    /// Feeds one update; returns the message to deliver, if any.
    pub(crate) fn apply(&mut self, update: Update<FlannelNode>) -> Option<WatchMsg> {
        match update {
            Update::Listed(nodes) => {
                self.known = nodes
                    .iter()
                    .filter_map(|n| Some((n.name().to_owned(), self.lease_of(n)?)))
                    .collect();
                let mut slots: Vec<Slot> = self.known.values().map(slot_of).collect();
                slots.sort_unstable();
                slots.dedup();
                let mut leases = Vec::with_capacity(slots.len());
                for slot in slots {
                    self.report(slot);
                    leases.extend(self.holder(slot).map(|(_, l)| l.clone()));
                }
                Some(WatchMsg::Snapshot(leases))
            }
            Update::Applied(node) => {
                let name = node.name().to_owned();
                let lease = self.lease_of(&node);
                let mut slots: Vec<Slot> = self.known.get(&name).map(slot_of).into_iter().collect();
                slots.extend(lease.as_ref().map(slot_of));
                slots.dedup();
                let before: Vec<Option<(String, Lease)>> = slots
                    .iter()
                    .map(|s| self.holder(*s).map(|(n, l)| (n.to_owned(), l.clone())))
                    .collect();
                self.known.remove(&name);
                if let Some(lease) = lease {
                    self.known.insert(name.clone(), lease);
                }
                self.changes(&slots, before, Some(&name))
            }
            Update::Deleted(node) => {
                let old = self.known.get(node.name()).map(slot_of)?;
                let before = vec![self.holder(old).map(|(n, l)| (n.to_owned(), l.clone()))];
                self.known.remove(node.name());
                self.changes(&[old], before, None)
            }
        }
    }

    /// What changed for `slots` given who held each `before`: a Put of the holder when it is
    /// another Node or lease than before (or the Node the update is about, as a refresh), a
    /// Delete when nobody holds it any more.
    fn changes(
        &mut self,
        slots: &[Slot],
        before: Vec<Option<(String, Lease)>>,
        updated: Option<&str>,
    ) -> Option<WatchMsg> {
        let mut deletes = Vec::new();
        let mut puts = Vec::new();
        for (slot, before) in slots.iter().zip(before) {
            self.report(*slot);
            match (before, self.holder(*slot)) {
                (Some(_), None) => deletes.push(delete_of(*slot)),
                (None, None) => {}
                (before, Some((name, lease))) => {
                    let same = before.is_some_and(|(n, l)| n == name && l == *lease);
                    if !same || updated == Some(name) {
                        puts.push(Change::Put(lease.clone()));
                    }
                }
            }
        }
        // A slot that went away is removed before one that appears is written.
        deletes.extend(puts);
        (!deletes.is_empty()).then_some(WatchMsg::Changes(deletes))
    }
}

/// Runs until `stop` turns true or the receiver of `tx` is gone. `synced` turns true after
/// the first full list was delivered.
pub async fn follow_nodes(
    api: Api<FlannelNode>,
    annotations: Annotations,
    families: (bool, bool),
    own: String,
    tx: mpsc::Sender<WatchMsg>,
    synced: signal::Sender<bool>,
    mut stop: signal::Receiver<bool>,
) {
    let mut leases = NodeLeases::new(annotations, families, &own);
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
            "me",
        )
    }

    fn aged(mut n: FlannelNode, ts: &str) -> FlannelNode {
        n.metadata.creation_timestamp = Some(serde_json::from_value(json!(ts)).unwrap());
        n
    }

    fn ips(msg: &WatchMsg) -> Vec<String> {
        match msg {
            WatchMsg::Snapshot(ls) => ls.iter().map(|l| l.attrs.public_ip.to_string()).collect(),
            WatchMsg::Changes(cs) => cs
                .iter()
                .map(|c| match c {
                    Change::Put(l) => format!("put {}", l.attrs.public_ip),
                    Change::Delete { subnet, .. } => format!("del {subnet}"),
                })
                .collect(),
        }
    }

    #[test]
    fn nodes_sharing_pod_cidrs_are_one_lease_the_oldest_or_our_own() {
        let mut l = leases();
        let old = aged(
            node("old", "10.244.1.0/24", "10.0.0.1", true),
            "2026-01-01T00:00:00Z",
        );
        let new = aged(
            node("new", "10.244.1.0/24", "10.0.0.2", true),
            "2026-02-01T00:00:00Z",
        );
        let snapshot = l.apply(Update::Listed(vec![new.clone(), old.clone()]));
        assert_eq!(ips(&snapshot.unwrap()), ["10.0.0.1"]);
        // The newer one changing is not news; the older one going hands the slot over.
        assert!(l.apply(Update::Applied(new.clone())).is_none());
        assert_eq!(
            ips(&l.apply(Update::Deleted(old.clone())).unwrap()),
            ["put 10.0.0.2"]
        );
        // Our own Node always stands for its own pod CIDRs, however old the other is.
        let me = aged(
            node("me", "10.244.1.0/24", "10.0.0.9", true),
            "2026-03-01T00:00:00Z",
        );
        assert_eq!(
            ips(&l.apply(Update::Applied(me.clone())).unwrap()),
            ["put 10.0.0.9"]
        );
        assert!(l.apply(Update::Applied(old)).is_none());
        assert_eq!(
            ips(&l.apply(Update::Applied(me)).unwrap()),
            ["put 10.0.0.9"]
        );
        // When every holder is gone, so is the slot.
        for n in ["me", "new", "old"] {
            let gone = aged(
                node(n, "10.244.1.0/24", "10.0.0.5", true),
                "2026-01-01T00:00:00Z",
            );
            let msg = l.apply(Update::Deleted(gone));
            if n == "old" {
                assert_eq!(ips(&msg.unwrap()), ["del 10.244.1.0/24"]);
            }
        }
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

//! The set of other nodes' leases (upstream `LeaseWatcher`), turning snapshots and raw watch
//! changes into the events backends apply.

use std::collections::BTreeMap;

use ipnet::{Ipv4Net, Ipv6Net};

use super::{Event, Lease};

/// A change read from the store: a lease written, or a lease slot gone (deleted or expired).
// Changes live only in short batches between the watch and the peer set; boxing the lease
// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Put(Lease),
    Delete {
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    },
}

/// Known peer leases keyed by their etcd key; our own lease is never in it.
#[derive(Debug, Clone, Default)]
pub struct PeerSet {
    own: Option<Lease>,
    peers: BTreeMap<String, Lease>,
}

impl PeerSet {
    pub fn new(own: Option<Lease>) -> PeerSet {
        PeerSet {
            own,
            peers: BTreeMap::new(),
        }
    }

    /// Our lease changed (re-acquired, possibly a different subnet): drop it from the peers.
    /// Returns a Removed event if the new slot had been known as a peer's.
    pub fn set_own(&mut self, own: Lease) -> Vec<Event> {
        let mut events = Vec::new();
        self.peers.retain(|_, l| {
            let same = own.same_subnet(l.subnet, l.ipv6_subnet);
            if same {
                events.push(Event::Removed(l.clone()));
            }
            !same
        });
        self.own = Some(own);
        events
    }

    fn is_own(&self, subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> bool {
        self.own
            .as_ref()
            .is_some_and(|o| o.same_subnet(subnet, ipv6_subnet))
    }

    /// Replaces the whole set with `snapshot`: new or changed leases are Added, vanished ones
    /// Removed (upstream `Reset`).
    pub fn reset(&mut self, snapshot: Vec<Lease>) -> Vec<Event> {
        let mut next = BTreeMap::new();
        for lease in snapshot {
            if !self.is_own(lease.subnet, lease.ipv6_subnet) {
                next.insert(lease.key(), lease);
            }
        }
        let mut events = Vec::new();
        for (key, old) in &self.peers {
            if !next.contains_key(key) {
                events.push(Event::Removed(old.clone()));
            }
        }
        for (key, lease) in &next {
            if self
                .peers
                .get(key)
                .map_or(true, |old| old.attrs != lease.attrs)
            {
                events.push(Event::Added(lease.clone()));
            }
        }
        self.peers = next;
        events
    }

    /// Applies store changes. A Put whose attributes did not change (another node renewing
    /// its lease) yields no event; a Delete yields the *stored* lease so backends know what
    /// to tear down.
    pub fn update(&mut self, changes: Vec<Change>) -> Vec<Event> {
        let mut events = Vec::new();
        for change in changes {
            match change {
                Change::Put(lease) => {
                    if self.is_own(lease.subnet, lease.ipv6_subnet) {
                        continue;
                    }
                    let key = lease.key();
                    let changed = self
                        .peers
                        .get(&key)
                        .map_or(true, |old| old.attrs != lease.attrs);
                    if changed {
                        events.push(Event::Added(lease.clone()));
                    }
                    self.peers.insert(key, lease);
                }
                Change::Delete {
                    subnet,
                    ipv6_subnet,
                } => {
                    if self.is_own(subnet, ipv6_subnet) {
                        continue;
                    }
                    if let Some(old) = self.peers.remove(&super::subnet_key(subnet, ipv6_subnet)) {
                        events.push(Event::Removed(old));
                    }
                }
            }
        }
        events
    }

    pub fn all(&self) -> Vec<Lease> {
        self.peers.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

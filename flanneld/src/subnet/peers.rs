//! The set of other nodes' leases (upstream `LeaseWatcher`), turning snapshots and raw watch
//! changes into the events backends apply.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};

use super::{Event, Lease, SharedLease};

/// A lease slot: its v4 subnet and, when dual-stack, its v6 one (what the etcd key encodes).
type Slot = (Ipv4Net, Option<Ipv6Net>);

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

/// Whether `new` is `old` renewed: everything but the expiration equal.
fn same_peer(old: &Lease, new: &Lease) -> bool {
    old.attrs == new.attrs
        && old.enable_ipv4 == new.enable_ipv4
        && old.enable_ipv6 == new.enable_ipv6
}

/// Known peer leases keyed by their slot; our own lease is never in it.
#[derive(Debug, Clone, Default)]
pub struct PeerSet {
    own: Option<Lease>,
    peers: BTreeMap<Slot, SharedLease>,
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
                events.push(Event::Removed(Arc::clone(l)));
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
                next.insert((lease.subnet, lease.ipv6_subnet), lease);
            }
        }
        let mut events = Vec::new();
        for (key, old) in &self.peers {
            if !next.contains_key(key) {
                events.push(Event::Removed(Arc::clone(old)));
            }
        }
        let mut peers = BTreeMap::new();
        for (key, lease) in next {
            // An unchanged peer keeps its existing allocation, which the backend and the
            // status report already share.
            let lease = match self.peers.remove(&key) {
                Some(old) if same_peer(&old, &lease) => old,
                _ => {
                    let lease = Arc::new(lease);
                    events.push(Event::Added(Arc::clone(&lease)));
                    lease
                }
            };
            peers.insert(key, lease);
        }
        self.peers = peers;
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
                    let key = (lease.subnet, lease.ipv6_subnet);
                    match self.peers.entry(key) {
                        // A renewal: only the expiration moved, and nothing reads a
                        // peer's expiration, so the shared copy stays as it is.
                        Entry::Occupied(old) if same_peer(old.get(), &lease) => {}
                        Entry::Occupied(mut old) => {
                            let lease = Arc::new(lease);
                            events.push(Event::Added(Arc::clone(&lease)));
                            old.insert(lease);
                        }
                        Entry::Vacant(slot) => {
                            let lease = Arc::new(lease);
                            events.push(Event::Added(Arc::clone(&lease)));
                            slot.insert(lease);
                        }
                    }
                }
                Change::Delete {
                    subnet,
                    ipv6_subnet,
                } => {
                    if self.is_own(subnet, ipv6_subnet) {
                        continue;
                    }
                    if let Some(old) = self.peers.remove(&(subnet, ipv6_subnet)) {
                        events.push(Event::Removed(old));
                    }
                }
            }
        }
        events
    }

    pub fn all(&self) -> Vec<SharedLease> {
        self.peers.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

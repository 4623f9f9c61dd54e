//! The set of other nodes' leases (upstream `LeaseWatcher`), turning snapshots and raw watch
//! changes into the events backends apply.
//!
//! Each family's subnet must have one holder. Upstream's stores only guarantee that the whole
//! key (`10.244.53.0-24&fc00::2b-64`) is unique, so two records can share an IPv4 or an IPv6
//! subnet (two nodes racing, or a node of another flannel version). When they do, the earlier
//! record (in the store's creation order, then by key and public IP, so every node decides
//! alike) keeps that family's subnet: backends get the later ones with that family turned
//! off, and this node's own subnets always stay with this node. [`PeerSet::conflicts`] lists
//! them for the daemon, which logs them and moves its own lease off a subnet held first
//! elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

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
        && old.created == new.created
}

/// The IPv4 subnet a lease routes, if any: an IPv6-only etcd lease still carries 0.0.0.0/0.
fn v4_of(l: &Lease) -> Option<Ipv4Net> {
    (l.enable_ipv4 && l.subnet.prefix_len() > 0).then_some(l.subnet)
}

fn v6_of(l: &Lease) -> Option<Ipv6Net> {
    l.ipv6_subnet.filter(|_| l.enable_ipv6)
}

/// How two holders of one subnet are ordered; the smallest keeps it.
fn rank(l: &Lease) -> (u64, String, Ipv4Addr) {
    (l.created, l.key(), l.attrs.public_ip)
}

/// A peer as held: the record as read, and the lease the backend gets — the same allocation,
/// or a copy with a family turned off while another holder keeps that subnet.
#[derive(Debug, Clone)]
struct Peer {
    lease: SharedLease,
    shown: SharedLease,
}

/// One family's subnet held by more than one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub subnet: IpNet,
    /// Every holder, the one that keeps the subnet first.
    pub holders: Vec<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The record's key (`10.244.53.0-24&fc00::2b-64`).
    pub key: String,
    pub public_ip: Ipv4Addr,
    pub created: u64,
    /// This node's own lease.
    pub own: bool,
}

impl Conflict {
    /// Whether this node's lease holds the subnet but another record keeps it.
    pub fn lost_by_own(&self) -> bool {
        self.holders.iter().skip(1).any(|h| h.own)
    }
}

/// Known peer leases keyed by their slot; our own lease is never in it.
#[derive(Debug, Clone, Default)]
pub struct PeerSet {
    own: Option<Lease>,
    peers: BTreeMap<Slot, Peer>,
    /// Peers with an IPv6 subnet, by it: slots sort by their IPv4 subnet, so the holders of
    /// one IPv6 subnet are found here.
    by_v6: BTreeSet<(Ipv6Net, Ipv4Net)>,
}

impl PeerSet {
    pub fn new(own: Option<Lease>) -> PeerSet {
        PeerSet {
            own,
            peers: BTreeMap::new(),
            by_v6: BTreeSet::new(),
        }
    }

    /// Our lease changed (re-acquired, possibly a different subnet): drop it from the peers.
    /// Returns a Removed event if the new slot had been known as a peer's, and Added events
    /// for peers whose subnets the old lease had kept from them or the new one now keeps.
    pub fn set_own(&mut self, own: Lease) -> Vec<Event> {
        let mut events = Vec::new();
        let slot = (own.subnet, own.ipv6_subnet);
        let same: Vec<Slot> = self
            .peers
            .iter()
            .filter(|(_, p)| own.same_subnet(p.lease.subnet, p.lease.ipv6_subnet))
            .map(|(s, _)| *s)
            .collect();
        for s in same {
            if let Some(old) = self.remove(s) {
                events.push(Event::Removed(old.shown));
            }
        }
        let old = self.own.replace(own);
        let mut touched = self.holders_of(old.as_ref());
        touched.extend(self.holders_of(self.own.clone().as_ref()));
        touched.retain(|s| *s != slot);
        events.extend(self.refresh(touched));
        events
    }

    /// Records our lease's place in the store's creation order, once the watch shows it.
    pub fn set_own_created(&mut self, created: u64) {
        if let Some(own) = &mut self.own {
            own.created = created;
        }
    }

    fn is_own(&self, subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> bool {
        self.own
            .as_ref()
            .is_some_and(|o| o.same_subnet(subnet, ipv6_subnet))
    }

    /// Replaces the whole set with `snapshot`: new or changed leases are Added, vanished ones
    /// Removed (upstream `Reset`).
    pub fn reset(&mut self, snapshot: Vec<Lease>) -> Vec<Event> {
        let mut old = std::mem::take(&mut self.peers);
        self.by_v6.clear();
        for lease in snapshot {
            if self.is_own(lease.subnet, lease.ipv6_subnet) {
                continue;
            }
            let slot = (lease.subnet, lease.ipv6_subnet);
            // An unchanged peer keeps its existing allocation, which the backend and the
            // status report already share.
            let lease = match old.get(&slot) {
                Some(p) if same_peer(&p.lease, &lease) => Arc::clone(&p.lease),
                _ => Arc::new(lease),
            };
            self.insert(slot, lease);
        }
        let slots: Vec<Slot> = self.peers.keys().copied().collect();
        let mut events = Vec::new();
        for (slot, gone) in &old {
            if !self.peers.contains_key(slot) {
                events.push(Event::Removed(Arc::clone(&gone.shown)));
            }
        }
        for slot in slots {
            let shown = self.shown_for(slot);
            let peer = self.peers.get_mut(&slot).expect("just inserted");
            peer.shown = match old.remove(&slot) {
                Some(prev)
                    if Arc::ptr_eq(&prev.lease, &peer.lease) && same_mask(&prev.shown, &shown) =>
                {
                    prev.shown
                }
                _ => {
                    events.push(Event::Added(Arc::clone(&shown)));
                    shown
                }
            };
        }
        events
    }

    /// Applies store changes. A Put whose attributes did not change (another node renewing
    /// its lease) yields no event; a Delete yields the lease the backend had, so it knows
    /// what to tear down.
    pub fn update(&mut self, changes: Vec<Change>) -> Vec<Event> {
        let mut events = Vec::new();
        for change in changes {
            match change {
                Change::Put(lease) => {
                    if self.is_own(lease.subnet, lease.ipv6_subnet) {
                        continue;
                    }
                    let slot = (lease.subnet, lease.ipv6_subnet);
                    // A renewal: only the expiration moved, and nothing reads a peer's
                    // expiration, so the shared copy stays as it is.
                    if self
                        .peers
                        .get(&slot)
                        .is_some_and(|p| same_peer(&p.lease, &lease))
                    {
                        continue;
                    }
                    let before = self.remove(slot);
                    let mut touched = self.holders_of(before.as_ref().map(|p| &*p.lease));
                    let lease = Arc::new(lease);
                    touched.extend(self.holders_of(Some(&lease)));
                    self.insert(slot, lease);
                    let shown = self.shown_for(slot);
                    self.peers.get_mut(&slot).expect("just inserted").shown = Arc::clone(&shown);
                    events.push(Event::Added(shown));
                    touched.retain(|s| *s != slot);
                    events.extend(self.refresh(touched));
                }
                Change::Delete {
                    subnet,
                    ipv6_subnet,
                } => {
                    if self.is_own(subnet, ipv6_subnet) {
                        continue;
                    }
                    if let Some(old) = self.remove((subnet, ipv6_subnet)) {
                        let touched = self.holders_of(Some(&old.lease));
                        events.push(Event::Removed(old.shown));
                        events.extend(self.refresh(touched));
                    }
                }
            }
        }
        events
    }

    /// The leases as backends get them (a family another holder keeps turned off).
    pub fn all(&self) -> Vec<SharedLease> {
        self.peers.values().map(|p| Arc::clone(&p.shown)).collect()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every subnet of either family that more than one record holds, ours included.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let own = self.own.as_ref();
        // Slots sort by their IPv4 subnet and `by_v6` by the IPv6 one: holders of one subnet
        // are neighbours in either.
        let v4 = self
            .peers
            .values()
            .filter_map(|p| v4_of(&p.lease).map(|a| (IpNet::V4(a), &*p.lease)));
        let v6 = self.by_v6.iter().filter_map(|(b, a)| {
            let p = self.peers.get(&(*a, Some(*b)))?;
            Some((IpNet::V6(*b), &*p.lease))
        });
        let own_holds = |net: IpNet| {
            own.filter(|o| match net {
                IpNet::V4(a) => v4_of(o) == Some(a),
                IpNet::V6(b) => v6_of(o) == Some(b),
            })
        };
        let mut out = Vec::new();
        for family in [v4.collect::<Vec<_>>(), v6.collect()] {
            for group in family.chunk_by(|x, y| x.0 == y.0) {
                let net = group[0].0;
                let peers = group.iter().map(|(_, l)| *l).collect();
                out.extend(conflict(net, peers, own_holds(net)));
            }
        }
        out
    }

    fn insert(&mut self, slot: Slot, lease: SharedLease) {
        if let Some(b) = v6_of(&lease) {
            self.by_v6.insert((b, slot.0));
        }
        let shown = Arc::clone(&lease);
        self.peers.insert(slot, Peer { lease, shown });
    }

    fn remove(&mut self, slot: Slot) -> Option<Peer> {
        let old = self.peers.remove(&slot)?;
        if let Some(b) = v6_of(&old.lease) {
            self.by_v6.remove(&(b, slot.0));
        }
        Some(old)
    }

    /// The slots of every peer that holds a subnet `lease` holds.
    fn holders_of(&self, lease: Option<&Lease>) -> Vec<Slot> {
        let Some(lease) = lease else {
            return Vec::new();
        };
        let mut slots = Vec::new();
        if let Some(a) = v4_of(lease) {
            slots.extend(
                self.peers
                    .range((a, None)..)
                    .take_while(|(s, _)| s.0 == a)
                    .map(|(s, _)| *s),
            );
        }
        if let Some(b) = v6_of(lease) {
            slots.extend(
                self.by_v6
                    .range((b, Ipv4Net::default())..)
                    .take_while(|(v6, _)| *v6 == b)
                    .map(|(_, a)| (*a, Some(b))),
            );
        }
        slots
    }

    /// Whether the peer at `slot` keeps its subnet of one family: nobody (this node
    /// included) holds it before it.
    fn keeps(&self, slot: Slot, lease: &Lease, v6: bool) -> bool {
        let own = self.own.as_ref();
        if v6 {
            let Some(b) = v6_of(lease) else { return true };
            if own.and_then(v6_of) == Some(b) {
                return false;
            }
            let mine = rank(lease);
            self.by_v6
                .range((b, Ipv4Net::default())..)
                .take_while(|(v6, _)| *v6 == b)
                .filter(|(_, a)| (*a, Some(b)) != slot)
                .filter_map(|(_, a)| self.peers.get(&(*a, Some(b))))
                .all(|p| rank(&p.lease) > mine)
        } else {
            let Some(a) = v4_of(lease) else { return true };
            if own.and_then(v4_of) == Some(a) {
                return false;
            }
            let mine = rank(lease);
            self.peers
                .range((a, None)..)
                .take_while(|(s, _)| s.0 == a)
                .filter(|(s, p)| **s != slot && v4_of(&p.lease) == Some(a))
                .all(|(_, p)| rank(&p.lease) > mine)
        }
    }

    /// What the backend gets for the peer at `slot`.
    fn shown_for(&self, slot: Slot) -> SharedLease {
        let lease = &self.peers[&slot].lease;
        let v4 = self.keeps(slot, lease, false);
        let v6 = self.keeps(slot, lease, true);
        if v4 && v6 {
            return Arc::clone(lease);
        }
        Arc::new(Lease {
            enable_ipv4: lease.enable_ipv4 && v4,
            enable_ipv6: lease.enable_ipv6 && v6,
            ..Lease::clone(lease)
        })
    }

    /// Recomputes what the backend gets for `slots`; an Added event for each that changed.
    fn refresh(&mut self, mut slots: Vec<Slot>) -> Vec<Event> {
        slots.sort_unstable();
        slots.dedup();
        let mut events = Vec::new();
        for slot in slots {
            if !self.peers.contains_key(&slot) {
                continue;
            }
            let shown = self.shown_for(slot);
            let peer = self.peers.get_mut(&slot).expect("checked");
            if !same_mask(&peer.shown, &shown) {
                peer.shown = Arc::clone(&shown);
                events.push(Event::Added(shown));
            }
        }
        events
    }
}

fn same_mask(a: &Lease, b: &Lease) -> bool {
    a.enable_ipv4 == b.enable_ipv4 && a.enable_ipv6 == b.enable_ipv6
}

/// The conflict over `subnet` among `peers` and `own` (when it holds it too), if more than one
/// record holds it.
fn conflict(subnet: IpNet, peers: Vec<&Lease>, own: Option<&Lease>) -> Option<Conflict> {
    let mut holders: Vec<(bool, &Lease)> = peers.into_iter().map(|l| (false, l)).collect();
    holders.extend(own.map(|o| (true, o)));
    if holders.len() < 2 {
        return None;
    }
    holders.sort_by_cached_key(|(_, l)| rank(l));
    Some(Conflict {
        subnet,
        holders: holders
            .into_iter()
            .map(|(own, l)| Holder {
                key: l.key(),
                public_ip: l.attrs.public_ip,
                created: l.created,
                own,
            })
            .collect(),
    })
}

//! The peer set a backend has programmed, and the two ways of changing it: applying a batch
//! of lease events, and reconciling the kernel against the full lease set.

use std::collections::{HashMap, HashSet};

use ipnet::{Ipv4Net, Ipv6Net};
use netops::netlink::{Handle, NetlinkError};

use super::apply::{apply, Hint, Job};
use super::objects::{Key, Object};
use super::ApplyReport;
use crate::subnet::{Event, Lease, SharedLease};

/// A lease's identity: its subnet key.
pub(crate) type LeaseKey = (Ipv4Net, Option<Ipv6Net>);

pub(crate) fn key_of(l: &Lease) -> LeaseKey {
    (l.subnet, l.ipv6_subnet)
}

pub(crate) fn label_of(l: &Lease) -> String {
    let mut s = format!("peer {}", l.subnet);
    if let Some(v6) = l.ipv6_subnet {
        s.push_str(&format!("&{v6}"));
    }
    s.push_str(&format!(" ({})", l.attrs.public_ip));
    s
}

/// The name of peer `i` of a batch in messages; `None` marks objects that belong to no peer.
fn describe(labels: &[Option<&Lease>], i: usize) -> String {
    labels[i].map_or_else(|| "stale".to_owned(), label_of)
}

/// What a backend contributes to the shared engine.
pub(crate) trait Planner {
    fn backend_type(&self) -> &'static str;
    /// The objects `lease` needs, or why it cannot be served.
    fn plan(&mut self, nl: &mut Handle, lease: &Lease) -> Result<Vec<Object>, String>;
    /// What a departed peer may have had, when it was never seen installed (for example the
    /// daemon restarted in between): every form it could have taken.
    fn removal_candidates(&self, lease: &Lease) -> Vec<Object>;
    /// Every object in the kernel this backend owns.
    fn owned(&self, nl: &mut Handle) -> Result<Vec<Object>, NetlinkError>;
    fn hint(&self) -> Option<Hint> {
        None
    }
}

#[derive(Debug, Clone)]
struct Installed {
    lease: SharedLease,
    objects: Box<[Object]>,
}

#[derive(Debug, Default)]
pub(crate) struct PeerSync {
    known: HashMap<LeaseKey, Installed>,
    own: Option<LeaseKey>,
}

impl PeerSync {
    pub fn set_own(&mut self, own: &Lease) {
        self.own = Some(key_of(own));
        self.known.remove(&key_of(own));
    }

    /// The leases of every peer currently wanted, for replaying after a device re-creation.
    pub fn leases(&self) -> Vec<SharedLease> {
        self.known
            .values()
            .map(|i| SharedLease::clone(&i.lease))
            .collect()
    }

    fn relevant(&self, planner: &dyn Planner, lease: &Lease) -> bool {
        if lease.attrs.backend_type != planner.backend_type() {
            log::warn!(
                "ignoring lease {} of backend type {:?}: this node runs {:?}",
                lease.subnet,
                lease.attrs.backend_type,
                planner.backend_type()
            );
            return false;
        }
        // The daemon filters its own lease; routing our own subnet to a peer would cut the
        // node off from its pods, so make sure.
        Some(key_of(lease)) != self.own
    }

    /// Applies a batch of events. Events for the same subnet collapse to their net effect, so
    /// an `Added` followed by a `Removed` in one batch touches the kernel only to remove.
    pub fn handle(
        &mut self,
        nl: &mut Handle,
        planner: &mut dyn Planner,
        events: &[Event],
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut labels = Vec::new();
        let mut stale: Vec<Job> = Vec::new();
        let mut pending: Vec<LeaseKey> = Vec::new();
        let mut removed_events = 0;
        for event in events {
            let (lease, added) = match event {
                Event::Added(l) => (l, true),
                Event::Removed(l) => (l, false),
            };
            if !self.relevant(planner, lease) {
                continue;
            }
            let key = key_of(lease);
            let previous = if added {
                match planner.plan(nl, lease) {
                    Ok(objects) => {
                        pending.push(key);
                        let entry = Installed {
                            lease: SharedLease::clone(lease),
                            objects: objects.into_boxed_slice(),
                        };
                        self.known.insert(key, entry).map(|old| old.objects)
                    }
                    Err(reason) => {
                        report.errors.push(format!("{}: {reason}", label_of(lease)));
                        continue;
                    }
                }
            } else {
                removed_events += 1;
                pending.retain(|k| *k != key);
                Some(match self.known.remove(&key) {
                    Some(old) => old.objects,
                    None => planner.removal_candidates(lease).into_boxed_slice(),
                })
            };
            let peer = labels.len();
            labels.push(Some(&**lease));
            stale.extend(
                previous
                    .into_iter()
                    .flat_map(Vec::from)
                    .map(|object| Job { peer, object }),
            );
        }
        pending.sort();
        pending.dedup();

        let mut installs = Vec::new();
        let mut pending_peers = Vec::new();
        for key in &pending {
            let entry = &self.known[key];
            let peer = labels.len();
            labels.push(Some(&*entry.lease));
            pending_peers.push(peer);
            installs.extend(entry.objects.iter().map(|&object| Job { peer, object }));
        }
        // `kept` spans every known peer: building it costs O(peers) per batch, which made a
        // single new lease take ~20 ms with 5,000 peers. Only stale objects are checked against
        // it, and a batch of pure additions (the common case) has none.
        if !stale.is_empty() {
            let wanted_keys: HashSet<Key> = installs.iter().map(|j| j.object.key()).collect();
            // A sorted vector, not a hash set: a third of the memory at 15,000 objects.
            let mut kept: Vec<Object> = self
                .known
                .values()
                .flat_map(|i| i.objects.iter().copied())
                .collect();
            kept.sort_unstable();
            let mut seen = HashSet::new();
            stale.retain(|j| {
                !wanted_keys.contains(&j.object.key())
                    && kept.binary_search(&j.object).is_err()
                    && seen.insert(j.object)
            });
        }

        let outcome = apply(
            nl,
            &|i| describe(&labels, i),
            stale,
            installs,
            planner.hint(),
        );
        report.added = pending_peers
            .iter()
            .filter(|p| !outcome.failed_peers.contains(p))
            .count();
        report.removed = removed_events;
        report.errors.extend(outcome.errors);
        report
    }

    /// Makes the kernel hold exactly the objects `peers` need: lists what this backend owns,
    /// installs what is missing or different, removes what belongs to no peer.
    pub fn reconcile(
        &mut self,
        nl: &mut Handle,
        planner: &mut dyn Planner,
        peers: &[SharedLease],
    ) -> Result<ApplyReport, NetlinkError> {
        let mut report = ApplyReport::default();
        self.known.clear();
        for lease in peers {
            if !self.relevant(planner, lease) {
                continue;
            }
            match planner.plan(nl, lease) {
                Ok(objects) => {
                    let entry = Installed {
                        lease: SharedLease::clone(lease),
                        objects: objects.into_boxed_slice(),
                    };
                    self.known.insert(key_of(lease), entry);
                }
                Err(reason) => report.errors.push(format!("{}: {reason}", label_of(lease))),
            }
        }
        // Sorted vectors rather than hash sets: with 5,000 peers (15,000 objects) the sets
        // were the daemon's peak memory, at about three times the size.
        let mut current = planner.owned(nl)?;
        current.sort_unstable();
        current.dedup();

        let mut labels: Vec<Option<&Lease>> = vec![None];
        let mut wanted: Vec<Job> = Vec::new();
        for entry in self.known.values() {
            let peer = labels.len();
            labels.push(Some(&*entry.lease));
            wanted.extend(entry.objects.iter().map(|&object| Job { peer, object }));
        }
        // Stable, so an object two peers want stays with the first, as it did with a set.
        wanted.sort_by_key(|j| j.object);
        wanted.dedup_by(|later, first| later.object == first.object);
        let removals: Vec<Job> = {
            let mut wanted_keys: Vec<Key> = wanted.iter().map(|j| j.object.key()).collect();
            wanted_keys.sort_unstable();
            current
                .iter()
                .filter(|o| {
                    wanted.binary_search_by(|j| j.object.cmp(o)).is_err()
                        && wanted_keys.binary_search(&o.key()).is_err()
                })
                .map(|&object| Job { peer: 0, object })
                .collect()
        };
        wanted.retain(|j| current.binary_search(&j.object).is_err());
        drop(current);
        let installs = wanted;

        for job in &installs {
            log::debug!(
                "reconcile: installing missing {} of {}",
                job.object,
                describe(&labels, job.peer)
            );
        }
        for job in &removals {
            log::debug!("reconcile: removing {} that belongs to no peer", job.object);
        }
        let outcome = apply(
            nl,
            &|i| describe(&labels, i),
            removals,
            installs,
            planner.hint(),
        );
        if outcome.installed + outcome.removed > 0 {
            log::info!(
                "reconcile: restored {} and removed {} kernel objects for {} peers",
                outcome.installed,
                outcome.removed,
                self.known.len()
            );
        }
        report.added = outcome.installed;
        report.removed = outcome.removed;
        report.repaired = outcome.installed + outcome.removed;
        report.errors.extend(outcome.errors);
        Ok(report)
    }
}

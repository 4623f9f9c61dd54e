//! Lease acquisition (upstream `AcquireLease`): reuse our record by PublicIP, else the subnet
//! we held before (from subnet.env) if nobody holds it, else a random free one — each new
//! record created with compare-and-swap so two nodes never share a subnet.
//!
//! A node alone behaves as upstream's. Thousands of nodes starting at once all pick among the
//! same first free subnets and most lose the compare-and-swap; what a loser does next decides
//! whether a cluster start takes seconds or never ends. It picks among more free subnets than
//! the hundred everyone else is fighting over, and re-reads the records only when those it
//! has not seen could spoil that pick: etcd (3.4) reads every record under the prefix to
//! answer a Range of it, even one filtered to recent revisions (only a count comes from its
//! index), and with 5,000 nodes those re-reads were most of etcd's work.

use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;

use super::store::{LeaseStore, Listing, Owner, SubnetError};
use super::{alloc, parse_subnet_key, Lease, LeaseAttrs};

/// Attempts before giving up on a contended pool. Upstream aborts on the first lost race
/// (its retry only covered a different error); here a loser picks again, out of the way of
/// the winner and of the records written since its listing.
const ATTEMPTS: usize = 10;

/// Each step multiplies the number of free subnets a node picks among by this much, at most
/// [`SPREAD_STEPS`] times: 100 (upstream's), 1,600, 25,600. A lost race is one step; 5,000
/// nodes released together in a /8 then need under three claims each instead of one round
/// per hundred nodes.
const SPREAD: usize = 16;
const SPREAD_STEPS: u32 = 2;

/// How many free subnets to pick among at spread `step`.
fn window(step: u32) -> usize {
    alloc::MAX_CANDIDATES * SPREAD.pow(step.min(SPREAD_STEPS))
}

/// Records a node has not seen may make up at most 1 in this many of the free subnets it
/// picks among; more, and it widens further or, when the pool is too small for that,
/// re-reads.
const STALE_SHARE: usize = 4;

/// What this node asks for.
#[derive(Debug, Clone)]
pub struct AcquireRequest<'a> {
    /// Checked config (SubnetLen/Min/Max filled in).
    pub config: &'a NetworkConfig,
    pub attrs: &'a LeaseAttrs,
    /// The subnet this node had before (subnet.env), reused when nobody holds it.
    pub previous: Option<(Ipv4Net, Option<Ipv6Net>)>,
}

type At = (Ipv4Net, Option<Ipv6Net>);

/// What one acquisition knows of the store, kept across its attempts.
#[derive(Debug, Default)]
struct View {
    /// Every record seen, sorted, each once.
    taken: Vec<At>,
    /// Records with our address, in listing order, and whether each is a reservation.
    ours: Vec<(At, bool)>,
    revision: Option<i64>,
    /// Read in full in this attempt. Otherwise a record deleted since still counts as
    /// taken: only cautious, except when it makes the pool look full.
    fresh: bool,
}

impl View {
    fn apply(&mut self, listing: Listing, owner: &Owner) {
        if listing.changes_only {
            self.fresh = false;
        } else {
            *self = View {
                fresh: true,
                ..View::default()
            };
        }
        for slot in listing.slots {
            let at = (slot.subnet, slot.ipv6_subnet);
            // A rewritten record is judged by its new attributes.
            self.ours.retain(|o| o.0 != at);
            if slot.attrs.as_deref().is_some_and(|a| owner.owns(a)) {
                self.ours.push((at, slot.reserved));
            }
            self.taken.push(at);
        }
        self.taken.sort_unstable();
        self.taken.dedup();
        self.revision = listing.revision;
    }

    fn add(&mut self, at: At) {
        if let Err(i) = self.taken.binary_search(&at) {
            self.taken.insert(i, at);
        }
    }

    /// Whether a claim naming the record `holder`, written at `revision`, outlived it: the
    /// claim is older than our listing and the record was not in it. Our own record's claim
    /// (we are re-creating that very record) is ours to take. The store checks again,
    /// atomically, that the record is gone.
    fn stale_claim(
        &self,
        holder: &str,
        revision: i64,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> bool {
        if holder == crate::subnet::subnet_key(subnet, ipv6_subnet) {
            return true;
        }
        let listed_after = self.revision.is_some_and(|r| revision <= r);
        let gone =
            parse_subnet_key(holder).is_some_and(|at| self.taken.binary_search(&at).is_err());
        listed_after && gone
    }

    fn forget(&mut self, at: At) {
        self.taken.retain(|t| *t != at);
        self.ours.retain(|o| o.0 != at);
    }

    fn taken_v4(&self) -> Vec<Ipv4Net> {
        self.taken.iter().map(|t| t.0).collect()
    }

    fn taken_v6(&self) -> Vec<Ipv6Net> {
        self.taken.iter().filter_map(|t| t.1).collect()
    }

    /// How many subnets a pick among `window` could choose from, by what this view knows.
    fn free_within(&self, cfg: &NetworkConfig, window: usize) -> usize {
        let v4 = if cfg.enable_ipv4 {
            alloc::v4_candidates_within(cfg, &self.taken_v4(), window).len()
        } else {
            window
        };
        let v6 = if cfg.enable_ipv6 {
            alloc::v6_candidates_within(cfg, &self.taken_v6(), window).len()
        } else {
            window
        };
        v4.min(v6)
    }
}

/// The spread step after a lost race at `step`, and whether to re-read the records first.
/// The store holds `unknown` records the view lacks (`None`: it cannot count them cheaply);
/// the view sees `free_max` free subnets in the widest window. The step grows by one, and
/// further while the unseen records would be more than 1 in [`STALE_SHARE`] of the pick's
/// choices. A re-read is the last resort: etcd reads every record for it, so in a storm it
/// costs far more than the claims it would spare; it is cheap only where the pool is too
/// small to spread out of the unseen records' way, which is where it is needed.
fn after_loss(step: u32, unknown: Option<usize>, free_max: usize) -> (u32, bool) {
    let next = (step + 1).min(SPREAD_STEPS);
    let Some(unknown) = unknown else {
        return (next, true);
    };
    match (next..=SPREAD_STEPS).find(|&k| window(k).min(free_max) >= unknown * STALE_SHARE) {
        Some(k) => (k, false),
        None => (next, true),
    }
}

/// What happens to a reservation this node reuses: each keyspace does what upstream's code
/// for it does (see [`LeaseStore::keeps_reservations`]).
fn log_reservation(subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>, kept: bool) {
    let key = crate::subnet::subnet_key(subnet, ipv6_subnet);
    if kept {
        log::info!("{key} is a reservation (no TTL): it stays one and is not renewed");
    } else {
        log::warn!("{key} is a reservation (no etcd lease): etcd v3 mode puts it on a renewed lease, as upstream flannel does; it is an ordinary lease from now on");
    }
}

fn describe(subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> String {
    match ipv6_subnet {
        Some(v6) => format!("ip: {subnet} ipv6: {v6}"),
        None => format!("ip: {subnet} ipv6: <nil>"),
    }
}

fn lease(
    subnet: Ipv4Net,
    ipv6_subnet: Option<Ipv6Net>,
    attrs: &LeaseAttrs,
    expiration: Option<std::time::SystemTime>,
) -> Lease {
    Lease {
        enable_ipv4: true,
        enable_ipv6: ipv6_subnet.is_some(),
        subnet,
        ipv6_subnet,
        attrs: attrs.clone(),
        expiration,
        // The watch tells: our record is in its first snapshot.
        created: 0,
    }
}

/// Acquires a lease, retrying lost creation races with a short random pause. Shared by the
/// v3 and v2 keyspaces.
pub async fn acquire_lease(
    reg: &(impl LeaseStore + ?Sized),
    req: &AcquireRequest<'_>,
) -> Result<Lease, SubnetError> {
    let owner = Owner::new(req.config, req.attrs);
    let mut view = View::default();
    view.apply(reg.list_slots(&owner, None).await?, &owner);
    let mut step = 0;
    for attempt in 1..=ATTEMPTS {
        let mut result = try_acquire(reg, req, &mut view, window(step)).await;
        if matches!(result, Err(SubnetError::OutOfSubnets)) && !view.fresh {
            view.apply(reg.list_slots(&owner, None).await?, &owner);
            result = try_acquire(reg, req, &mut view, window(step)).await;
        }
        match result {
            Err(SubnetError::AlreadyExists) => {
                view.fresh = false;
                log::info!("subnet taken by another node while we claimed it (attempt {attempt}/{ATTEMPTS}), retrying");
                tokio::time::sleep(Duration::from_millis(fastrand::u64(10..200))).await;
                let unknown = reg
                    .count_records()
                    .await?
                    .map(|n| n.saturating_sub(view.taken.len()));
                let free_max = view.free_within(req.config, window(SPREAD_STEPS));
                let reread;
                (step, reread) = after_loss(step, unknown, free_max);
                if reread {
                    view.apply(reg.list_slots(&owner, view.revision).await?, &owner);
                }
            }
            other => return other,
        }
    }
    Err(SubnetError::MaxRetries)
}

/// One attempt on what `view` knows; a subnet lost to another node is marked taken in it.
async fn try_acquire(
    reg: &(impl LeaseStore + ?Sized),
    req: &AcquireRequest<'_>,
    view: &mut View,
    window: usize,
) -> Result<Lease, SubnetError> {
    let cfg = req.config;
    let attrs = req.attrs;

    if let Some(&((subnet, ipv6_subnet), reserved)) = view.ours.first() {
        view.forget((subnet, ipv6_subnet));
        let what = describe(subnet, ipv6_subnet);
        if alloc::lease_compatible(cfg, subnet, ipv6_subnet) {
            log::info!(
                "Found lease ({what}) for current IP ({}), reusing",
                attrs.public_ip
            );
            let keep = reserved && reg.keeps_reservations();
            if reserved {
                log_reservation(subnet, ipv6_subnet, keep);
            }
            let expiration = reg.update_subnet(subnet, ipv6_subnet, attrs, keep).await?;
            return Ok(lease(subnet, ipv6_subnet, attrs, expiration));
        }
        log::info!("Found lease ({what}) for current IP ({}) but not compatible with current config, deleting", attrs.public_ip);
        reg.delete_subnet(subnet, ipv6_subnet).await?;
    }

    if let Some((subnet, ipv6_subnet)) = req.previous {
        let held = view.taken.iter().any(|&(l4, l6)| {
            let v4 = cfg.enable_ipv4
                && (l4.contains(&subnet.network()) || subnet.contains(&l4.network()));
            let v6 = match (l6, ipv6_subnet) {
                (Some(a), Some(b)) => a.contains(&b.network()) || b.contains(&a.network()),
                _ => false,
            };
            v4 || v6
        });
        if !held {
            if alloc::lease_compatible(cfg, subnet, ipv6_subnet) {
                log::info!(
                    "Found previously leased subnet ({}), reusing",
                    describe(subnet, ipv6_subnet)
                );
                return create(reg, view, subnet, ipv6_subnet, attrs).await;
            }
            log::warn!(
                "Found previously leased subnet ({}) but not compatible with the Etcd network config, ignoring",
                describe(subnet, ipv6_subnet)
            );
        }
    }

    if let (Some(min), Some(max)) = (cfg.subnet_min, cfg.subnet_max) {
        log::info!("Picking subnet in range {min} ... {max}");
    }
    let (subnet, ipv6_subnet) =
        alloc::allocate_within(cfg, &view.taken_v4(), &view.taken_v6(), window, |n| {
            fastrand::usize(..n)
        })
        .ok_or(SubnetError::OutOfSubnets)?;
    let lease = create(reg, view, subnet, ipv6_subnet, attrs).await?;
    log::info!(
        "Allocated lease ({}) to current node ({})",
        describe(subnet, ipv6_subnet),
        attrs.public_ip
    );
    Ok(lease)
}

async fn create(
    reg: &(impl LeaseStore + ?Sized),
    view: &mut View,
    subnet: Ipv4Net,
    ipv6_subnet: Option<Ipv6Net>,
    attrs: &LeaseAttrs,
) -> Result<Lease, SubnetError> {
    let mut result = reg.create_subnet(subnet, ipv6_subnet, attrs, None).await;
    if let Err(SubnetError::Claimed {
        holder, revision, ..
    }) = &result
    {
        if view.stale_claim(holder, *revision, subnet, ipv6_subnet) {
            log::info!(
                "taking over the claim of {holder} on {}: that record is gone",
                describe(subnet, ipv6_subnet)
            );
            result = reg
                .create_subnet(subnet, ipv6_subnet, attrs, Some(holder.as_str()))
                .await;
        }
    }
    match result {
        Ok(expiration) => Ok(lease(subnet, ipv6_subnet, attrs, Some(expiration))),
        Err(SubnetError::AlreadyExists | SubnetError::Claimed { .. }) => {
            view.add((subnet, ipv6_subnet));
            Err(SubnetError::AlreadyExists)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "acquire_tests.rs"]
mod tests;

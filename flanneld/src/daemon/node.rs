//! The running node: follows peer leases into the backend, renews our lease, keeps local
//! state repaired, and re-acquires the lease if it is ever lost.

use std::time::{Duration, SystemTime};

use netconf::flannel::NetworkConfig;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};

use super::{
    address, blocking, stopped, BackendWorker, DaemonError, Manager, Stop, Upkeep, UpkeepFlags,
    WorkerError,
};
use crate::backend::{ApplyReport, ExternalInterface};
use crate::iface::IfaceRequest;
use crate::metrics::Repair;
use crate::options::{renew_delay, Options};
use crate::state::{DuplicatePublicIp, Phase, State};
use crate::status::{duplicate_message, duplicate_public_ips};
use crate::subnet::peers::{Change, Conflict, PeerSet};
use crate::subnet::store::failures::count_etcd_error;
use crate::subnet::store::{SubnetError, WatchMsg};
use crate::subnet::{Event, Lease, LeaseAttrs};

/// How often the kernel is compared against the full peer set, repairing routes or
/// neighbours someone deleted (upstream's host-gw route check runs every 10 s too).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);
/// Longest delay between retries of a failed renewal (upstream retries every minute),
/// shortened for test TTLs; retries start after [`RENEW_RETRY_FIRST`] and double.
const RENEW_RETRY: Duration = Duration::from_secs(60);
const RENEW_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Watch messages stamped with when they were seen, waiting for the node loop.
const STAMPED_QUEUE: usize = 256;
/// How long a subnet conflict this node loses must last before it moves: a claim that loses a
/// race of flannel-rs nodes in etcd v2 is withdrawn within milliseconds.
const CONFLICT_GRACE: Duration = Duration::from_secs(5);

pub struct NodeSetup {
    pub opts: Options,
    pub config: NetworkConfig,
    pub mgr: Manager,
    pub worker: BackendWorker,
    pub attrs: LeaseAttrs,
    pub lease: Lease,
    pub state: State,
    /// The external interface as selected, and the selection request (what pins the
    /// published addresses), for following its address changes.
    pub ext: ExternalInterface,
    pub iface: IfaceRequest,
}

pub struct Node {
    opts: Options,
    config: NetworkConfig,
    mgr: Manager,
    worker: BackendWorker,
    attrs: LeaseAttrs,
    lease: Lease,
    state: State,
    ext: ExternalInterface,
    iface: IfaceRequest,
    peers: PeerSet,
    upkeep: Upkeep,
    mtu: u32,
    /// `None` when leases do not expire (kube mode).
    renew_at: Option<Instant>,
    /// Whether the watch has shown our record as we wrote it since it was (re)acquired.
    /// Until then a snapshot without it, or with an older version, is stale rather than a
    /// loss: a kube-mode Node list is taken before our annotations are written.
    own_seen: bool,
    /// Renewals failed in a row, for the retry backoff.
    renew_failures: u32,
    /// Public IPs announced by more than one lease, as last reported.
    duplicates: Vec<DuplicatePublicIp>,
    /// Subnets held by more than one record, as last reported.
    conflicts: Vec<Conflict>,
    /// When to move our lease off a subnet another record holds first.
    move_at: Option<Instant>,
}

fn flags(opts: &Options) -> UpkeepFlags {
    UpkeepFlags {
        ip_masq: opts.ip_masq,
        random_fully_disabled: opts.random_fully_disabled,
        forward_rules: opts.forward_rules,
        blackhole_route: opts.blackhole_route,
    }
}

fn log_report(what: &str, r: &ApplyReport) {
    if r.added + r.removed + r.repaired > 0 {
        log::info!(
            "{what}: {} added, {} removed, {} repaired",
            r.added,
            r.removed,
            r.repaired
        );
    }
    for e in &r.errors {
        log::error!("{what}: {e}");
    }
}

impl Node {
    /// Activates the backend for the lease, installs rules and subnet.env, reports ready.
    pub async fn start(s: NodeSetup) -> Result<Node, DaemonError> {
        let own = s.lease.clone();
        s.worker
            .call(move |b| b.activate(&own))
            .await?
            .map_err(WorkerError::from)?;
        let mtu = s.worker.call(|b| b.mtu()).await?;
        let upkeep = Self::build_upkeep(&s.opts, &s.config, &s.lease, mtu).await?;
        let rules = upkeep.clone();
        blocking(move || rules.install_rules()).await??;
        let written = {
            let up = upkeep.clone();
            blocking(move || up.ensure_subnet_file()).await?
        };
        let mut node = Node {
            peers: PeerSet::new(Some(s.lease.clone())),
            renew_at: None,
            own_seen: false,
            renew_failures: 0,
            duplicates: Vec::new(),
            conflicts: Vec::new(),
            move_at: None,
            opts: s.opts,
            config: s.config,
            mgr: s.mgr,
            worker: s.worker,
            attrs: s.attrs,
            lease: s.lease,
            state: s.state,
            ext: s.ext,
            iface: s.iface,
            upkeep,
            mtu,
        };
        node.schedule_renewal();
        if let Ok(Some(source)) = node.worker.call(|b| b.datapath_source()).await {
            node.state.metrics().add_datapath(source.clone());
            node.state.lock().datapath = Some(source);
        }
        node.state.lock().lease = Some(node.lease.clone());
        match &written {
            Ok(_) => node.state.set_phase(Phase::Ready),
            Err(e) => node.state.fail_phase(Phase::SubnetFileFailed(format!(
                "{}: {e}",
                node.opts.subnet_file.display()
            ))),
        }
        match written {
            Ok(_) => {
                log::info!("Wrote subnet file to {}", node.opts.subnet_file.display());
                crate::notify::ready();
            }
            // Upstream carries on without the file; the resync tick retries, and the node
            // becomes ready once it succeeds.
            Err(e) => log::warn!(
                "Failed to write subnet file {}: {e}",
                node.opts.subnet_file.display()
            ),
        }
        node.mgr.complete();
        Ok(node)
    }

    async fn build_upkeep(
        opts: &Options,
        config: &NetworkConfig,
        lease: &Lease,
        mtu: u32,
    ) -> Result<Upkeep, DaemonError> {
        let (flags, config, lease, path) = (
            flags(opts),
            config.clone(),
            lease.clone(),
            opts.subnet_file.clone(),
        );
        blocking(move || Upkeep::new(flags, &config, &lease, mtu, &path)).await
    }

    fn schedule_renewal(&mut self) {
        let Some(ttl) = self.mgr.lease_ttl() else {
            self.renew_at = None;
            return;
        };
        let Some(expiration) = self.lease.expiration else {
            log::info!(
                "Lease {} is a reservation (no TTL): it is not renewed",
                self.lease.key()
            );
            self.renew_at = None;
            return;
        };
        let remaining = expiration
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let delay = renew_delay(remaining, self.opts.renew_margin, ttl);
        log::info!("Waiting for {delay:?} to renew lease");
        self.renew_at = Some(Instant::now() + delay);
    }

    pub async fn run(mut self, stop: Stop) {
        self.follow(stop).await;
        if let Err(e) = self.worker.call(|b| b.stop()).await {
            log::warn!("stopping the backend: {e}");
        }
    }

    async fn follow(&mut self, mut stop: Stop) {
        let mut rx = stamped(self.mgr.watch(stop.clone()).await);
        let mut addresses =
            match address::follow(self.ext.clone(), self.iface.clone(), stop.clone()) {
                Ok(rx) => rx,
                Err(e) => {
                    log::error!("cannot follow the addresses of {}: {e}", self.ext.name);
                    mpsc::channel(1).1
                }
            };
        let mut resync = interval(self.opts.iptables_resync);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reconcile = interval(RECONCILE_INTERVAL);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Both fire immediately once; the startup already did that work.
        resync.tick().await;
        reconcile.tick().await;
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                msg = rx.recv() => {
                    let Some(first) = msg else { return };
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    if self.process(batch).await {
                        self.reacquire(true, &mut stop).await;
                    }
                }
                _ = due(self.move_at) => self.move_off(&mut stop).await,
                Some(ext) = addresses.recv() => self.follow_address(ext).await,
                _ = due(self.renew_at) => self.renew(&mut stop).await,
                _ = resync.tick() => {
                    let up = self.upkeep.clone();
                    match blocking(move || (up.check_report(), up.subnet_file_in_place())).await {
                        Ok((report, in_place)) => {
                            let m = self.state.metrics();
                            m.repaired(Repair::Iptables, report.rule_sets);
                            m.repaired(Repair::SubnetFile, usize::from(report.subnet_file));
                            m.repaired(Repair::BlackholeRoute, report.blackholes);
                            if !report.errors.is_empty() {
                                self.state.set_error(report.errors.join("; "));
                            }
                            if in_place {
                                self.ready_once_written();
                            }
                        }
                        Err(e) => log::error!("{e}"),
                    }
                }
                _ = reconcile.tick() => {
                    self.reconcile().await;
                }
            }
        }
    }

    /// subnet.env could not be written at startup and a resync has written it since: only
    /// now may the CNI plugin, `/readyz` and systemd rely on this node.
    fn ready_once_written(&self) {
        if self.state.lock().ready() {
            return;
        }
        self.state.set_phase(Phase::Ready);
        log::info!("Wrote subnet file to {}", self.opts.subnet_file.display());
        crate::notify::ready();
    }

    /// Applies watch messages; returns true if our own record disappeared.
    async fn process(&mut self, batch: Vec<(std::time::Instant, WatchMsg)>) -> bool {
        let mut lost = false;
        let mut snapshot: Option<std::time::Instant> = None;
        let mut events: Vec<Event> = Vec::new();
        // When each entry of `events` was seen, for the route programming histogram.
        let mut seen: Vec<std::time::Instant> = Vec::new();
        let own_key = self.lease.key();
        for (at, msg) in batch {
            match msg {
                WatchMsg::Snapshot(leases) => {
                    // Our record's expiration is known from our own grant and renewals;
                    // records read back carry only the time they were read.
                    match leases.iter().find(|l| l.key() == own_key) {
                        Some(own) if self.is_ours(&own.attrs) => {
                            self.own_seen = true;
                            self.follow_lifetime(own.expiration);
                            self.own_created(own.created);
                        }
                        _ => lost |= self.own_seen,
                    }
                    self.peers.reset(leases);
                    // The reconcile below makes the kernel match the whole set.
                    snapshot = snapshot.or(Some(at));
                    events.clear();
                    seen.clear();
                }
                WatchMsg::Changes(changes) => {
                    for change in &changes {
                        match change {
                            Change::Put(l) if l.key() == own_key => {
                                if self.is_ours(&l.attrs) {
                                    self.own_seen = true;
                                    self.follow_lifetime(l.expiration);
                                    self.own_created(l.created);
                                } else if self.own_seen {
                                    log::warn!(
                                        "our lease record {own_key} was overwritten by {}",
                                        l.attrs.public_ip
                                    );
                                    lost = true;
                                }
                            }
                            Change::Delete {
                                subnet,
                                ipv6_subnet,
                            } if crate::subnet::subnet_key(*subnet, *ipv6_subnet) == own_key => {
                                lost = true;
                            }
                            _ => {}
                        }
                    }
                    events.extend(self.peers.update(changes));
                    seen.resize(events.len(), at);
                }
            }
        }
        if let Some(at) = snapshot {
            if self.reconcile().await {
                self.state.metrics().route_programmed(at);
            }
        } else if !events.is_empty() {
            match self.worker.call(move |b| b.handle(&events)).await {
                Ok(Ok(report)) => {
                    log_report("peer update", &report);
                    for at in seen {
                        self.state.metrics().route_programmed(at);
                    }
                }
                Ok(Err(e)) => {
                    log::error!("backend failed to apply peer events: {e}");
                    self.state.set_error(e);
                }
                Err(e) => log::error!("{e}"),
            }
        }
        // After the kernel is updated: the status copy and the duplicate check cost O(peers)
        // per batch and must not delay a new peer's route (the route-storm bench saw it).
        self.peers_changed();
        lost
    }

    /// Our record, as the watch shows it, gained or lost its lifetime: an operator turned it
    /// into a reservation (a write without lease or TTL) or back. Each keyspace does what
    /// upstream's code for it does: v2 keeps a reservation and stops renewing, v3 renews at
    /// once, which puts the record back on a lease.
    fn follow_lifetime(&mut self, record: Option<SystemTime>) {
        let key = self.lease.key();
        match (self.lease.expiration, record) {
            (Some(_), None) if self.mgr.keeps_reservations() => {
                log::info!("our lease record {key} is now a reservation (no TTL): it is kept as it is and no longer renewed");
                self.lease.expiration = None;
                self.schedule_renewal();
                self.state.lock().lease = Some(self.lease.clone());
            }
            (Some(_), None) if self.mgr.lease_ttl().is_some() => {
                log::warn!("our lease record {key} is no longer on an etcd lease (a reservation); etcd v3 mode puts it back on one now, as upstream flannel does");
                self.renew_at = Some(Instant::now());
            }
            (None, Some(expiration)) => {
                log::info!("our lease record {key} has a TTL again: renewing it from now on");
                self.lease.expiration = Some(expiration);
                self.schedule_renewal();
                self.state.lock().lease = Some(self.lease.clone());
            }
            _ => {}
        }
    }

    /// Whether our record holding `attrs` is as we wrote it: what is published, or what is
    /// being published after an address change.
    fn is_ours(&self, attrs: &LeaseAttrs) -> bool {
        *attrs == self.attrs || *attrs == self.lease.attrs
    }

    /// The external interface's addresses changed: the backend follows first (a VTEP must
    /// send from an address the host has), then the lease is republished with the new
    /// PublicIP(v6) unless one was pinned (`--public-ip`, kube's `node-public-ip`), and peers
    /// update their routes, neighbours and FDB entries from the new record.
    async fn follow_address(&mut self, ext: ExternalInterface) {
        if ext == self.ext {
            return;
        }
        log::info!(
            "interface {} now has address {}{} (was {}{})",
            ext.name,
            ext.iface_addr,
            ext.iface_v6_addr
                .map(|a| format!(" and {a}"))
                .unwrap_or_default(),
            self.ext.iface_addr,
            self.ext
                .iface_v6_addr
                .map(|a| format!(" and {a}"))
                .unwrap_or_default(),
        );
        let moved = ext.clone();
        match self.worker.call(move |b| b.set_external(&moved)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::error!("backend could not follow the new address: {e}");
                self.state
                    .set_error(format!("following the new address: {e}"));
            }
            Err(e) => log::error!("{e}"),
        }
        let mut next = self.attrs.clone();
        if self.ext.ext_addr != ext.ext_addr {
            next.public_ip = ext.ext_addr;
        }
        if self.ext.ext_v6_addr != ext.ext_v6_addr && self.config.enable_ipv6 {
            next.public_ipv6 = ext.ext_v6_addr;
        }
        self.ext = ext;
        if next == self.attrs {
            return;
        }
        self.attrs = next;
        if self.mgr.lease_ttl().is_some() {
            // The renewal writes it: compare-and-swap on what the record holds, with its
            // retries, and a re-acquisition if the record is gone.
            self.renew_at = Some(Instant::now());
            return;
        }
        match self.mgr.republish(&self.attrs).await {
            Ok(published) => {
                log::info!(
                    "Node annotations republished with PublicIP {}",
                    published.public_ip
                );
                self.attrs = published.clone();
                self.lease.attrs = published;
                self.state.lock().lease = Some(self.lease.clone());
            }
            Err(e) => {
                log::error!("republishing the lease: {e}");
                self.state.set_error(format!("republishing the lease: {e}"));
            }
        }
    }

    /// Our record's place in the store's creation order, which decides subnet conflicts.
    fn own_created(&mut self, created: u64) {
        if self.lease.created != created {
            self.lease.created = created;
            self.peers.set_own_created(created);
        }
    }

    /// Reports subnets held by more than one record, each new one once, and schedules a move
    /// off one this node holds after another record.
    fn report_conflicts(&mut self) {
        let conflicts = self.peers.conflicts();
        let movable = self.mgr.can_release();
        for c in conflicts.iter().filter(|c| !self.conflicts.contains(c)) {
            let msg = conflict_message(c, movable);
            log::error!("{msg}");
            self.state.set_error(msg);
        }
        let lost = self.lease.created != 0 && conflicts.iter().any(Conflict::lost_by_own);
        self.move_at = match (lost && movable, self.move_at) {
            (true, Some(at)) => Some(at),
            (true, None) => Some(Instant::now() + CONFLICT_GRACE),
            (false, _) => None,
        };
        self.conflicts = conflicts;
    }

    /// Gives up a lease whose subnet another, older record holds, and acquires a new one.
    async fn move_off(&mut self, stop: &mut Stop) {
        self.move_at = None;
        if !self.peers.conflicts().iter().any(Conflict::lost_by_own) {
            return;
        }
        log::warn!(
            "releasing lease {} to move off a subnet an older record holds",
            self.lease.key()
        );
        if let Err(e) = self.mgr.release(&self.lease).await {
            log::error!(
                "failed to release lease {}: {e} (retrying)",
                self.lease.key()
            );
            count_etcd_error(&e);
            self.move_at = Some(Instant::now() + CONFLICT_GRACE);
            return;
        }
        self.reacquire(false, stop).await;
        self.report_conflicts();
    }

    /// Publishes the peer set and reports public IPs announced by more than one lease (the
    /// NAT-interface pitfall), each new one once.
    fn peers_changed(&mut self) {
        self.report_conflicts();
        let peers = self.peers.all();
        let duplicates = duplicate_public_ips(Some(&self.lease), &peers);
        for d in duplicates.iter().filter(|d| !self.duplicates.contains(d)) {
            let msg = duplicate_message(d);
            log::error!("{msg}");
            self.state.set_error(msg);
        }
        let mut st = self.state.lock();
        st.peers = peers;
        st.duplicates = duplicates.clone();
        drop(st);
        self.duplicates = duplicates;
    }

    /// Makes the kernel match the peer set; true when the backend applied it.
    async fn reconcile(&mut self) -> bool {
        let peers = self.peers.all();
        match self.worker.call(move |b| b.reconcile(&peers)).await {
            Ok(Ok(report)) => {
                log_report("reconcile", &report);
                self.state
                    .metrics()
                    .repaired(Repair::Backend, report.repaired);
                true
            }
            Ok(Err(e)) => {
                log::error!("backend reconcile failed: {e}");
                self.state.set_error(e);
                false
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    async fn renew(&mut self, stop: &mut Stop) {
        match self.mgr.renew(&self.lease, &self.attrs).await {
            Ok(expiration) => {
                self.lease.expiration = expiration;
                let expires = expiration.map_or_else(|| "never".to_owned(), crate::logger::rfc3339);
                if self.lease.attrs != self.attrs {
                    self.lease.attrs = self.attrs.clone();
                    log::info!(
                        "Lease {} republished with PublicIP {}{}, expiration: {expires}",
                        self.lease.key(),
                        self.attrs.public_ip,
                        self.attrs
                            .public_ipv6
                            .map(|ip| format!(" and PublicIPv6 {ip}"))
                            .unwrap_or_default()
                    );
                } else {
                    log::info!("Lease renewed, new expiration: {expires}");
                }
                self.state.metrics().lease_renewed();
                self.renew_failures = 0;
                self.state.lock().lease = Some(self.lease.clone());
                self.schedule_renewal();
            }
            Err(SubnetError::LeaseLost) => {
                self.state.metrics().lease_failed();
                self.renew_failures = 0;
                self.reacquire(true, stop).await
            }
            Err(e) => {
                // Upstream exits after failing to renew; the routes and rules in place keep
                // serving pods, so keep trying, quickly at first, until etcd is back.
                count_etcd_error(&e);
                self.state.metrics().lease_failed();
                let ttl = self.mgr.lease_ttl().unwrap_or(RENEW_RETRY);
                let retry = renew_retry(self.renew_failures, RENEW_RETRY.min(ttl / 4));
                self.renew_failures = self.renew_failures.saturating_add(1);
                log::error!("Error renewing lease (trying again in {retry:?}): {e}");
                self.state.set_error(format!("renewing lease: {e}"));
                self.renew_at = Some(Instant::now() + retry);
            }
        }
    }

    /// Our record is gone (expired while etcd was unreachable, or deleted by hand). Upstream
    /// exits here; we keep routes and rules serving and claim a lease again, preferring the
    /// same subnet (`keep`) so pods keep their addresses.
    async fn reacquire(&mut self, keep: bool, stop: &mut Stop) {
        if keep {
            log::warn!(
                "Lease {} has been revoked; re-acquiring (the data plane stays up)",
                self.lease.key()
            );
        }
        let previous = keep.then_some((self.lease.subnet, self.lease.ipv6_subnet));
        let Some(lease) = self
            .mgr
            .reacquire(&self.config, &self.attrs, previous, &self.state, stop)
            .await
        else {
            return;
        };
        let changed = lease.key() != self.lease.key();
        self.lease = lease;
        self.own_seen = false;
        self.schedule_renewal();
        self.state.lock().lease = Some(self.lease.clone());
        if !changed {
            return;
        }
        log::warn!("this node moved to subnet {}; pods started before keep their old addresses until restarted", self.lease.subnet);
        let own = self.lease.clone();
        match self.worker.call(move |b| b.activate(&own)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("backend activation for the new lease failed: {e}"),
            Err(e) => log::error!("{e}"),
        }
        let events = self.peers.set_own(self.lease.clone());
        self.peers_changed();
        if !events.is_empty() {
            if let Ok(Ok(r)) = self.worker.call(move |b| b.handle(&events)).await {
                log_report("peer update", &r);
            }
        }
        match Self::build_upkeep(&self.opts, &self.config, &self.lease, self.mtu).await {
            Ok(up) => {
                self.upkeep = up.clone();
                if let Err(e) = blocking(move || up.check()).await {
                    log::error!("{e}");
                }
            }
            Err(e) => log::error!("{e}"),
        }
    }
}

/// The delay before retry number `failures + 1` of a renewal: doubling from
/// [`RENEW_RETRY_FIRST`], never beyond `cap`.
fn renew_retry(failures: u32, cap: Duration) -> Duration {
    RENEW_RETRY_FIRST
        .saturating_mul(1u32 << failures.min(16))
        .min(cap)
}

/// Stamps each watch message with when it came off the watch, so the route programming
/// time includes any wait behind a busy backend.
fn stamped(mut rx: mpsc::Receiver<WatchMsg>) -> mpsc::Receiver<(std::time::Instant, WatchMsg)> {
    let (tx, out) = mpsc::channel(STAMPED_QUEUE);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if tx.send((std::time::Instant::now(), msg)).await.is_err() {
                return;
            }
        }
    });
    out
}

/// One line saying who holds a subnet of two records and what happens now.
fn conflict_message(c: &Conflict, movable: bool) -> String {
    let first = &c.holders[0];
    let later: Vec<String> = c.holders[1..]
        .iter()
        .map(|h| format!("{} ({})", h.key, h.public_ip))
        .collect();
    let later = later.join(", ");
    if first.own {
        return format!(
            "subnet {} of this node's lease {} is also held by {later}, a newer record: this node keeps it and routes none of it there; flannel-rs moves the newer one off by itself, an upstream flanneld there must be restarted",
            c.subnet, first.key
        );
    }
    match c.holders.iter().find(|h| h.own) {
        Some(own) if movable => format!(
            "subnet {} of this node's lease {} is also held by {} ({}), an older record: this node moves to another subnet",
            c.subnet, own.key, first.key, first.public_ip
        ),
        Some(own) => format!(
            "subnet {} of this node ({}) is also assigned to the node with public IP {}, whose record is older: other nodes route it there; every node needs a pod CIDR of its own",
            c.subnet, own.key, first.public_ip
        ),
        None => format!(
            "subnet {} is held by {} ({}) and by {later}: routing it to {}, whose record is older",
            c.subnet, first.key, first.public_ip, first.public_ip
        ),
    }
}

/// Resolves at `at`; never without one.
async fn due(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_retries_back_off_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        let delays: Vec<u64> = (0..8).map(|n| renew_retry(n, cap).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(renew_retry(u32::MAX, cap), cap);
        // A short test TTL caps it below a second.
        assert_eq!(
            renew_retry(0, Duration::from_millis(500)),
            Duration::from_millis(500)
        );
    }
}

//! Keeping the table in step with the API server.
//!
//! Three list + watch loops ([`crate::k8s::ListWatch`]: Namespaces, Pods, NetworkPolicies;
//! resuming after a watch ends, relisting after a 410, riding out an unreachable API server
//! with one log line per outage) run as async tasks and hand converted changes to one
//! dedicated OS thread, the enforcer. It owns the [`Cluster`], compiles, and writes the
//! table with `nft`, which blocks — so none of it runs on the async runtime's threads. Changes
//! that arrive while a write is under way are taken together in the next one.
//!
//! Nothing is written before all three kinds have been listed once: until then the table a
//! previous run left keeps enforcing. A relist replaces a kind's objects wholesale (what was
//! not listed is gone). A watch that fails keeps the last state, and so the last rules, until
//! it lists again; a write that fails leaves the kernel as it was and is retried in full at
//! the next resync tick.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::cluster::{Cluster, PodInfo};
use super::compile::{compile, Compiled, Families, LocalPod};
use super::objects::{key_of, resource_version, PolicyNamespace, PolicyObject, PolicyPod};
use super::policy::{Policy, PolicyKey};
use super::ruleset::{DENIED_EGRESS, DENIED_INGRESS, TABLE};
use super::selector::Labels;
use super::table::Table;
use crate::k8s::{ListWatch, Update as Listed};
use crate::metrics::{NetpolError, NetpolMetrics, Repair};
use crate::state::State;
use flannel_status::{FailedPolicy, NetpolReport, PodPolicies};

/// What the enforcer needs to know about this node.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    pub families: Families,
    /// How often the table is checked for drift and the drop counters are read.
    pub resync: Duration,
}

/// One kind's change, as the enforcer applies it.
enum Update<K, V> {
    /// A complete (re)listing: everything not in it is gone.
    Listed(Vec<(K, V)>),
    Put(K, V),
    Delete(K),
}

enum Change {
    Namespaces(Update<String, Labels>),
    Pods(Update<(String, String), PodInfo>),
    Policies(Update<PolicyKey, Policy>),
}

struct Msg {
    change: Change,
    at: Instant,
    resource_version: Option<u64>,
}

/// How the first write after start went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstSync {
    Pending,
    Done,
    Failed(String),
}

/// The running enforcement; dropping it changes nothing (the watchers stop with the daemon's
/// stop signal, the enforcer when they are gone; the table stays).
pub struct Handle {
    first: watch::Receiver<FirstSync>,
}

impl Handle {
    /// Waits for the first whole-table write: `Ok` once the cluster's policies are enforced,
    /// `Err` with nft's reason when the table could not be written.
    pub async fn first_sync(&mut self) -> Result<(), String> {
        match self
            .first
            .wait_for(|s| *s != FirstSync::Pending)
            .await
            .map(|s| s.clone())
        {
            Ok(FirstSync::Failed(e)) => Err(e),
            Ok(_) => Ok(()),
            Err(_) => Err("network policy enforcement stopped before its first sync".into()),
        }
    }
}

/// Starts the watchers and the enforcer thread.
pub fn start(
    client: Client,
    settings: Settings,
    state: State,
    stop: watch::Receiver<bool>,
) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel();
    let (first_tx, first) = watch::channel(FirstSync::Pending);
    let metrics = state.metrics().netpol();
    let enforcer = Enforcer {
        settings,
        state,
        metrics,
        cluster: Cluster::default(),
        listed: [false; 3],
        table: Table::new(),
        pending: Vec::new(),
        dirty: false,
        seen_version: None,
        enforced_version: None,
        failed: BTreeMap::new(),
        last_error: None,
        last_sync: None,
        write_failed: false,
        first: Some(first_tx),
    };
    std::thread::Builder::new()
        .name("netpol".into())
        .spawn(move || enforcer.run(rx))?;
    log::info!("network policy: listing Namespaces, Pods and NetworkPolicies; the node is ready once they are enforced");
    tokio::spawn(follow(
        Api::<PolicyNamespace>::all(client.clone()),
        "network policy: namespace watch",
        |o: &PolicyNamespace| (o.metadata.name.clone().unwrap_or_default(), o.labels()),
        Change::Namespaces,
        tx.clone(),
        stop.clone(),
    ));
    tokio::spawn(follow(
        Api::<PolicyPod>::all(client.clone()),
        "network policy: pod watch",
        |o: &PolicyPod| (key_of(&o.metadata), o.info()),
        Change::Pods,
        tx.clone(),
        stop.clone(),
    ));
    tokio::spawn(follow(
        Api::<PolicyObject>::all(client),
        "network policy: NetworkPolicy watch",
        |o: &PolicyObject| (o.key(), o.policy()),
        Change::Policies,
        tx,
        stop,
    ));
    Ok(Handle { first })
}

/// Follows one kind until the daemon stops, handing every change to the enforcer.
async fn follow<T, K, V>(
    api: Api<T>,
    label: &'static str,
    convert: fn(&T) -> (K, V),
    wrap: fn(Update<K, V>) -> Change,
    tx: Sender<Msg>,
    mut stop: watch::Receiver<bool>,
) where
    T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut lw = ListWatch::new(api, label);
    loop {
        let update = tokio::select! {
            u = lw.next() => u,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (change, version) = match update {
            Listed::Listed(items) => (
                wrap(Update::Listed(items.iter().map(convert).collect())),
                lw.resource_version().and_then(|v| v.parse().ok()),
            ),
            Listed::Applied(obj) => {
                let (k, v) = convert(&obj);
                (wrap(Update::Put(k, v)), resource_version(obj.meta()))
            }
            Listed::Deleted(obj) => {
                let (k, _) = convert(&obj);
                (wrap(Update::Delete(k)), resource_version(obj.meta()))
            }
        };
        let msg = Msg {
            change,
            at: Instant::now(),
            resource_version: version,
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

fn apply<K: Ord, V>(map: &mut BTreeMap<K, V>, u: Update<K, V>) {
    match u {
        Update::Listed(all) => *map = all.into_iter().collect(),
        Update::Put(k, v) => {
            map.insert(k, v);
        }
        Update::Delete(k) => {
            map.remove(&k);
        }
    }
}

struct Enforcer {
    settings: Settings,
    state: State,
    metrics: Arc<NetpolMetrics>,
    cluster: Cluster,
    /// Namespaces, Pods, NetworkPolicies listed at least once.
    listed: [bool; 3],
    table: Table,
    /// When each change not yet enforced arrived.
    pending: Vec<Instant>,
    dirty: bool,
    seen_version: Option<u64>,
    enforced_version: Option<u64>,
    /// Policies failing closed, with the reason last logged.
    failed: BTreeMap<PolicyKey, String>,
    last_error: Option<String>,
    last_sync: Option<SystemTime>,
    write_failed: bool,
    first: Option<watch::Sender<FirstSync>>,
}

impl Enforcer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_check = Instant::now() + self.settings.resync;
        loop {
            let wait = next_check.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    self.take(msg);
                    while let Ok(more) = rx.try_recv() {
                        self.take(more);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_check {
                self.check();
                next_check = Instant::now() + self.settings.resync;
            }
            if self.dirty && self.listed.iter().all(|l| *l) {
                self.sync();
            }
        }
    }

    fn take(&mut self, msg: Msg) {
        let c = &mut self.cluster;
        match msg.change {
            Change::Namespaces(u) => {
                self.listed[0] |= matches!(u, Update::Listed(_));
                apply(&mut c.namespaces, u);
            }
            Change::Pods(u) => {
                self.listed[1] |= matches!(u, Update::Listed(_));
                match u {
                    Update::Listed(all) => {
                        c.pods.clear();
                        for ((ns, name), pod) in all {
                            c.put_pod(&ns, &name, pod);
                        }
                    }
                    Update::Put((ns, name), pod) => c.put_pod(&ns, &name, pod),
                    Update::Delete((ns, name)) => c.remove_pod(&ns, &name),
                }
            }
            Change::Policies(u) => {
                self.listed[2] |= matches!(u, Update::Listed(_));
                apply(&mut c.policies, u);
            }
        }
        self.seen_version = self.seen_version.max(msg.resource_version);
        self.pending.push(msg.at);
        self.dirty = true;
    }

    fn sync(&mut self) {
        let Compiled {
            ruleset,
            local_pods,
            errors,
        } = compile(&self.cluster, &self.settings.node, self.settings.families);
        self.report_failed_policies(&errors);
        let rules = ruleset.rule_count();
        let elements = ruleset.element_count();
        let started = Instant::now();
        match self.table.apply(ruleset) {
            Ok(applied) => {
                if applied.full {
                    log::info!(
                        "network policy: table inet {TABLE} written ({} policies, {rules} rules, {elements} set elements) in {:?}",
                        self.cluster.policies.len(),
                        started.elapsed()
                    );
                }
                for at in self.pending.drain(..) {
                    self.metrics.synced(at);
                }
                self.dirty = false;
                self.write_failed = false;
                self.enforced_version = self.seen_version;
                self.last_sync = Some(SystemTime::now());
                self.last_error = None;
                self.metrics.set_policies(self.cluster.policies.len());
                self.metrics.set_rules(rules);
                if let Some(first) = self.first.take() {
                    let _ = first.send(FirstSync::Done);
                }
            }
            Err(e) => {
                let msg = format!("writing table inet {TABLE}: {e}");
                log::error!("network policy: {msg} (the previous rules stay; retrying)");
                self.metrics.error(NetpolError::Apply);
                self.write_failed = true;
                self.dirty = false;
                self.last_error = Some(msg.clone());
                if let Some(first) = self.first.take() {
                    let _ = first.send(FirstSync::Failed(msg));
                }
            }
        }
        self.publish(&local_pods, &errors);
    }

    /// Logs and counts each policy that fails closed (once per reason), and says when one is
    /// understood again.
    fn report_failed_policies(&mut self, errors: &[(PolicyKey, String)]) {
        let now: BTreeMap<PolicyKey, String> = errors.iter().cloned().collect();
        for (key, reason) in &now {
            if self.failed.get(key) != Some(reason) {
                log::error!(
                    "network policy: NetworkPolicy {key} cannot be enforced as written: {reason}; the pods it selects are isolated in its directions and it allows nothing (fail closed)"
                );
                self.metrics.error(NetpolError::Policy);
            }
        }
        for key in self.failed.keys().filter(|k| !now.contains_key(*k)) {
            if self.cluster.policies.contains_key(key) {
                log::info!("network policy: NetworkPolicy {key} is understood again");
            }
        }
        self.failed = now;
    }

    /// Drift and counters, every resync interval; a failed write is retried here in full.
    fn check(&mut self) {
        if !self.listed.iter().all(|l| *l) {
            return;
        }
        match self.table.present() {
            Ok(true) => {}
            Ok(false) => {
                log::warn!("network policy: table inet {TABLE} or one of its hooks is gone; writing it again");
                self.state.metrics().repaired(Repair::Netpol, 1);
                self.dirty = true;
            }
            Err(e) => log::warn!("network policy: cannot look for table inet {TABLE}: {e}"),
        }
        if self.write_failed {
            self.dirty = true;
        }
        if let Ok(counters) =
            netops::firewall::nft::list_counters(netops::firewall::nft::TableFamily::Inet, TABLE)
        {
            let get = |name: &str| {
                counters
                    .iter()
                    .find(|c| c.name == name)
                    .map_or(0, |c| c.packets)
            };
            self.metrics
                .set_denied(get(DENIED_INGRESS), get(DENIED_EGRESS));
        }
    }

    /// Publishes the status document: this node's pods and the failing policies.
    fn publish(&self, local_pods: &[LocalPod], errors: &[(PolicyKey, String)]) {
        let mut st = self.state.lock();
        let report = st.netpol.get_or_insert_with(NetpolReport::default);
        report.last_error = self.last_error.clone();
        report.synced = self.last_sync.is_some();
        report.policies = self.cluster.policies.len();
        report.pods = self.cluster.pod_count();
        if let Some(installed) = self.table.installed() {
            report.rules = installed.rule_count();
            report.set_elements = installed.element_count();
        }
        report.last_sync = self.last_sync.map(crate::logger::rfc3339);
        report.resource_version = self.enforced_version;
        report.failed_policies = errors
            .iter()
            .map(|(k, reason)| FailedPolicy {
                policy: k.to_string(),
                reason: reason.clone(),
            })
            .collect();
        let names = |keys: &[PolicyKey]| keys.iter().map(ToString::to_string).collect();
        report.local_pods = local_pods
            .iter()
            .map(|p| PodPolicies {
                pod: format!("{}/{}", p.namespace, p.name),
                ips: p.ips.clone(),
                ingress: names(&p.ingress),
                egress: names(&p.egress),
            })
            .collect();
    }
}

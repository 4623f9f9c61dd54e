//! The subnet manager behind the node loop: etcd leases or Kubernetes Nodes. Both deliver
//! peers as [`WatchMsg`]s; they differ in how a lease is claimed and whether it is renewed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::{Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;
use tokio::sync::mpsc;

use super::{acquire_until_stopped, sleep_or_stop, DaemonError, Stop, CONFIG_RETRY};
use crate::options::Options;
use crate::state::{Phase, State};
use crate::subnet::etcd::{StoreError, StoreSelector};
#[cfg(feature = "kube")]
use crate::subnet::kube::KubeManager;
use crate::subnet::store::failures::count_etcd_error;
use crate::subnet::store::{SubnetError, SubnetStore, WatchMsg};
use crate::subnet::{Lease, LeaseAttrs};

/// Watch messages are buffered up to this many while the backend is busy (etcd mode; kube
/// mode sizes its queue from `EVENT_QUEUE_DEPTH`).
const WATCH_QUEUE: usize = 256;
#[cfg(feature = "kube")]
const REACQUIRE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The two kinds of manager differ in kind, not only in backend: etcd leases are records
/// this node creates, renews and may release; kube mode's are the controller manager's pod
/// CIDRs. Which etcd keyspace holds the records is behind [`SubnetStore`].
#[derive(Clone)]
pub enum Manager {
    Etcd(Arc<dyn SubnetStore>),
    #[cfg(feature = "kube")]
    Kube(Arc<KubeManager>),
}

impl Manager {
    /// The lifetime of our lease record when it has to be renewed (etcd), `None` when
    /// leases do not expire (kube).
    pub fn lease_ttl(&self) -> Option<Duration> {
        match self {
            Manager::Etcd(reg) => Some(reg.ttl()),
            #[cfg(feature = "kube")]
            Manager::Kube(_) => None,
        }
    }

    /// Starts following peer leases. The first message is the full set.
    pub async fn watch(&self, stop: Stop) -> mpsc::Receiver<WatchMsg> {
        match self {
            Manager::Etcd(reg) => {
                let (tx, rx) = mpsc::channel(WATCH_QUEUE);
                reg.spawn_watch(tx, stop);
                rx
            }
            #[cfg(feature = "kube")]
            Manager::Kube(kube) => match kube.take_events() {
                Some(rx) => rx,
                // The node loop runs once per process; a second caller just gets no peers.
                None => mpsc::channel(1).1,
            },
        }
    }

    /// Writes `next` over our etcd record, which holds `lease.attrs`, with a fresh lifetime
    /// (compare-and-swap): a renewal when the two are equal, a republication when our
    /// address changed. A reservation stays one. Only called when [`Manager::lease_ttl`] is
    /// `Some`.
    pub async fn renew(
        &self,
        lease: &Lease,
        next: &LeaseAttrs,
    ) -> Result<Option<SystemTime>, SubnetError> {
        match self {
            Manager::Etcd(store) => {
                let reservation = lease.expiration.is_none();
                store
                    .rewrite_subnet(
                        lease.subnet,
                        lease.ipv6_subnet,
                        &lease.attrs,
                        next,
                        reservation,
                    )
                    .await
            }
            #[cfg(feature = "kube")]
            Manager::Kube(_) => Ok(lease.expiration),
        }
    }

    /// Kube mode: publishes `attrs` in our Node's annotations (leases there never expire, so
    /// nothing renews them); returns them as published (`public-ip-overwrite` applied).
    pub async fn republish(&self, attrs: &LeaseAttrs) -> Result<LeaseAttrs, String> {
        match self {
            Manager::Etcd(_) => Ok(attrs.clone()),
            #[cfg(feature = "kube")]
            Manager::Kube(kube) => kube
                .acquire(attrs)
                .await
                .map(|l| l.attrs)
                .map_err(|e| e.to_string()),
        }
    }

    /// Whether this node can give up its subnet for another: in etcd a lease is ours to
    /// release; in kube mode the pod CIDR is the controller manager's.
    pub fn can_release(&self) -> bool {
        matches!(self, Manager::Etcd(_))
    }

    /// Deletes our lease record (etcd), so a new lease can be acquired elsewhere.
    pub async fn release(&self, lease: &Lease) -> Result<(), SubnetError> {
        match self {
            Manager::Etcd(store) => store.delete_subnet(lease.subnet, lease.ipv6_subnet).await,
            #[cfg(feature = "kube")]
            Manager::Kube(_) => Ok(()),
        }
    }

    /// Whether our record, turned into a reservation (no lifetime), is left one and no longer
    /// renewed (etcd v2, as flannel ≤ v0.17), or renewed at once onto a lease (etcd v3, as
    /// upstream's v3 code does on reading the missing lease's lifetime as -1 s).
    pub fn keeps_reservations(&self) -> bool {
        match self {
            Manager::Etcd(store) => store.keeps_reservations(),
            #[cfg(feature = "kube")]
            Manager::Kube(_) => false,
        }
    }

    /// Claims a lease again after ours was lost, retrying with backoff until it works or a
    /// stop arrives (`None`). In kube mode "lost" means our annotations were altered or
    /// removed, or the Node was deleted and has to come back.
    pub async fn reacquire(
        &self,
        config: &NetworkConfig,
        attrs: &LeaseAttrs,
        previous: Option<(Ipv4Net, Option<Ipv6Net>)>,
        state: &State,
        stop: &mut Stop,
    ) -> Option<Lease> {
        match self {
            Manager::Etcd(reg) => {
                acquire_until_stopped(&**reg, config, attrs, previous, state, stop).await
            }
            #[cfg(feature = "kube")]
            Manager::Kube(kube) => {
                let mut delay = Duration::from_secs(1);
                loop {
                    match kube.acquire(attrs).await {
                        Ok(lease) => return Some(lease),
                        Err(e) => {
                            log::error!("failed to acquire lease: {e} (retrying in {delay:?})");
                            crate::subnet::store::failures::store_error(
                                crate::subnet::store::failures::StoreKind::Kube,
                            );
                            state.metrics().lease_failed();
                            state.fail_phase(Phase::AcquiringLease(Some(e.to_string())));
                        }
                    }
                    if sleep_or_stop(delay, stop).await {
                        return None;
                    }
                    delay = (delay * 2).min(REACQUIRE_BACKOFF_MAX);
                }
            }
        }
    }

    /// After the node is ready (upstream `CompleteLease`): kube mode reports the network as
    /// available on the Node, in the background (it retries until the API server takes it,
    /// and the node loop must not wait for that).
    pub fn complete(&self) {
        #[cfg(feature = "kube")]
        if let Manager::Kube(kube) = self {
            let kube = kube.clone();
            tokio::spawn(async move { kube.report_network_available().await });
        }
    }
}

/// What startup learns from the manager besides the config (kube mode's Node annotations).
#[derive(Debug, Clone, Default)]
pub struct StartupHints {
    pub public_ip: Option<std::net::Ipv4Addr>,
    pub public_ipv6: Option<std::net::Ipv6Addr>,
    pub macs: crate::subnet::StoredMacs,
}

impl Manager {
    /// Connects the subnet manager named by the flags and reads the network config.
    /// `Ok(None)`: stopped while waiting.
    pub async fn connect(
        opts: &Options,
        state: &State,
        stop: &mut Stop,
    ) -> Result<Option<(Manager, NetworkConfig)>, DaemonError> {
        if opts.kube_subnet_mgr {
            return Self::connect_kube(opts, stop).await;
        }
        // Without auth nothing is dialled here; with auth the token request can fail while
        // etcd is down, which is worth waiting out like any other etcd outage.
        let stores = loop {
            match StoreSelector::connect(&opts.etcd, opts.etcd_api, opts.lease_ttl).await {
                Ok(stores) => break stores,
                Err(
                    e @ StoreError::V3(SubnetError::Etcd(
                        etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_),
                    )),
                ) => return Err(DaemonError::Etcd(e)),
                Err(e) if e.is_permanent() => return Err(DaemonError::Etcd(e)),
                Err(e) => {
                    log::error!("failed to connect to etcd: {e}");
                    count_etcd_error(&e);
                    state.fail_phase(Phase::ConnectFailed(format!("etcd: {e}")));
                }
            }
            if sleep_or_stop(CONFIG_RETRY, stop).await {
                return Ok(None);
            }
        };
        let Some((store, config)) = super::config::wait_for_config(&stores, state, stop).await
        else {
            return Ok(None);
        };
        Ok(Some((Manager::Etcd(store), config)))
    }

    #[cfg(not(feature = "kube"))]
    async fn connect_kube(
        _: &Options,
        _: &mut Stop,
    ) -> Result<Option<(Manager, NetworkConfig)>, DaemonError> {
        Err(DaemonError::KubeUnsupported)
    }

    #[cfg(feature = "kube")]
    async fn connect_kube(
        opts: &Options,
        stop: &mut Stop,
    ) -> Result<Option<(Manager, NetworkConfig)>, DaemonError> {
        use crate::subnet::kube::KubeOptions;
        let kopts = KubeOptions {
            api_url: opts.kube_api_url.clone(),
            kubeconfig: opts.kubeconfig_file.clone(),
            annotation_prefix: opts.kube_annotation_prefix.clone(),
            net_config_path: opts.net_config_path.clone(),
            set_node_network_unavailable: opts.set_node_network_unavailable,
        };
        // Lossy rather than absent: upstream reads the bytes, so a value that is not UTF-8
        // must reach EVENT_QUEUE_DEPTH's check and fail there, not vanish.
        let env = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
        let started = tokio::select! {
            r = KubeManager::start(&kopts, env, stop.clone()) => r,
            _ = super::stopped(stop) => return Ok(None),
        };
        let kube = started.map_err(DaemonError::KubeManager)?;
        let config = kube.network_config().clone();
        Ok(Some((Manager::Kube(Arc::new(kube)), config)))
    }

    /// Kube mode: the addresses pinned with `node-public-ip(v6)` and the VTEP MACs of the
    /// previous run. Unreadable annotations only cost these hints, never the start.
    pub async fn startup_hints(&self) -> StartupHints {
        match self {
            Manager::Etcd(_) => StartupHints::default(),
            #[cfg(feature = "kube")]
            Manager::Kube(kube) => match kube.stored_node_info().await {
                Ok(info) => StartupHints {
                    public_ip: info.public_ip,
                    public_ipv6: info.public_ipv6,
                    macs: info.macs,
                },
                Err(e) => {
                    log::warn!("{e}");
                    StartupHints::default()
                }
            },
        }
    }

    /// The first lease. etcd retries until it gets one; kube mode fails as upstream does
    /// (`pod cidr not assigned`, a pod CIDR outside the Network, ...), leaving restarts to
    /// the DaemonSet. `Ok(None)`: stopped while trying.
    pub async fn acquire(
        &self,
        config: &NetworkConfig,
        attrs: &LeaseAttrs,
        previous: Option<(Ipv4Net, Option<Ipv6Net>)>,
        state: &State,
        stop: &mut Stop,
    ) -> Result<Option<Lease>, DaemonError> {
        match self {
            Manager::Etcd(reg) => {
                Ok(acquire_until_stopped(&**reg, config, attrs, previous, state, stop).await)
            }
            #[cfg(feature = "kube")]
            Manager::Kube(kube) => tokio::select! {
                r = kube.acquire(attrs) => r.map(Some).map_err(DaemonError::KubeLease),
                _ = super::stopped(stop) => Ok(None),
            },
        }
    }
}

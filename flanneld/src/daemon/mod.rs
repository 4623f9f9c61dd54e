//! Orchestration: startup in upstream's order, then the node loop until SIGTERM/SIGINT.
//!
//! Startup: signal handling → health endpoints → network config (retried every second) →
//! external interface → backend device → lease → backend activation → iptables rules →
//! subnet.env → ready (`/readyz`, `READY=1`). Fatal errors end the process with 1; a stop
//! signal at any point ends it with 0. Nothing is torn down on exit: routes, rules and the
//! lease stay, so a restart (or upstream flanneld) takes over without disturbing pods.

mod address;
mod config;
mod manager;
mod netpol;
mod node;
mod upkeep;
mod worker;

pub use config::{offending_field, parse_checked};
pub use manager::{Manager, StartupHints};
pub use upkeep::{gateway_v4, gateway_v6, subnet_env, CheckReport, Upkeep, UpkeepFlags};
pub use worker::{BackendWorker, WorkerError};

use std::path::Path;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use netconf::flannel::{FlannelConfigError, NetworkConfig};
use netconf::subnet_env::SubnetEnv;
use tokio::sync::watch;

use crate::iface::{self, IfaceError, IfaceRequest};
use crate::options::Options;
use crate::state::{Phase, State};
pub(crate) use crate::stop::{sleep_or_stop, stopped, Stop};
use crate::subnet::acquire::{acquire_lease, AcquireRequest};
use crate::subnet::etcd::StoreError;
use crate::subnet::store::failures::count_etcd_error;
use crate::subnet::store::SubnetStore;
use crate::subnet::{BackendData, Lease, LeaseAttrs};

const CONFIG_RETRY: Duration = Duration::from_secs(1);
const ACQUIRE_BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("this flanneld was built without the Kubernetes subnet manager (cargo feature \"kube\"); use etcd")]
    KubeUnsupported,
    #[cfg(feature = "kube")]
    #[error("Failed to create SubnetManager: {0}")]
    KubeManager(crate::subnet::kube::KubeError),
    #[cfg(feature = "kube")]
    #[error("Error registering network: failed to acquire lease: {0}")]
    KubeLease(crate::subnet::kube::KubeError),
    #[error("none defined stack")]
    NoStack,
    #[error("Failed to check br_netfilter: {0}")]
    BrNetfilter(String),
    #[error("Error fetching backend: {0}")]
    BackendConfig(#[from] FlannelConfigError),
    #[error("failed to start the health endpoints: {0}")]
    Healthz(std::io::Error),
    #[error("failed to create etcd client: {0}")]
    Etcd(StoreError),
    #[error(transparent)]
    Iface(#[from] IfaceError),
    #[error("Error registering network: {0}")]
    Backend(#[from] WorkerError),
    #[error(transparent)]
    Rules(#[from] crate::masq::RulesError),
    #[error("network policy: {0}")]
    Netpol(String),
    #[error("internal: {0}")]
    Internal(String),
}

/// The first SIGTERM/SIGINT asks for a clean stop; a second one kills the process, as with
/// upstream (whose handler is removed after the first signal).
fn install_signals() -> std::io::Result<Stop> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        log::info!("shutdown requested, exiting cleanly (a second signal exits at once)");
        let _ = tx.send(true);
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        std::process::exit(1);
    });
    Ok(rx)
}

fn check_br_netfilter(cfg: &NetworkConfig) -> Result<(), DaemonError> {
    let mut needed = Vec::new();
    if cfg.enable_ipv4 {
        needed.push("/proc/sys/net/bridge/bridge-nf-call-iptables");
    }
    if cfg.enable_ipv6 {
        needed.push("/proc/sys/net/bridge/bridge-nf-call-ip6tables");
    }
    for path in needed {
        std::fs::metadata(path)
            .map_err(|e| DaemonError::BrNetfilter(format!("stat {path}: {e}")))?;
    }
    Ok(())
}

/// The subnet a previous run wrote to subnet.env, if the file is there and readable.
fn previous_subnet(path: &Path) -> Option<(Ipv4Net, Option<Ipv6Net>)> {
    let text = std::fs::read_to_string(path).ok()?;
    match SubnetEnv::parse(&text) {
        Ok(env) => env.subnet_network().map(|s| (s, env.ipv6_subnet_network())),
        Err(e) => {
            log::warn!("ignoring unreadable {}: {e}", path.display());
            None
        }
    }
}

/// Acquires a lease, retrying with backoff (capped at 30 s) on any failure: etcd down, pool
/// exhausted (`out of subnets` until a node's lease expires or the config grows), lost races.
/// `None`: stopped while trying.
pub(crate) async fn acquire_until_stopped(
    reg: &dyn SubnetStore,
    config: &NetworkConfig,
    attrs: &LeaseAttrs,
    previous: Option<(Ipv4Net, Option<Ipv6Net>)>,
    state: &State,
    stop: &mut Stop,
) -> Option<Lease> {
    let mut delay = Duration::from_secs(1);
    loop {
        let req = AcquireRequest {
            config,
            attrs,
            previous,
        };
        match acquire_lease(reg, &req).await {
            Ok(lease) => return Some(lease),
            Err(e) => {
                log::error!("failed to acquire lease: {e} (retrying in {delay:?})");
                count_etcd_error(&e);
                state.metrics().lease_failed();
                state.fail_phase(Phase::AcquiringLease(Some(e.to_string())));
            }
        }
        if sleep_or_stop(delay, stop).await {
            return None;
        }
        delay = (delay * 2).min(ACQUIRE_BACKOFF_MAX);
    }
}

/// Runs flanneld until stopped; `Ok` means a clean stop (exit 0).
pub async fn run(opts: Options) -> Result<(), DaemonError> {
    let mut stop =
        install_signals().map_err(|e| DaemonError::Internal(format!("signal handlers: {e}")))?;
    let state = State::new();
    if let Some(addr) = opts.healthz {
        crate::health::start(addr, state.clone())
            .await
            .map_err(DaemonError::Healthz)?;
    }
    let Some((mgr, config)) = Manager::connect(&opts, &state, &mut stop).await? else {
        return Ok(());
    };
    if !config.enable_ipv4 && !config.enable_ipv6 {
        return Err(DaemonError::NoStack);
    }
    let mode = crate::masq::backend_for(config.enable_nftables);
    log::info!("Starting flannel in {mode} mode...");
    // Before any lease is taken: a node that cannot run nftables says so and what to do.
    blocking(move || crate::masq::check_available(mode)).await??;
    // Upstream skips this in nftables mode, which reads no bridge-nf-call-* setting.
    if mode == netops::firewall::Backend::Iptables {
        check_br_netfilter(&config)?;
    }
    let backend_cfg = config.backend_config()?;
    state.set_phase(Phase::SettingUp);
    // Started before the backend so the listing runs while devices are set up.
    let mut netpol = netpol::start(&opts, &mgr, &config, &state, &stop).await?;

    let hints = mgr.startup_hints().await;
    let req = IfaceRequest {
        ifaces: opts.ifaces.clone(),
        regexes: opts.iface_regexes.clone(),
        can_reach: opts.iface_can_reach,
        public_ip: hints.public_ip.or(opts.public_ip),
        public_ipv6: hints.public_ipv6.or(opts.public_ipv6),
        ipv4: config.enable_ipv4,
        ipv6: config.enable_ipv6,
    };
    let selection = req.clone();
    let ext = blocking(move || {
        let mut h = netops::netlink::Handle::new().map_err(IfaceError::from)?;
        iface::select_external(&mut h, &selection)
    })
    .await??;

    let node_opts = crate::backend::NodeOptions {
        vtep_macs: hints.macs,
        wireguard: crate::backend::WireguardNode {
            implementation: opts.wireguard_impl,
            key_file: crate::backend::wireguard::keys::key_file_path(|k| std::env::var(k).ok()),
            workers: None,
        },
    };
    let worker = BackendWorker::start(backend_cfg, ext.clone(), config.clone(), node_opts)?;
    let (backend_data, backend_v6_data) = worker
        .call(|b| b.prepare().map(|d| (d, b.backend_v6_data())))
        .await?
        .map_err(WorkerError::from)?;
    let attrs = LeaseAttrs {
        public_ip: ext.ext_addr,
        public_ipv6: ext.ext_v6_addr.filter(|_| config.enable_ipv6),
        backend_type: worker.backend_type().to_owned(),
        backend_data: backend_data.map(BackendData::from),
        backend_v6_data: backend_v6_data
            .filter(|_| config.enable_ipv6)
            .map(BackendData::from),
    };
    let previous = previous_subnet(&opts.subnet_file);
    state.set_phase(Phase::AcquiringLease(None));
    let Some(lease) = mgr
        .acquire(&config, &attrs, previous, &state, &mut stop)
        .await?
    else {
        return Ok(());
    };
    if !netpol::wait_first_sync(&mut netpol, &mut stop).await? {
        return Ok(());
    }
    // What was published, which kube mode's public-ip-overwrite may have changed.
    let attrs = lease.attrs.clone();
    let node = node::Node::start(node::NodeSetup {
        opts,
        config,
        mgr,
        worker,
        attrs,
        lease,
        state,
        ext,
        iface: req,
    })
    .await?;
    node.run(stop).await;
    log::info!("Exiting cleanly...");
    Ok(())
}

/// Runs blocking kernel or iptables work off the async threads. No namespace switching
/// happens in there, so pooled threads are fine.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Internal(format!("blocking task: {e}")))
}

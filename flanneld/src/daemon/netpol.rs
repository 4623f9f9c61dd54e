//! `--network-policy` at startup: what it needs from the node (nft, nf_tables, br_netfilter),
//! starting enforcement, and waiting for its first write before this node is declared ready,
//! so pods started on it never run unprotected. Without the flag, a table a previous run left
//! is removed: nothing of the feature stays.

use netconf::flannel::NetworkConfig;

use super::{blocking, DaemonError, Manager, Stop};
use crate::options::Options;
use crate::state::State;

#[cfg(feature = "kube")]
pub(super) type Handle = crate::netpol::controller::Handle;
#[cfg(not(feature = "kube"))]
pub(super) type Handle = std::convert::Infallible;

/// Bridged traffic between two pods of one node reaches the inet table only through
/// br_netfilter.
fn bridge_sysctls(config: &NetworkConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if config.enable_ipv4 {
        keys.push("net/bridge/bridge-nf-call-iptables");
    }
    if config.enable_ipv6 {
        keys.push("net/bridge/bridge-nf-call-ip6tables");
    }
    keys
}

fn prepare_node(config: &NetworkConfig) -> Result<(), DaemonError> {
    netops::firewall::nft::probe().map_err(|e| {
        DaemonError::Netpol(format!(
            "--network-policy writes the nftables table inet flannel-netpol: {e}"
        ))
    })?;
    for key in bridge_sysctls(config) {
        let dotted = key.replace('/', ".");
        match netops::sysctl::get(key) {
            Err(e) => {
                return Err(DaemonError::Netpol(format!(
                    "{e}: NetworkPolicy between pods of one node needs the br_netfilter module (modprobe br_netfilter)"
                )))
            }
            Ok(v) if v.trim() == "1" => {}
            Ok(_) => match netops::sysctl::set(key, "1") {
                Ok(_) => log::info!(
                    "network policy: set {dotted} = 1 (traffic between pods of this node must pass the inet hooks)"
                ),
                Err(e) => {
                    return Err(DaemonError::Netpol(format!(
                        "{dotted} is 0 and cannot be set ({e}): set it to 1 on the node (kubeadm's preflight requires it too)"
                    )))
                }
            },
        }
    }
    Ok(())
}

/// Starts enforcement when `--network-policy` is on; otherwise removes a leftover table.
pub(super) async fn start(
    opts: &Options,
    mgr: &Manager,
    config: &NetworkConfig,
    state: &State,
    stop: &Stop,
) -> Result<Option<Handle>, DaemonError> {
    if !opts.network_policy {
        match blocking(crate::netpol::table::remove_leftover).await? {
            Ok(true) => log::info!(
                "network policy: removed the table inet flannel-netpol a previous run left (--network-policy is off)"
            ),
            Ok(false) => {}
            Err(e) => log::warn!("network policy: cannot remove a leftover table: {e}"),
        }
        return Ok(None);
    }
    let checked = config.clone();
    blocking(move || prepare_node(&checked)).await??;
    start_enforcement(opts, mgr, config, state, stop).map(Some)
}

#[cfg(feature = "kube")]
fn start_enforcement(
    opts: &Options,
    mgr: &Manager,
    config: &NetworkConfig,
    state: &State,
    stop: &Stop,
) -> Result<Handle, DaemonError> {
    use crate::netpol::controller::{self, Settings};
    use crate::netpol::Families;
    let Manager::Kube(kube) = mgr else {
        // Options refuse --network-policy without --kube-subnet-mgr.
        return Err(DaemonError::Netpol(
            "--network-policy needs --kube-subnet-mgr".into(),
        ));
    };
    let settings = Settings {
        node: kube.node_name().to_owned(),
        families: Families {
            v4: config.enable_ipv4,
            v6: config.enable_ipv6,
        },
        resync: opts.iptables_resync,
    };
    log::info!(
        "network policy: enforcing NetworkPolicy for the pods of node {} (table inet flannel-netpol)",
        settings.node
    );
    controller::start(kube.client().clone(), settings, state.clone(), stop.clone())
        .map_err(|e| DaemonError::Netpol(format!("starting the enforcer thread: {e}")))
}

#[cfg(not(feature = "kube"))]
fn start_enforcement(
    _: &Options,
    _: &Manager,
    _: &NetworkConfig,
    _: &State,
    _: &Stop,
) -> Result<Handle, DaemonError> {
    Err(DaemonError::KubeUnsupported)
}

/// Waits until the cluster's policies are enforced (as long as the Node list may take,
/// upstream's informer sync timeout). `Ok(false)`: stopped while waiting.
pub(super) async fn wait_first_sync(
    handle: &mut Option<Handle>,
    stop: &mut Stop,
) -> Result<bool, DaemonError> {
    #[cfg(feature = "kube")]
    if let Some(h) = handle {
        log::info!(
            "network policy: waiting for the first list of Namespaces, Pods and NetworkPolicies"
        );
        let timeout = crate::subnet::kube::SYNC_TIMEOUT;
        let first = tokio::select! {
            r = tokio::time::timeout(timeout, h.first_sync()) => r,
            _ = super::stopped(stop) => return Ok(false),
        };
        return match first {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) => Err(DaemonError::Netpol(e)),
            Err(_) => Err(DaemonError::Netpol(format!(
                "Namespaces, Pods and NetworkPolicies were not listed within {timeout:?}"
            ))),
        };
    }
    let _ = (handle, stop);
    Ok(true)
}

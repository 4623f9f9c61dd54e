//! The Kubernetes subnet manager (`--kube-subnet-mgr`).
//!
//! The node's subnet is its `spec.podCIDR(s)`, assigned by the controller manager; flannel
//! only publishes how to reach it, as annotations on its own Node, and follows every Node for
//! peers. The network config comes from a file (the kube-flannel ConfigMap) and is read once.
//! Node objects are decoded into [`node::FlannelNode`] (metadata and pod CIDRs only).

mod annotations;
mod client;
mod lease;
mod node;
mod watch;

pub use annotations::{changed as changed_annotations, data_text, Annotations};
pub use client::{build_client, resolve_node_name};
pub use lease::StoredNodeInfo;
pub use node::{contains, CidrError, FlannelNode, NodeSpec, PodCidrs};
pub use watch::follow_nodes;

use std::path::PathBuf;
use std::time::Duration;

use kube::{Api, Client};
use netconf::flannel::NetworkConfig;
use tokio::sync::{mpsc, watch as signal};

use super::store::WatchMsg;

/// How long startup waits for the first full list of Nodes (upstream's informer sync).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(600);
/// Default capacity of the peer event queue (`EVENT_QUEUE_DEPTH`).
pub const EVENT_QUEUE_DEPTH: usize = 5000;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("subnet/kube: prefix can contain at most single slash")]
    PrefixSlashes,
    #[error("subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*")]
    PrefixFormat,
    #[error("fail to create kubernetes config: {0}")]
    Config(String),
    #[error("unable to initialize client: {0}")]
    Client(kube::Error),
    #[error("env variables POD_NAME and POD_NAMESPACE must be set")]
    PodEnv,
    #[error("error retrieving pod spec for '{namespace}/{name}': {source}")]
    PodGet {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("node name not present in pod spec '{namespace}/{name}'")]
    NoNodeName { namespace: String, name: String },
    #[error("failed to read net conf: {0}")]
    ReadNetConf(std::io::Error),
    #[error("error parsing subnet config: {0}")]
    ParseNetConf(netconf::flannel::FlannelConfigError),
    #[error("error waiting for nodeController to sync state: timed out waiting for the condition")]
    SyncTimeout,
    #[error("timeout contacting kube-api, failed to get node {node:?}: {source}")]
    GetNode { node: String, source: kube::Error },
    #[error("node {0:?} pod cidr not assigned")]
    PodCidrNotAssigned(String),
    #[error("node {0:?} pod cidrs should be IPv4/IPv6 only or dualstack")]
    TooManyPodCidrs(String),
    #[error("node {node:?} has an invalid pod cidr {cidr:?}")]
    BadPodCidr { node: String, cidr: String },
    #[error(
        "node {node:?} has no {family} pod cidr, but {family} is enabled in the flannel net config"
    )]
    MissingFamily { node: String, family: &'static str },
    #[error("subnet {network:?} specified in the flannel net config doesn't contain {cidr:?} PodCIDR of the {node:?} node")]
    NotContained {
        network: String,
        cidr: String,
        node: String,
    },
    /// Upstream's wording, inside its `error creating network manager: ...`.
    #[error(
        "error creating network manager: env EVENT_QUEUE_DEPTH={value} format error: {source}"
    )]
    EventQueueDepth {
        value: String,
        source: crate::goflag::AtoiError,
    },
    #[error("timeout contacting kube-api, failed to patch node {node:?}. Error: {source}")]
    Patch { node: String, source: kube::Error },
}

/// The kube-mode flags.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    pub api_url: String,
    pub kubeconfig: String,
    pub annotation_prefix: String,
    pub net_config_path: PathBuf,
    pub set_node_network_unavailable: bool,
}

/// A connection to the API server, this node's name and the network config.
pub struct KubeManager {
    client: Client,
    nodes: Api<FlannelNode>,
    node_name: String,
    annotations: Annotations,
    config: NetworkConfig,
    set_node_network_unavailable: bool,
    events: std::sync::Mutex<Option<mpsc::Receiver<WatchMsg>>>,
}

/// Backends that can carry IPv6 in kube mode; others are run IPv4-only, as upstream does.
fn dual_stack_capable(backend_type: &str) -> bool {
    matches!(backend_type, "vxlan" | "host-gw" | "wireguard")
}

fn read_config(path: &std::path::Path) -> Result<NetworkConfig, KubeError> {
    let text = std::fs::read(path).map_err(KubeError::ReadNetConf)?;
    // CheckNetworkConfig is deliberately not applied: subnet sizes do not matter here.
    let mut config = NetworkConfig::parse(&text).map_err(KubeError::ParseNetConf)?;
    if !dual_stack_capable(&config.backend_type.to_ascii_lowercase()) {
        config.enable_ipv4 = true;
        config.enable_ipv6 = false;
    }
    Ok(config)
}

/// The peer event queue's capacity from `EVENT_QUEUE_DEPTH`, read as upstream reads it: unset
/// or empty means the default, and so does a number below 1; what `strconv.Atoi` refuses
/// stops the start (upstream's error, word for word), rather than being quietly replaced by the
/// default an operator did not ask for. The queue allocates as it fills, so a huge depth
/// costs nothing up front; it is capped where the channel's semaphore ends.
pub fn event_queue_depth(value: Option<&str>) -> Result<usize, KubeError> {
    let Some(text) = value.filter(|v| !v.is_empty()) else {
        return Ok(EVENT_QUEUE_DEPTH);
    };
    let n = crate::goflag::atoi(text).map_err(|source| KubeError::EventQueueDepth {
        value: text.to_owned(),
        source,
    })?;
    Ok(match usize::try_from(n) {
        Ok(0) | Err(_) => EVENT_QUEUE_DEPTH,
        Ok(n) => n.min(tokio::sync::Semaphore::MAX_PERMITS),
    })
}

impl KubeManager {
    /// Connects, finds this node's name, reads the network config, starts following Nodes
    /// and waits (up to [`SYNC_TIMEOUT`]) for the first full list, as upstream's
    /// `NewSubnetManager` does. `env` supplies `NODE_NAME`, `POD_NAME`, `POD_NAMESPACE`,
    /// `EVENT_QUEUE_DEPTH` and `CONT_WHEN_CACHE_NOT_READY`.
    pub async fn start(
        opts: &KubeOptions,
        env: impl Fn(&str) -> Option<String>,
        stop: signal::Receiver<bool>,
    ) -> Result<KubeManager, KubeError> {
        let annotations = Annotations::new(&opts.annotation_prefix)?;
        let client = build_client(&opts.api_url, &opts.kubeconfig).await?;
        let node_name = resolve_node_name(&client, &env).await?;
        let config = read_config(&opts.net_config_path)?;
        let nodes: Api<FlannelNode> = Api::all(client.clone());
        let depth = event_queue_depth(env("EVENT_QUEUE_DEPTH").as_deref())?;
        let (tx, rx) = mpsc::channel(depth);
        let (synced_tx, mut synced) = signal::channel(false);
        tokio::spawn(follow_nodes(
            nodes.clone(),
            annotations.clone(),
            (config.enable_ipv4, config.enable_ipv6),
            node_name.clone(),
            tx,
            synced_tx,
            stop,
        ));
        log::info!("Waiting {SYNC_TIMEOUT:?} for node controller to sync");
        let waited = tokio::time::timeout(SYNC_TIMEOUT, synced.wait_for(|s| *s)).await;
        match waited {
            Ok(_) => log::info!("Node controller sync successful"),
            Err(_) if env("CONT_WHEN_CACHE_NOT_READY").as_deref() == Some("true") => {
                log::warn!(
                    "Node controller did not sync in time; continuing (CONT_WHEN_CACHE_NOT_READY)"
                )
            }
            Err(_) => return Err(KubeError::SyncTimeout),
        }
        Ok(KubeManager {
            client,
            nodes,
            node_name,
            annotations,
            config,
            set_node_network_unavailable: opts.set_node_network_unavailable,
            events: std::sync::Mutex::new(Some(rx)),
        })
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The network config read from `--net-config-path`.
    pub fn network_config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The peer events (the first is the full list), once: the node loop owns them.
    pub fn take_events(&self) -> Option<mpsc::Receiver<WatchMsg>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_queue_depth_is_read_like_upstream() {
        assert_eq!(event_queue_depth(None).unwrap(), EVENT_QUEUE_DEPTH);
        assert_eq!(event_queue_depth(Some("")).unwrap(), EVENT_QUEUE_DEPTH);
        assert_eq!(event_queue_depth(Some("64")).unwrap(), 64);
        assert_eq!(event_queue_depth(Some("+64")).unwrap(), 64);
        // Upstream keeps its default for numbers below 1.
        assert_eq!(event_queue_depth(Some("0")).unwrap(), EVENT_QUEUE_DEPTH);
        assert_eq!(event_queue_depth(Some("-5")).unwrap(), EVENT_QUEUE_DEPTH);
        assert_eq!(
            event_queue_depth(Some("9223372036854775807")).unwrap(),
            tokio::sync::Semaphore::MAX_PERMITS
        );
        for bad in ["5k", " 64", "0x40", "1e3"] {
            let e = event_queue_depth(Some(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("error creating network manager: env EVENT_QUEUE_DEPTH={bad} format error: strconv.Atoi: parsing \"{bad}\": invalid syntax")
            );
        }
    }
}

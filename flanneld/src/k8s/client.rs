//! The API client: configuration as client-go's `BuildConfigFromFlags`, and the retry rule of
//! [`super::retry`] in place of kube-rs's own.

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;

use super::retry::RetryAfter;

/// Requests waiting for the client's worker task; flanneld has a handful in flight.
const BUFFER: usize = 64;

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("fail to create kubernetes config: {0}")]
    Config(String),
    #[error("unable to initialize client: {0}")]
    Client(kube::Error),
}

/// `clientcmd.BuildConfigFromFlags(api_url, kubeconfig)`: a kubeconfig file (its server
/// replaced by `api_url` when both are given), or just a server URL, or — with neither —
/// the in-cluster service account.
pub async fn build_client(api_url: &str, kubeconfig: &str) -> Result<Client, ClientError> {
    let config_err = |e: &dyn std::fmt::Display| ClientError::Config(e.to_string());
    let mut config = if kubeconfig.is_empty() {
        if api_url.is_empty() {
            log::warn!("Neither --kubeconfig-file nor --kube-api-url was specified. Using the inClusterConfig.");
            Config::incluster().map_err(|e| config_err(&e))?
        } else {
            Config::new(api_url.parse().map_err(|e| config_err(&e))?)
        }
    } else {
        let file = Kubeconfig::read_from(kubeconfig).map_err(|e| config_err(&e))?;
        Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .map_err(|e| config_err(&e))?
    };
    if !kubeconfig.is_empty() && !api_url.is_empty() {
        config.cluster_url = api_url.parse().map_err(|e| config_err(&e))?;
    }
    config.default_retry = false;
    let builder = ClientBuilder::try_from(config).map_err(ClientError::Client)?;
    // Retrying re-sends a request through the service below, which must be cloneable: the
    // buffer makes kube's boxed stack so (as kube-rs's own retry example does).
    Ok(builder
        .with_layer(&BufferLayer::new(BUFFER))
        .with_layer(&RetryLayer::new(RetryAfter::default()))
        .build())
}

//! API client configuration and this node's name.

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::KubeError;

/// `clientcmd.BuildConfigFromFlags(api_url, kubeconfig)`: a kubeconfig file (its server
/// replaced by `api_url` when both are given), or just a server URL, or — with neither —
/// the in-cluster service account.
pub async fn build_client(api_url: &str, kubeconfig: &str) -> Result<Client, KubeError> {
    let config_err = |e: &dyn std::fmt::Display| KubeError::Config(e.to_string());
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
    Client::try_from(config).map_err(KubeError::Client)
}

/// `NODE_NAME`, or the node of the pod `POD_NAMESPACE/POD_NAME` (the DaemonSet passes both
/// through the downward API).
pub async fn resolve_node_name(
    client: &Client,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, KubeError> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(name) = set("NODE_NAME") {
        return Ok(name);
    }
    let (Some(name), Some(namespace)) = (set("POD_NAME"), set("POD_NAMESPACE")) else {
        return Err(KubeError::PodEnv);
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let pod = pods.get(&name).await.map_err(|source| KubeError::PodGet {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    })?;
    pod.spec
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
        .ok_or(KubeError::NoNodeName { namespace, name })
}

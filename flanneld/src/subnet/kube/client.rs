//! The API client and this node's name.

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};

use super::KubeError;

/// The API client (see [`crate::k8s::client`]).
pub async fn build_client(api_url: &str, kubeconfig: &str) -> Result<Client, KubeError> {
    crate::k8s::build_client(api_url, kubeconfig)
        .await
        .map_err(|e| match e {
            crate::k8s::ClientError::Config(text) => KubeError::Config(text),
            crate::k8s::ClientError::Client(e) => KubeError::Client(e),
        })
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

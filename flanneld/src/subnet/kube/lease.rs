//! Claiming this node's subnet: read the pod CIDRs, publish the lease attributes as
//! annotations, and later report the network as available.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};

use super::node::{contains, CidrError, FlannelNode, PodCidrs};
use super::{changed_annotations, KubeError, KubeManager};
use crate::subnet::StoredMacs;
use crate::subnet::{Lease, LeaseAttrs};

/// Upstream polls its node cache and retries patches every 3 s for up to 30 s.
const POLL_INTERVAL: Duration = Duration::from_secs(3);
const POLL_TIMEOUT: Duration = Duration::from_secs(30);
const NOMINAL_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What a previous run (or an operator) left on our Node for startup to use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredNodeInfo {
    /// `node-public-ip(v6)`: replaces `--public-ip(v6)`.
    pub public_ip: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    /// VTEP MACs from `backend-data`, so a re-created vxlan device keeps its MAC.
    pub macs: StoredMacs,
}

impl KubeManager {
    /// GETs our Node, retrying every 3 s for up to 30 s.
    async fn own_node(&self) -> Result<FlannelNode, KubeError> {
        let deadline = tokio::time::Instant::now() + POLL_TIMEOUT;
        loop {
            match self.nodes.get(&self.node_name).await {
                Ok(n) => return Ok(n),
                Err(e) if tokio::time::Instant::now() + POLL_INTERVAL > deadline => {
                    return Err(KubeError::GetNode {
                        node: self.node_name.clone(),
                        source: e,
                    })
                }
                Err(e) => log::debug!("Failed to get node {:?}: {e}", self.node_name),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// One read of our Node; failures are the caller's to tolerate (acquisition retries).
    pub async fn stored_node_info(&self) -> Result<StoredNodeInfo, KubeError> {
        let node = self
            .nodes
            .get(&self.node_name)
            .await
            .map_err(|source| KubeError::GetNode {
                node: self.node_name.clone(),
                source,
            })?;
        let (public_ip, public_ipv6) = self.annotations.stored_public_ips(node.annotations());
        Ok(StoredNodeInfo {
            public_ip,
            public_ipv6,
            macs: self.annotations.stored_macs(node.annotations()),
        })
    }

    fn pod_cidrs(&self, node: &FlannelNode) -> Result<PodCidrs, KubeError> {
        let name = || self.node_name.clone();
        // Upstream tests the singular field first, even when the list is set.
        if node.spec.pod_cidr.as_deref().unwrap_or("").is_empty() {
            return Err(KubeError::PodCidrNotAssigned(name()));
        }
        node.pod_cidrs().map_err(|e| match e {
            CidrError::NotAssigned => KubeError::PodCidrNotAssigned(name()),
            CidrError::TooMany => KubeError::TooManyPodCidrs(name()),
            CidrError::Invalid(cidr) => KubeError::BadPodCidr { node: name(), cidr },
        })
    }

    /// Claims the node's pod CIDRs: the annotations are patched (through the `status`
    /// subresource, with a strategic merge patch, as upstream) when any differs from
    /// `attrs`. The returned lease carries the attributes as published, i.e. with
    /// `public-ip-overwrite` applied.
    pub async fn acquire(&self, attrs: &LeaseAttrs) -> Result<Lease, KubeError> {
        let node = self.own_node().await?;
        let cidrs = self.pod_cidrs(&node)?;
        let (want, published) = self.annotations.desired(node.annotations(), attrs);
        let patch = changed_annotations(node.annotations(), &want);
        if !patch.is_empty() {
            self.patch_status(json!({"metadata": {"annotations": patch}}))
                .await?;
        }
        let (v4, v6) = (self.config.enable_ipv4, self.config.enable_ipv6);
        let missing = |family| KubeError::MissingFamily {
            node: self.node_name.clone(),
            family,
        };
        let subnet = match (v4, cidrs.v4) {
            (true, None) => return Err(missing("IPv4")),
            (_, s) => s.unwrap_or_default(),
        };
        let ipv6_subnet = match (v6, cidrs.v6) {
            (true, None) => return Err(missing("IPv6")),
            (true, s) => s,
            (false, _) => None,
        };
        let check = |network: Option<IpNet>, cidr: IpNet| match network {
            Some(net) if contains(net, cidr) => Ok(()),
            net => Err(KubeError::NotContained {
                network: net.map(|n| n.to_string()).unwrap_or_default(),
                cidr: cidr.to_string(),
                node: self.node_name.clone(),
            }),
        };
        if v4 {
            check(self.config.network.map(IpNet::V4), subnet.into())?;
        }
        if let Some(s6) = ipv6_subnet {
            check(self.config.ipv6_network.map(IpNet::V6), s6.into())?;
        }
        Ok(Lease {
            enable_ipv4: v4,
            enable_ipv6: v6,
            subnet,
            ipv6_subnet,
            attrs: published,
            expiration: Some(SystemTime::now() + NOMINAL_TTL),
            created: node.created(),
        })
    }

    /// Sets the node condition `NetworkUnavailable=False` (reason `FlannelIsUp`), unless
    /// `--set-node-network-unavailable=false`, retrying until the API server takes it.
    /// Upstream tries for 30 s and then leaves the condition (and the
    /// `node.kubernetes.io/network-unavailable` taint it brings) in place for good; a node
    /// whose network works must not stay unschedulable because the API server was
    /// throttling or restarting just then.
    pub async fn report_network_available(&self) {
        let mut delay = Duration::from_secs(1);
        let mut last = String::new();
        loop {
            match self.network_available_once().await {
                Ok(()) => {
                    if !last.is_empty() {
                        log::info!("node {:?}: NetworkUnavailable=False is set", self.node_name);
                    }
                    return;
                }
                Err(e) => {
                    let text = crate::k8s::describe(&e);
                    if text != last {
                        log::warn!(
                            "node {:?}: setting NetworkUnavailable=False failed: {text} (retrying until it works)",
                            self.node_name
                        );
                        last = text;
                    }
                    crate::subnet::store::failures::store_error(
                        crate::subnet::store::failures::StoreKind::Kube,
                    );
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_TIMEOUT);
        }
    }

    async fn network_available_once(&self) -> Result<(), kube::Error> {
        if !self.set_node_network_unavailable {
            return Ok(());
        }
        let now = crate::logger::rfc3339(SystemTime::now());
        let condition = json!({
            "type": "NetworkUnavailable",
            "status": "False",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": "FlannelIsUp",
            "message": "Flannel is running on this node",
        });
        let body = json!({"status": {"conditions": [condition]}});
        self.nodes
            .patch_status(
                &self.node_name,
                &PatchParams::default(),
                &Patch::Strategic(&body),
            )
            .await
            .map(|_| ())
    }

    async fn patch_status(&self, body: Value) -> Result<(), KubeError> {
        let deadline = tokio::time::Instant::now() + POLL_TIMEOUT;
        let params = PatchParams::default();
        loop {
            match self
                .nodes
                .patch_status(&self.node_name, &params, &Patch::Strategic(&body))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + POLL_INTERVAL > deadline => {
                    return Err(KubeError::Patch {
                        node: self.node_name.clone(),
                        source: e,
                    })
                }
                Err(e) => log::warn!(
                    "failed to patch node {:?}: {} (retrying in {}s)",
                    self.node_name,
                    crate::k8s::describe(&e),
                    POLL_INTERVAL.as_secs()
                ),
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

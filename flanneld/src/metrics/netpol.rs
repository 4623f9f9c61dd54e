//! NetworkPolicy enforcement (`--network-policy`): registered only when it runs.
//!
//! - `flannel_netpol_policies`: NetworkPolicies in the cluster;
//! - `flannel_netpol_rules`: rules in the `inet flannel-netpol` table;
//! - `flannel_netpol_sync_seconds`: from a Namespace/Pod/NetworkPolicy change arriving from the
//!   API server to the table holding it;
//! - `flannel_netpol_errors_total{kind}`: policies that fail closed (`policy`, once per policy
//!   and reason) and failed table writes (`apply`); failed API reads are counted with the
//!   subnet manager's in `flannel_store_errors_total{store="kube"}`;
//! - `flannel_netpol_denied_packets_total{direction}`: packets dropped because no policy allowed
//!   them, from the table's named counters (read every resync interval; a whole-table rewrite
//!   restarts them, which Prometheus treats as a counter reset).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What went wrong, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetpolError {
    Policy,
    Apply,
}

impl NetpolError {
    pub const ALL: [NetpolError; 2] = [NetpolError::Policy, NetpolError::Apply];

    pub fn as_str(self) -> &'static str {
        match self {
            NetpolError::Policy => "policy",
            NetpolError::Apply => "apply",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
}

#[derive(Debug)]
pub struct NetpolMetrics {
    policies: Gauge,
    rules: Gauge,
    sync_seconds: Histogram,
    errors: Family<ErrorLabels, Counter>,
    /// Packets dropped for ingress and for egress, as the kernel counted them.
    denied: Arc<[AtomicU64; 2]>,
}

#[derive(Debug)]
struct DeniedCollector(Arc<[AtomicU64; 2]>);

impl Collector for DeniedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let c = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "flannel_netpol_denied_packets",
            "Packets dropped because no NetworkPolicy allowed them, by direction",
            None,
            c.metric_type(),
        )?;
        for (i, direction) in ["ingress", "egress"].iter().enumerate() {
            ConstCounter::new(self.0[i].load(Ordering::Relaxed))
                .encode(family.encode_family(&[("direction", *direction)])?)?;
        }
        Ok(())
    }
}

impl NetpolMetrics {
    pub(super) fn register(r: &mut Registry) -> NetpolMetrics {
        let m = NetpolMetrics {
            policies: Gauge::default(),
            rules: Gauge::default(),
            // 1 ms .. ~16 s: a pod change is one small nft transaction; a relist of a large
            // cluster is a whole-table write.
            sync_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            errors: Family::default(),
            denied: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
        };
        r.register(
            "flannel_netpol_policies",
            "NetworkPolicies in the cluster",
            m.policies.clone(),
        );
        r.register(
            "flannel_netpol_rules",
            "Rules in the inet flannel-netpol table",
            m.rules.clone(),
        );
        r.register(
            "flannel_netpol_sync_seconds",
            "Time from a Namespace, Pod or NetworkPolicy change arriving from the API server to the nftables table enforcing it",
            m.sync_seconds.clone(),
        );
        r.register(
            "flannel_netpol_errors",
            "NetworkPolicy enforcement errors: policies failing closed, failed table writes",
            m.errors.clone(),
        );
        r.register_collector(Box::new(DeniedCollector(m.denied.clone())));
        for kind in NetpolError::ALL {
            drop(m.errors.get_or_create(&ErrorLabels {
                kind: kind.as_str(),
            }));
        }
        m
    }

    pub fn set_policies(&self, n: usize) {
        self.policies.set(n as i64);
    }

    pub fn set_rules(&self, n: usize) {
        self.rules.set(n as i64);
    }

    /// A change seen at `seen` is enforced now.
    pub fn synced(&self, seen: Instant) {
        self.sync_seconds.observe(seen.elapsed().as_secs_f64());
    }

    pub fn error(&self, kind: NetpolError) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub fn errors(&self, kind: NetpolError) -> u64 {
        self.errors
            .get(&ErrorLabels {
                kind: kind.as_str(),
            })
            .map_or(0, |c| c.get())
    }

    pub fn set_denied(&self, ingress: u64, egress: u64) {
        self.denied[0].store(ingress, Ordering::Relaxed);
        self.denied[1].store(egress, Ordering::Relaxed);
    }
}

//! Lease scale: many simulated nodes claiming subnets from one real etcd at the same instant,
//! each through flanneld's own acquisition code, IPv4-only or dual-stack.
//!
//! Every node is a tokio task with its own [`Registry`] (its own etcd connection, as a real
//! node has) and a distinct PublicIP. All of them wait at a start line; the clock starts when
//! it is released. A node whose `acquire_lease` fails retries the way the daemon does (1 s,
//! doubling, at most 30 s), so a failure costs time, not the run. Afterwards the records in
//! etcd are listed and checked against what every node believes it holds.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use flanneld::subnet::acquire::{acquire_lease, AcquireRequest};
use flanneld::subnet::etcd::v3::{Registry, SUBNET_TTL};
use flanneld::subnet::store::{EtcdConfig, LeaseStore, Listing, Owner, SubnetError};
use flanneld::subnet::LeaseAttrs;
use ipnet::{Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;
use serde_json::json;

use super::etcd_metrics::{GrpcCalls, MetricsError, Reading, WalFsync};
use super::records::{self, Held, RecordsError};
use crate::bench::interrupt::{self, Interrupted};
use crate::bench::stats::Samples;
use crate::etcd::{Etcd, EtcdError, EtcdOptions};

/// flanneld's default etcd prefix.
pub const PREFIX: &str = "/coreos.com/network";
/// Room for 65,535 /24 subnets, so 5,000 nodes fill well under a tenth of the pool.
pub const NETWORK: &str = "10.0.0.0/8";
/// Room for 65,535 /64 subnets, as many as IPv4 has.
pub const IPV6_NETWORK: &str = "fc00::/48";
/// Where dual-stack nodes' PublicIPv6 come from.
const PUBLIC_IPV6S: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x16, 0, 0, 0, 0, 0, 1);
/// Where the simulated nodes' PublicIPs come from (one per node, counting up).
const PUBLIC_IPS: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const MAX_NODES: usize = 1 << 20;
/// The daemon's retry pacing around `acquire_lease` (`daemon::acquire_until_stopped`).
const DAEMON_BACKOFF_START: Duration = Duration::from_secs(1);
const DAEMON_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A node still without a lease after this long means the run is broken, not slow.
const GIVE_UP: Duration = Duration::from_secs(1800);
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LeaseStormError {
    #[error("{0} nodes: between 1 and {MAX_NODES}")]
    NodeCount(usize),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
    #[error("node setup: {0}")]
    Setup(String),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error("{0} nodes still had no lease after {GIVE_UP:?}")]
    Stuck(usize),
}

/// The address families the simulated cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    V4,
    /// Every node leases an IPv4 and an IPv6 subnet; each must be unique on its own.
    Dual,
}

impl Stack {
    pub fn name(self) -> &'static str {
        match self {
            Stack::V4 => "IPv4",
            Stack::Dual => "dual",
        }
    }
}

/// What one storm measured.
#[derive(Debug)]
pub struct LeaseStormReport {
    pub nodes: usize,
    pub stack: Stack,
    /// Per node: start line to holding a lease, in seconds.
    pub per_node: Samples,
    /// Start line to the last node holding its lease.
    pub all_held: Duration,
    /// Nodes whose `acquire_lease` failed at least once (the daemon loop retried them).
    pub nodes_retried: usize,
    /// Subnet claims that lost the compare-and-swap to another node.
    pub lost_cas: usize,
    /// Failed `acquire_lease` calls by error text.
    pub errors: BTreeMap<String, usize>,
    /// gRPC calls etcd served between the start line and the last lease.
    pub calls: GrpcCalls,
    /// etcd's WAL fsyncs in the same interval.
    pub fsync: WalFsync,
    pub check: records::Check,
}

impl LeaseStormReport {
    pub fn calls_per_lease(&self) -> f64 {
        self.calls.total() as f64 / self.nodes as f64
    }
}

/// The network config every node reads (kube-flannel's shape, a /8 network, and a /48 for
/// IPv6 in dual stack).
pub fn net_conf(stack: Stack) -> String {
    match stack {
        Stack::V4 => json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}}),
        Stack::Dual => json!({"Network": NETWORK, "EnableIPv6": true,
            "IPv6Network": IPV6_NETWORK, "Backend": {"Type": "vxlan"}}),
    }
    .to_string()
}

/// What node `i` publishes: its own PublicIP(v6) and VTEP MAC(s), as a vxlan node would.
pub fn node_attrs(i: usize, stack: Stack) -> LeaseAttrs {
    let ip = Ipv4Addr::from(u32::from(PUBLIC_IPS) + i as u32);
    let [_, a, b, c] = ip.octets();
    let data = |first: u8| {
        json!({"VNI": 1, "VtepMAC": format!("{first:02x}:fa:5c:{a:02x}:{b:02x}:{c:02x}")}).into()
    };
    let dual = stack == Stack::Dual;
    LeaseAttrs {
        public_ip: ip,
        public_ipv6: dual.then(|| Ipv6Addr::from(u128::from(PUBLIC_IPV6S) + i as u128)),
        backend_type: "vxlan".to_owned(),
        backend_data: Some(data(0x0e)),
        backend_v6_data: dual.then(|| data(0x12)),
    }
}

/// Starts a fresh etcd on loopback, runs `nodes` simultaneous acquisitions against it,
/// and checks the result.
pub fn run(nodes: usize, stack: Stack) -> Result<LeaseStormReport, LeaseStormError> {
    if nodes == 0 || nodes > MAX_NODES {
        return Err(LeaseStormError::NodeCount(nodes));
    }
    let etcd = Etcd::start(EtcdOptions::loopback())?;
    let endpoint = etcd.endpoint();
    let addr = etcd.client_addr();
    etcd.put(&format!("{PREFIX}/config"), &net_conf(stack))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LeaseStormError::Runtime)?;
    let outcome = rt.block_on(storm(addr, nodes, stack, &endpoint))?;
    drop(rt);

    let listed = records::list(&etcd, PREFIX)?;
    let check = records::check(&listed, &outcome.held);
    Ok(LeaseStormReport {
        nodes,
        stack,
        per_node: outcome.per_node,
        all_held: outcome.all_held,
        nodes_retried: outcome.nodes_retried,
        lost_cas: outcome.lost_cas,
        errors: outcome.errors,
        calls: outcome.etcd.calls,
        fsync: outcome.etcd.fsync,
        check,
    })
}

struct Outcome {
    per_node: Samples,
    all_held: Duration,
    nodes_retried: usize,
    lost_cas: usize,
    errors: BTreeMap<String, usize>,
    etcd: Reading,
    /// What each node got.
    held: Vec<Held>,
}

/// One node's result: its lease, when it got it, and the failures on the way.
struct NodeResult {
    held: Held,
    at: Instant,
    failures: Vec<String>,
    lost_cas: usize,
}

/// A node's registry, counting the creates it lost: etcd's counters cannot tell a Txn whose
/// compare failed from one that wrote, and a lost race revokes no etcd lease to count (the
/// registry keeps it for its next claim).
struct Counted {
    inner: Registry,
    lost: AtomicUsize,
}

#[async_trait::async_trait]
impl LeaseStore for Counted {
    async fn list_slots(&self, owner: &Owner, since: Option<i64>) -> Result<Listing, SubnetError> {
        self.inner.list_slots(owner, since).await
    }
    async fn count_records(&self) -> Result<Option<usize>, SubnetError> {
        self.inner.count_records().await
    }
    async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        replacing: Option<&str>,
    ) -> Result<SystemTime, SubnetError> {
        let r = self
            .inner
            .create_subnet(subnet, ipv6_subnet, attrs, replacing)
            .await;
        if matches!(
            r,
            Err(SubnetError::AlreadyExists | SubnetError::Claimed { .. })
        ) {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        self.inner
            .update_subnet(subnet, ipv6_subnet, attrs, reservation)
            .await
    }
    fn keeps_reservations(&self) -> bool {
        self.inner.keeps_reservations()
    }
    async fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> Result<(), SubnetError> {
        self.inner.delete_subnet(subnet, ipv6_subnet).await
    }
}

async fn storm(
    metrics: SocketAddr,
    nodes: usize,
    stack: Stack,
    endpoint: &str,
) -> Result<Outcome, LeaseStormError> {
    let cfg = EtcdConfig {
        endpoints: vec![endpoint.to_owned()],
        prefix: PREFIX.to_owned(),
        ..EtcdConfig::default()
    };
    let setup = |e: SubnetError| LeaseStormError::Setup(e.to_string());
    // Connections are made and the config read before the start line, as a daemon has
    // done both by the time it asks for a lease.
    let first = Registry::connect(&cfg, SUBNET_TTL).await.map_err(setup)?;
    let raw = first.get_network_config().await.map_err(setup)?;
    let mut config = NetworkConfig::parse(raw.as_bytes())
        .map_err(|e| LeaseStormError::Setup(format!("network config: {e}")))?;
    config
        .check()
        .map_err(|e| LeaseStormError::Setup(format!("network config: {e}")))?;
    let config = std::sync::Arc::new(config);
    let mut stores = Vec::with_capacity(nodes);
    let mut next = Some(first);
    for _ in 0..nodes {
        let reg = match next.take() {
            Some(reg) => reg,
            None => Registry::connect(&cfg, SUBNET_TTL).await.map_err(setup)?,
        };
        stores.push(Counted {
            inner: reg,
            lost: AtomicUsize::new(0),
        });
    }

    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, store) in stores.into_iter().enumerate() {
        let (config, mut go) = (config.clone(), go_rx.clone());
        tasks.spawn(async move {
            // An error only means the sender is gone, and then nobody waits for us anyway.
            let _ = go.wait_for(|started| *started).await;
            node(&store, &config, node_attrs(i, stack)).await
        });
    }
    let before = Reading::read(metrics)?;
    let start = Instant::now();
    let _ = go_tx.send(true);

    let mut per_node = Samples::new();
    let mut errors = BTreeMap::new();
    let mut held = Vec::with_capacity(nodes);
    let mut last = start;
    let mut nodes_retried = 0;
    let mut lost_cas = 0;
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    while !tasks.is_empty() {
        // Woken every second so Ctrl-C ends the storm; dropping the JoinSet aborts the nodes.
        interrupt::check()?;
        if tokio::time::Instant::now() >= deadline {
            return Err(LeaseStormError::Stuck(tasks.len()));
        }
        let slice = tokio::time::Instant::now() + CHECK_EVERY;
        let joined = match tokio::time::timeout_at(slice, tasks.join_next()).await {
            Ok(Some(joined)) => joined,
            Ok(None) => break,
            Err(_) => continue,
        };
        let r = joined.map_err(|e| LeaseStormError::Setup(format!("node task: {e}")))?;
        per_node.push_duration(r.at - start);
        last = last.max(r.at);
        nodes_retried += usize::from(!r.failures.is_empty());
        lost_cas += r.lost_cas;
        for f in r.failures {
            *errors.entry(f).or_insert(0) += 1;
        }
        held.push(r.held);
    }
    let etcd = Reading::read(metrics)?.since(&before);
    Ok(Outcome {
        per_node,
        all_held: last - start,
        nodes_retried,
        lost_cas,
        errors,
        etcd,
        held,
    })
}

/// The daemon's acquisition loop for one node (`daemon::acquire_until_stopped` without
/// the stop signal, which a benchmark node never gets).
async fn node(store: &Counted, config: &NetworkConfig, attrs: LeaseAttrs) -> NodeResult {
    let mut failures = Vec::new();
    let mut delay = DAEMON_BACKOFF_START;
    loop {
        let req = AcquireRequest {
            config,
            attrs: &attrs,
            previous: None,
        };
        match acquire_lease(store, &req).await {
            Ok(lease) => {
                return NodeResult {
                    held: Held {
                        public_ip: attrs.public_ip,
                        subnet: lease.subnet,
                        ipv6_subnet: lease.ipv6_subnet,
                    },
                    at: Instant::now(),
                    failures,
                    lost_cas: store.lost.load(Ordering::Relaxed),
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(DAEMON_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_attrs_are_distinct_vxlan_records() {
        let a = node_attrs(0, Stack::V4);
        let b = node_attrs(300, Stack::V4);
        assert_eq!(a.public_ip, Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(b.public_ip, Ipv4Addr::new(172, 16, 1, 45));
        assert_eq!(
            b.to_json(),
            r#"{"PublicIP":"172.16.1.45","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:fa:5c:10:01:2d"}}"#
        );
        assert_ne!(a.backend_data, b.backend_data);
    }

    #[test]
    fn dual_stack_nodes_publish_both_families() {
        let a = node_attrs(2, Stack::Dual);
        assert_eq!(a.public_ipv6, Some("fd00:16::3".parse().unwrap()));
        assert_eq!(
            a.to_json(),
            r#"{"PublicIP":"172.16.0.3","PublicIPv6":"fd00:16::3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:fa:5c:10:00:03"},"BackendV6Data":{"VNI":1,"VtepMAC":"12:fa:5c:10:00:03"}}"#
        );
    }

    #[test]
    fn a_small_dual_stack_storm_shares_no_subnet_of_either_family() {
        let r = run(40, Stack::Dual).unwrap();
        assert_eq!(r.check.records, 40);
        assert_eq!((r.check.overlapping, r.check.overlapping_v6), (0, 0));
        assert!(r.check.problems.is_empty(), "{:?}", r.check.problems);
    }

    #[test]
    fn a_small_storm_gives_every_node_its_own_subnet() {
        {
            let r = run(40, Stack::V4).unwrap();
            assert_eq!(r.per_node.len(), 40);
            assert_eq!(r.check.records, 40);
            assert!(r.check.problems.is_empty(), "{:?}", r.check.problems);
            // Every lease costs at least a listing, a grant and the compare-and-swap.
            assert!(r.calls_per_lease() >= 3.0, "{:?}", r.calls);
            // Each lost claim is one failed compare-and-swap among the Txns etcd served.
            let txns = r.calls.get("etcdserverpb.KV/Txn") as usize;
            assert!(
                txns >= 40 + r.lost_cas,
                "{} Txns, {} lost",
                txns,
                r.lost_cas
            );
            assert!(r.per_node.max().unwrap() <= r.all_held.as_secs_f64());
            let ttl_lookups = r.calls.get("etcdserverpb.Lease/LeaseTimeToLive");
            // Acquisition lists the records in one Range, never a lifetime per record.
            assert_eq!(ttl_lookups, 0, "{:?}", r.calls);
        }
    }

    #[test]
    fn zero_nodes_is_refused() {
        assert!(matches!(
            run(0, Stack::V4),
            Err(LeaseStormError::NodeCount(0))
        ));
    }
}

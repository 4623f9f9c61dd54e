//! `/metrics`: the daemon's counters and gauges in the OpenMetrics text format, which
//! Prometheus scrapes natively.
//!
//! Counters and the route programming histogram are updated where things happen. Gauges
//! that describe the current state (lease, peers, routes in the kernel) are set from the
//! daemon's status at scrape time, so they can never drift from what `/status` shows.

pub mod datapath;
mod netpol;
mod store;
pub mod wireguard;

pub use datapath::{CounterSnapshot, CounterSource, DatapathCounters, DropReason, Tally};
pub use netpol::{NetpolError, NetpolMetrics};
pub use wireguard::{WireguardSnapshot, WireguardSource};

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::subnet::Lease;

/// What Prometheus expects for the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LeaseLabels {
    subnet: String,
    public_ip: String,
    backend: String,
}

/// Which kind of drift was found and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repair {
    /// Routes, neighbour and FDB entries of peers (the backend's reconcile).
    Backend,
    /// The FLANNEL-POSTRTG / FLANNEL-FWD rule sets.
    Iptables,
    SubnetFile,
    BlackholeRoute,
    /// The `inet flannel-netpol` table, rewritten after it went missing.
    Netpol,
}

impl Repair {
    pub const ALL: [Repair; 5] = [
        Repair::Backend,
        Repair::Iptables,
        Repair::SubnetFile,
        Repair::BlackholeRoute,
        Repair::Netpol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Repair::Backend => "backend",
            Repair::Iptables => "iptables",
            Repair::SubnetFile => "subnet_file",
            Repair::BlackholeRoute => "blackhole_route",
            Repair::Netpol => "netpol",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RepairLabels {
    kind: &'static str,
}

/// What a backend that runs a datapath of its own lets the daemon observe.
#[derive(Clone)]
pub enum DatapathSource {
    Udp(CounterSource),
    Wireguard(WireguardSource),
}

impl std::fmt::Debug for DatapathSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatapathSource::Udp(_) => "DatapathSource::Udp",
            DatapathSource::Wireguard(_) => "DatapathSource::Wireguard",
        })
    }
}

/// The state-describing values set at each scrape.
#[derive(Debug, Clone, Default)]
pub struct ScrapeView {
    pub lease: Option<Lease>,
    pub peers: usize,
    /// Peers whose route is in the kernel; `None` when the kernel could not be read.
    pub routes_programmed: Option<usize>,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    lease_info: Family<LeaseLabels, Gauge>,
    lease_expiry: Gauge<f64, AtomicU64>,
    lease_renewals: Counter,
    lease_errors: Counter,
    peers: Gauge,
    routes_programmed: Gauge,
    route_program_seconds: Histogram,
    repairs: Family<RepairLabels, Counter>,
    netpol: OnceLock<Arc<NetpolMetrics>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            lease_info: Family::default(),
            lease_expiry: Gauge::default(),
            lease_renewals: Counter::default(),
            lease_errors: Counter::default(),
            peers: Gauge::default(),
            routes_programmed: Gauge::default(),
            // 0.5 ms .. ~4 s: a netlink batch takes well under a millisecond, a backend busy
            // with a full reconcile of a large cluster can take seconds.
            route_program_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            repairs: Family::default(),
            netpol: OnceLock::new(),
        };
        {
            let mut r = m.lock_registry();
            r.register(
                "flannel_lease_info",
                "This node's subnet lease (always 1)",
                m.lease_info.clone(),
            );
            r.register(
                "flannel_lease_expiry_timestamp_seconds",
                "When this node's lease expires unless renewed, in seconds since the epoch",
                m.lease_expiry.clone(),
            );
            r.register(
                "flannel_lease_renewals",
                "Successful renewals of this node's lease",
                m.lease_renewals.clone(),
            );
            r.register(
                "flannel_lease_errors",
                "Failed attempts to acquire or renew this node's lease",
                m.lease_errors.clone(),
            );
            r.register(
                "flannel_peers",
                "Other nodes' leases this node follows",
                m.peers.clone(),
            );
            r.register(
                "flannel_routes_programmed",
                "Peers whose route is present in the kernel (checked at scrape time)",
                m.routes_programmed.clone(),
            );
            r.register(
                "flannel_route_program_seconds",
                "Time from a peer change being seen to the kernel state for it being applied",
                m.route_program_seconds.clone(),
            );
            r.register(
                "flannel_reconcile_repairs",
                "Drift found and fixed: peer routes/neighbours/FDB entries, iptables rule sets, subnet.env, blackhole route",
                m.repairs.clone(),
            );
            r.register_collector(Box::new(store::StoreErrorsCollector));
        }
        // Zero-valued series from the start, so rate() and alerts see them before the first event.
        for kind in Repair::ALL {
            drop(m.repairs.get_or_create(&RepairLabels {
                kind: kind.as_str(),
            }));
        }
        m
    }

    fn lock_registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn lease_renewed(&self) {
        self.lease_renewals.inc();
    }

    pub fn lease_failed(&self) {
        self.lease_errors.inc();
    }

    pub fn lease_renewals(&self) -> u64 {
        self.lease_renewals.get()
    }

    pub fn lease_errors(&self) -> u64 {
        self.lease_errors.get()
    }

    /// A peer change seen at `seen` has been applied to the kernel now.
    pub fn route_programmed(&self, seen: std::time::Instant) {
        self.route_program_seconds
            .observe(seen.elapsed().as_secs_f64());
    }

    pub fn repaired(&self, kind: Repair, n: usize) {
        if n > 0 {
            self.repairs
                .get_or_create(&RepairLabels {
                    kind: kind.as_str(),
                })
                .inc_by(n as u64);
        }
    }

    /// Drift repairs of every kind so far.
    pub fn repairs_total(&self) -> u64 {
        Repair::ALL
            .iter()
            .filter_map(|k| {
                self.repairs
                    .get(&RepairLabels { kind: k.as_str() })
                    .map(|c| c.get())
            })
            .sum()
    }

    /// NetworkPolicy enforcement's metrics, registered with the first call.
    pub fn netpol(&self) -> Arc<NetpolMetrics> {
        self.netpol
            .get_or_init(|| Arc::new(NetpolMetrics::register(&mut self.lock_registry())))
            .clone()
    }

    /// Exposes a backend's own datapath from now on: the udp backend's packet counters, or
    /// WireGuard's devices and peers (with the userspace engine's counters).
    pub fn add_datapath(&self, source: DatapathSource) {
        let mut registry = self.lock_registry();
        match source {
            DatapathSource::Udp(s) => {
                registry.register_collector(Box::new(datapath::UdpCollector(s)))
            }
            DatapathSource::Wireguard(s) => {
                registry.register_collector(Box::new(wireguard::WireguardCollector(s)))
            }
        }
    }

    /// The whole exposition, with the state gauges set from `view`.
    pub fn encode(&self, view: &ScrapeView) -> String {
        // Holding the registry lock across set-and-encode keeps two concurrent scrapes from
        // interleaving their gauge values.
        let registry = self.lock_registry();
        self.lease_info.clear();
        match &view.lease {
            Some(lease) => {
                self.lease_info
                    .get_or_create(&LeaseLabels {
                        subnet: lease.subnet.to_string(),
                        public_ip: lease.attrs.public_ip.to_string(),
                        backend: backend_name(&lease.attrs.backend_type).to_owned(),
                    })
                    .set(1);
                // A reservation never expires.
                self.lease_expiry
                    .set(lease.expiration.map_or(f64::INFINITY, unix_seconds));
            }
            None => {
                self.lease_expiry.set(0.0);
            }
        }
        self.peers.set(view.peers as i64);
        // -1 says "unknown" without pretending that no routes are programmed.
        self.routes_programmed
            .set(view.routes_programmed.map_or(-1, |n| n as i64));
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

/// The backend as operators name it: upstream's udp leases carry an empty BackendType.
pub fn backend_name(backend_type: &str) -> &str {
    if backend_type.is_empty() {
        "udp"
    } else {
        backend_type
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

#[cfg(test)]
mod tests;

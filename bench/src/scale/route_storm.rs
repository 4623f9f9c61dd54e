//! Route scale: one real flanneld (vxlan) in a host namespace of the bed's underlay, with
//! thousands of peer leases in etcd.
//!
//! The peers' records are written before the daemon starts, so its start-up programs all
//! of them at once; then new records are written one at a time and each is timed from the
//! moment its put leaves to the moment its route is in the host's table. The daemon's
//! memory is read from /proc after each phase. vxlan rather than host-gw: host-gw needs
//! every peer's PublicIP on the host's own segment, and a /24 segment holds 254 of them.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use ipnet::Ipv4Net;
use serde_json::json;

use super::route_monitor::RouteMonitor;
use crate::cluster::{segment_address, Cluster, ClusterError, Node};
use crate::etcd_http::{EtcdHttp, EtcdHttpError};
use crate::interrupt::{self, Interrupted};
use crate::stats::Samples;
use conformance::topology::Segment;

const PREFIX: &str = "/coreos.com/network";
const NETWORK: &str = "10.0.0.0/8";
/// Outlives any run; the records are removed with etcd anyway.
const RECORD_TTL: u64 = 3600;
/// Timed records go here, far from the peers (from 10.0.1.0) and from the subnet the
/// daemon picks for itself (the first free one above them).
const TIMED_BASE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 0);
const START_TIMEOUT: Duration = Duration::from_secs(300);
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between timed records, so each one is measured on its own rather than as part
/// of a batch the daemon is still working through.
const SAMPLE_GAP: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum RouteStormError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    EtcdHttp(#[from] EtcdHttpError),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{what} did not happen within {waited:?}; flanneld log:\n{log}")]
    Timeout {
        what: String,
        waited: Duration,
        log: String,
    },
    #[error("no flanneld process in the host namespace (pids there: {0:?})")]
    NoDaemon(Vec<i32>),
    #[error("reading /proc/{pid}/status: {detail}")]
    Proc { pid: i32, detail: String },
}

/// A process's memory from /proc/<pid>/status, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    /// Peak resident set size so far (VmHWM).
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: i32) -> Result<Memory, RouteStormError> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
            RouteStormError::Proc {
                pid,
                detail: e.to_string(),
            }
        })?;
        Memory::parse(&text).ok_or_else(|| RouteStormError::Proc {
            pid,
            detail: "no VmRSS/VmHWM lines".into(),
        })
    }

    fn parse(status: &str) -> Option<Memory> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some(Memory {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }
}

#[derive(Debug)]
pub struct RouteStormReport {
    pub peers: usize,
    /// Spawn to subnet.env written (lease acquired, backend up).
    pub ready: Option<Duration>,
    /// Spawn to the last of the pre-existing peers' routes in the table.
    pub all_routes: Duration,
    pub after_start: Memory,
    /// Per timed record: put sent to route in the table.
    pub new_lease: Samples,
    pub after_samples: Memory,
    /// Times the route monitor had to dump the table (1 = only its initial read).
    pub monitor_resyncs: usize,
}

/// The network config: kube-flannel's vxlan on a /8, so thousands of /24s fit.
fn net_conf() -> String {
    json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}}).to_string()
}

/// Peer `i`'s subnet: the /24s from 10.0.1.0 upwards (SubnetMin of a /8).
pub fn peer_subnet(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(0x0a00_0100 + ((i as u32) << 8)), 24).expect("a /24")
}

fn timed_subnet(k: usize) -> Ipv4Net {
    Ipv4Net::new(
        Ipv4Addr::from(u32::from(TIMED_BASE) + ((k as u32) << 8)),
        24,
    )
    .expect("a /24")
}

/// A vxlan node's record with PublicIP number `n` in 172.16.0.0/12 (never contacted: the
/// daemon only writes it into the forwarding database).
fn vxlan_record(n: usize) -> String {
    let ip = Ipv4Addr::from(0xac10_0001 + n as u32);
    let [_, a, b, c] = ip.octets();
    json!({"PublicIP": ip.to_string(), "PublicIPv6": null, "BackendType": "vxlan",
           "BackendData": {"VNI": 1, "VtepMAC": format!("0e:fa:5d:{a:02x}:{b:02x}:{c:02x}")}})
    .to_string()
}

fn key_of(subnet: Ipv4Net) -> String {
    format!(
        "{PREFIX}/subnets/{}-{}",
        subnet.network(),
        subnet.prefix_len()
    )
}

/// Runs the scenario with `peers` pre-existing leases and `samples` timed new ones.
pub fn run(peers: usize, samples: usize) -> Result<RouteStormReport, RouteStormError> {
    let network: Ipv4Net = NETWORK.parse().expect("valid network");
    let cluster = Cluster::start()?;
    cluster
        .etcd
        .put(&format!("{PREFIX}/config"), &net_conf())
        .map_err(ClusterError::from)?;
    let etcd_addr = cluster.etcd.client_addr();
    let mut http = EtcdHttp::connect(cluster.underlay.router().path(), etcd_addr)?;
    let lease = http.grant(RECORD_TTL)?;
    let mut want = HashSet::with_capacity(peers);
    for i in 0..peers {
        if i % 500 == 0 {
            interrupt::check()?;
        }
        let subnet = peer_subnet(i);
        http.send_put(&key_of(subnet), &vxlan_record(i), Some(&lease))?;
        http.finish()?;
        want.insert(subnet);
    }

    let mut node = cluster.add_node(Segment::A, segment_address(Segment::A, 1), "s1")?;
    let mut monitor = RouteMonitor::open(node.host().netns().path(), network)?;
    let spawned_at = SystemTime::now();
    let spawned = node.start_flanneld(&[])?;
    let Some(done) = wait_interruptibly(&mut monitor, &want, START_TIMEOUT)? else {
        return Err(RouteStormError::Timeout {
            what: format!(
                "{} of {peers} peer routes",
                want.iter()
                    .filter(|d| !monitor.present().contains(d))
                    .count()
            ),
            waited: START_TIMEOUT,
            log: node.log(),
        });
    };
    let all_routes = done - spawned;
    node.wait_ready(START_TIMEOUT)?;
    let ready = std::fs::metadata(node.subnet_file())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(spawned_at).ok());
    let pid = daemon_pid(&node)?;
    let after_start = Memory::of(pid)?;

    let mut new_lease = Samples::new();
    for k in 0..samples {
        interrupt::check()?;
        let subnet = timed_subnet(k);
        let sent = http.send_put(&key_of(subnet), &vxlan_record(peers + k), Some(&lease))?;
        let seen = monitor.wait_for(subnet, ROUTE_TIMEOUT)?;
        http.finish()?;
        let Some(seen) = seen else {
            return Err(RouteStormError::Timeout {
                what: format!("route to new lease {subnet}"),
                waited: ROUTE_TIMEOUT,
                log: node.log(),
            });
        };
        new_lease.push_duration(seen.saturating_duration_since(sent));
        std::thread::sleep(SAMPLE_GAP);
    }
    let after_samples = Memory::of(pid)?;
    node.stop_flanneld()?;
    Ok(RouteStormReport {
        peers,
        ready,
        all_routes,
        after_start,
        new_lease,
        after_samples,
        monitor_resyncs: monitor.resyncs,
    })
}

/// [`RouteMonitor::wait_all`] in one-second slices, so Ctrl-C is noticed during a long
/// start-up.
fn wait_interruptibly(
    monitor: &mut RouteMonitor,
    want: &HashSet<Ipv4Net>,
    timeout: Duration,
) -> Result<Option<Instant>, RouteStormError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        interrupt::check()?;
        if let Some(at) = monitor.wait_all(want, Duration::from_secs(1))? {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// The flanneld process in the node's namespace (`ip netns exec` execs it in place, but
/// the namespace's pid list is the ground truth).
fn daemon_pid(node: &Node) -> Result<i32, RouteStormError> {
    let pids = node.host().netns().pids();
    pids.iter()
        .copied()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "flanneld")
        })
        .ok_or(RouteStormError::NoDaemon(pids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_lines_of_proc_status() {
        let status =
            "Name:\tflanneld\nVmPeak:\t  900000 kB\nVmHWM:\t    9216 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(
            Memory::parse(status),
            Some(Memory {
                rss_kib: 8192,
                hwm_kib: 9216
            })
        );
        assert_eq!(Memory::parse("Name:\tx\n"), None);
        let me = Memory::of(std::process::id() as i32).unwrap();
        assert!(me.hwm_kib >= me.rss_kib && me.rss_kib > 0);
    }

    #[test]
    fn peer_and_timed_subnets_never_meet() {
        assert_eq!(peer_subnet(0).to_string(), "10.0.1.0/24");
        assert_eq!(peer_subnet(4999).to_string(), "10.19.136.0/24");
        assert_eq!(timed_subnet(199).to_string(), "10.200.199.0/24");
        let peers: HashSet<_> = (0..5000).map(peer_subnet).collect();
        assert_eq!(peers.len(), 5000);
        assert!((0..1000).map(timed_subnet).all(|s| !peers.contains(&s)));
    }

    #[test]
    fn records_carry_distinct_public_ips_and_macs() {
        let a: serde_json::Value = serde_json::from_str(&vxlan_record(0)).unwrap();
        let b: serde_json::Value = serde_json::from_str(&vxlan_record(256)).unwrap();
        assert_eq!(a["PublicIP"], "172.16.0.1");
        assert_eq!(b["PublicIP"], "172.16.1.1");
        assert_eq!(b["BackendData"]["VtepMAC"], "0e:fa:5d:10:01:01");
        assert_ne!(a["BackendData"], b["BackendData"]);
    }
}

//! Throughput of the userspace datapaths (udp, userspace WireGuard) next to kernel vxlan, in
//! the same run on the same machine: iperf3, one TCP stream, between the pod gateways of two
//! hosts (so through flannel0, flannel-wg or flannel.1 and the veth underlay). A quick probe
//! while working on the datapath, not a check (`scripts/bench-overlay.sh` is the benchmark):
//! `cargo test --release -p flanneld --test backend_udp_throughput -- --ignored --nocapture`.

use std::net::Ipv4Addr;

use flanneld::backend::{WireguardImpl, WireguardNode};
use flanneld::subnet::Event;
use flanneld_bed::udp::{iperf_tcp, mesh, UdpHost};
use flanneld_bed::{add_pod_gateway, two_hosts, Node};

const RUNS: usize = 3;
const SECS: u32 = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Two hosts running the backend `kind` (wireguard on the userspace implementation), peered,
/// with pod gateways; returns them (kept alive by the caller) and the gateways.
fn peered(kind: &str, keys: &std::path::Path) -> (Node, Node, Ipv4Addr, Ipv4Addr) {
    let (mut a, mut b) = two_hosts();
    for (n, name) in [(&mut a, "a"), (&mut b, "b")] {
        n.wireguard = WireguardNode {
            implementation: WireguardImpl::Userspace,
            key_file: keys.join(name),
            workers: None,
        };
    }
    let conf = format!(r#"{{"Network":"10.244.0.0/16","Backend":{{"Type":"{kind}"}}}}"#);
    a.start(&conf).unwrap();
    b.start(&conf).unwrap();
    let (la, lb) = (a.join(), b.join());
    a.handle(&[Event::added(lb)]);
    b.handle(&[Event::added(la)]);
    let (gw_a, gw_b) = (add_pod_gateway(&a), add_pod_gateway(&b));
    (a, b, gw_a, gw_b)
}

fn median_gbits(kind: &str) -> f64 {
    let keys = tempfile::tempdir().unwrap();
    let (a, b, gw_a, gw_b) = peered(kind, keys.path());
    median(
        (0..RUNS)
            .map(|_| iperf_tcp(&a.ns.name, &b.ns.name, gw_a, gw_b, SECS))
            .collect(),
    )
}

fn vxlan_gbits() -> f64 {
    median_gbits("vxlan")
}

fn udp_gbits(workers: Option<usize>) -> f64 {
    let (a, b) = two_hosts();
    let (mut a, mut b) = (UdpHost::start(a, workers), UdpHost::start(b, workers));
    mesh(&mut a, &mut b);
    let info = a.backend.datapath().unwrap();
    let (gw_a, gw_b) = (add_pod_gateway(&a.node), add_pod_gateway(&b.node));
    let g = median(
        (0..RUNS)
            .map(|_| iperf_tcp(&a.node.ns.name, &b.node.ns.name, gw_a, gw_b, SECS))
            .collect(),
    );
    println!("udp datapath: {info:?}");
    println!("udp counters (sender): {:?}", a.backend.counters());
    println!("udp counters (receiver): {:?}", b.backend.counters());
    g
}

#[test]
#[ignore = "benchmark; run explicitly"]
fn udp_versus_vxlan_single_stream_tcp() {
    let vxlan = vxlan_gbits();
    let udp = udp_gbits(None);
    println!(
        "iperf3 TCP 1 stream, median of {RUNS} x {SECS} s: vxlan {vxlan:.2} Gbit/s, udp {udp:.2} Gbit/s, ratio {:.2}",
        udp / vxlan
    );
    assert!(udp > 0.0 && vxlan > 0.0);
}

#[test]
#[ignore = "benchmark; run explicitly"]
fn wireguard_versus_vxlan_single_stream_tcp() {
    let vxlan = vxlan_gbits();
    let wg = median_gbits("wireguard");
    let udp = udp_gbits(None);
    println!(
        "iperf3 TCP 1 stream, median of {RUNS} x {SECS} s: vxlan {vxlan:.2}, userspace wireguard {wg:.2} ({:.2}x), udp {udp:.2} ({:.2}x) Gbit/s",
        wg / vxlan,
        udp / vxlan
    );
    assert!(wg > 0.0 && vxlan > 0.0);
}

/// Traffic to profile: `PROBE_BACKEND` (wireguard or udp) carrying one TCP stream for
/// `PROBE_SECS` seconds (default 15), e.g. under `perf record -a` started a second later.
#[test]
#[ignore = "profiling aid; run explicitly"]
fn soak_for_profiling() {
    let secs: u32 = std::env::var("PROBE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let backend = std::env::var("PROBE_BACKEND").unwrap_or_else(|_| "wireguard".into());
    let keys = tempfile::tempdir().unwrap();
    let (a, b, gw_a, gw_b) = peered(&backend, keys.path());
    let before = cpu_secs();
    let g = iperf_tcp(&a.ns.name, &b.ns.name, gw_a, gw_b, secs);
    let gb = g * f64::from(secs) / 8.0;
    println!(
        "{backend}: {g:.2} Gbit/s over {secs} s; both datapaths' threads used {:.2} CPU s/GB",
        (cpu_secs() - before) / gb
    );
}

/// CPU time of this process (both hosts' datapath threads), user and system.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

//! Overlay benchmark (`scripts/bench-overlay.sh`): per flanneld backend,
//! pod-to-pod TCP throughput next to the raw underlay between the same hosts,
//! and how fast a new lease becomes a route on the peers.
//!
//! Topology as in the demo: etcd on the router, hosts h1 and h2 on segment
//! A, h3 on segment B (host-gw: h1 and h2 only), one pod per host.

use std::net::Ipv4Addr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bench::cluster::{segment_address, Backend, Cluster, Node, Pod, NETWORK, PREFIX};
use bench::etcd_http::EtcdHttp;
use bench::routes::{Goal, RouteWatch};
use bench::stats::{fmt_bps, fmt_ratio, fmt_secs, or_dash, Samples};
use bench::table::{Align, Table};
use bench::traffic::{self, IperfServer};
use bench::{env_count, interrupt};
use bench::{wg_crypto, wireguard_go_hosts};
use conformance::{Driver, PluginDir, Segment};
use ipnet::Ipv4Net;
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

const REPEATS_ENV: &str = "BENCH_OVERLAY_REPEATS";
const LEASES_ENV: &str = "BENCH_OVERLAY_LEASES";
/// A comma-separated subset of [`KEYS`] to run instead of all (for profiling one backend).
const ONLY_ENV: &str = "BENCH_OVERLAY_ONLY";
/// Short names of what the bench runs, in its order; the last is wireguard-go.
const KEYS: [&str; 6] = [
    "vxlan",
    "vxlan-dr",
    "host-gw",
    "udp",
    "wireguard",
    "wireguard-go",
];
const DEFAULT_REPEATS: usize = 3;
const DEFAULT_LEASES: usize = 10;
const IPERF_SECS: u32 = 2;
const IPERF_PORT: u16 = 5201;
const STREAMS: [u32; 2] = [1, 4];
/// Fresh flanneld processes joining per backend.
const JOINS: u8 = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);
/// TTL of the etcd lease the hand-written lease records hang on; longer
/// than any run, and they are deleted explicitly anyway.
const FAKE_LEASE_TTL: u64 = 600;

struct Throughput {
    backend: &'static str,
    pair: String,
    path: String,
    streams: u32,
    pod: Samples,
    underlay: Samples,
    /// Machine-wide busy CPU seconds per GB moved (iperf3 itself included, on both paths).
    pod_cpu: Samples,
    underlay_cpu: Samples,
}

/// Busy CPU time of the whole machine so far (every core; user, system, irq, softirq,
/// steal), from /proc/stat. Machine-wide because the overlays' work lands in softirq on
/// whatever core the packet is on (vxlan) or in flanneld's threads (udp): no per-process
/// figure would compare them fairly.
fn busy_cpu_secs() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().ok_or("empty /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>())
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    let hz = clk_tck();
    Ok(busy as f64 / hz)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// One iperf3 run with the CPU it cost: (bits/s, busy CPU seconds per GB).
fn measure_with_cpu(
    server: &IperfServer,
    client: &conformance::Netns,
    streams: u32,
) -> Result<(f64, f64), BoxError> {
    let before = busy_cpu_secs()?;
    let bps = server.measure(client, IPERF_SECS, streams)?;
    let cpu = busy_cpu_secs()? - before;
    let gb = bps * f64::from(IPERF_SECS) / 8.0 / 1e9;
    Ok((bps, if gb > 0.0 { cpu / gb } else { f64::NAN }))
}

/// What the pod-to-pod measurements of every backend produce.
#[derive(Default)]
struct Results {
    throughput: Vec<Throughput>,
    first_packet: Vec<FirstPacket>,
    /// FLANNEL_MTU of the WireGuard run: the packet size its crypto cost is measured at.
    wg_mtu: Option<usize>,
}

/// The first echo between two pods and the ones after it, in seconds.
struct FirstPacket {
    backend: &'static str,
    pair: String,
    first: Option<f64>,
    after: Samples,
}

struct Programming {
    backend: &'static str,
    peers: usize,
    put: Samples,
    delete: Samples,
    join: Samples,
}

fn main() {
    interrupt::run_main("bench-overlay", 1, || run().map(|()| 0))
}

fn run() -> Result<(), BoxError> {
    let repeats = env_count(REPEATS_ENV, DEFAULT_REPEATS)?;
    let leases = env_count(LEASES_ENV, DEFAULT_LEASES)?;
    let only = selected()?;
    let t0 = Instant::now();
    println!("bench-overlay: {repeats} × {IPERF_SECS} s per figure ({REPEATS_ENV}), {leases} leases per backend ({LEASES_ENV})");
    let cluster = Cluster::start()?;
    let driver = Driver::new(PluginDir::ours()?);
    let mut results = Results::default();
    let mut programming = Vec::new();
    for (backend, key) in Backend::ALL.into_iter().zip(KEYS) {
        if !only.contains(&key) {
            continue;
        }
        run_backend(
            &cluster,
            &driver,
            backend,
            repeats,
            leases,
            &mut results,
            &mut programming,
        )?;
    }
    if only.contains(&"wireguard-go") {
        run_wireguard_go(&cluster, &driver, repeats, &mut results)?;
    }
    drop(driver);
    drop(cluster);
    // After the traffic, so the two do not share the cores.
    // The ceiling table needs the udp and vxlan rows beside WireGuard's.
    let wg_crypto = match results.wg_mtu {
        Some(mtu) if ["udp", "vxlan"].iter().all(|k| only.contains(k)) => {
            Some((mtu, wg_crypto::seal_open_cpu_secs_per_gb(mtu)?))
        }
        _ => None,
    };
    println!("\nTCP throughput, pod to pod vs underlay host to host (iperf3, median of {repeats} × {IPERF_SECS} s; {} in total)\n", fmt_secs(t0.elapsed().as_secs_f64()));
    print!("{}", render_throughput(&results.throughput));
    println!("  path = how h1 routes to the peer's pod subnet, read from its routing table during the run");
    println!("  pod/vxlan = this backend's pod-to-pod median over kernel vxlan's for the same pair and streams (targets: udp ≥ 0.8×, userspace WireGuard ≥ 0.5× and ≥ wireguard-go)");
    println!("  wireguard-go = Debian's wireguard-go on the same hosts, configured as upstream flannel configures its device, pods through the same CNI chain");
    println!("  CPU s/GB = busy CPU seconds of the whole machine (all cores, iperf3 included) per GB received, from /proc/stat");
    if let Some((mtu, crypto)) = wg_crypto {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(table) = render_wg_ceiling(&results.throughput, crypto, cores) {
            println!("\nWireGuard's ceiling on this machine (same run; both nodes share its {cores} cores)\n");
            print!("{table}");
            println!("  target = 0.5× kernel vxlan's pod-to-pod median, same pair and streams");
            println!("  budget = the machine-wide CPU s/GB that reaching the target allows with all {cores} cores busy all the time ({cores} × 8 / target)");
            println!("  udp + crypto = the udp backend's CPU s/GB for the same pair and streams (the same TUN + UDP machinery, no encryption) + sealing and opening each byte once: {crypto:.2} s/GB for {mtu}-byte packets in boringtun, one core, measured after the traffic");
            println!("  ceiling = {cores} × 8 / (udp + crypto): the most WireGuard on this machinery moves here, with no cost of its own beyond the two");
        }
    }
    println!(
        "\nFirst packet between two pods (ping round trip; WireGuard's includes its handshake)\n"
    );
    print!("{}", render_first_packet(&results.first_packet));
    println!("  first = the first echo that came back; after = median of the 5 that followed");
    println!("\nRoute programming on the peers (flanneld watching etcd; kernel route table watched over netlink)\n");
    print!("{}", render_programming(&programming));
    println!("  lease put/delete: a lease record for a fake node written to etcd by hand; time from sending the request to the route appearing/disappearing, every peer counted");
    println!("  new flanneld: a fresh host's flanneld spawned; time from spawn to its subnet's route on each peer (start-up, lease allocation and watch included)");
    Ok(())
}

/// The keys [`ONLY_ENV`] names, or all of them.
fn selected() -> Result<Vec<&'static str>, BoxError> {
    let Ok(list) = std::env::var(ONLY_ENV) else {
        return Ok(KEYS.to_vec());
    };
    list.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            KEYS.iter()
                .copied()
                .find(|known| *known == k)
                .ok_or_else(|| {
                    format!(
                        "{ONLY_ENV}: unknown {k:?}, expected some of {}",
                        KEYS.join(",")
                    )
                    .into()
                })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_backend(
    cluster: &Cluster,
    driver: &Driver,
    backend: Backend,
    repeats: usize,
    leases: usize,
    results: &mut Results,
    programming: &mut Vec<Programming>,
) -> Result<(), BoxError> {
    let tag = backend.label();
    println!(
        "[{tag}] starting flanneld on {} hosts",
        backend.host_segments().len()
    );
    cluster.configure(backend)?;
    let mut nodes = cluster.add_nodes(backend)?;
    let args = [&["--ip-masq"], backend.flanneld_args()].concat();
    for node in &mut nodes {
        node.start_flanneld(&args)?;
    }
    let mut subnets = Vec::new();
    for node in &mut nodes {
        subnets.push(node.wait_ready(READY_TIMEOUT)?);
    }
    if backend == Backend::Wireguard {
        results.wg_mtu = nodes[0].mtu();
    }
    let mut pods = measure_nodes(tag, driver, &nodes, &subnets, repeats, results)?;
    // udp and wireguard route the whole network to their device once and keep peers in
    // user space: there is no per-peer route whose arrival could be timed.
    if !matches!(backend, Backend::Udp | Backend::Wireguard) {
        println!("[{tag}] timing {leases} lease records and {JOINS} joining hosts");
        let (put, delete) = lease_latency(cluster, &nodes, &subnets, backend, leases)?;
        let join = join_latency(cluster, &nodes, &subnets)?;
        programming.push(Programming {
            backend: tag,
            peers: nodes.len(),
            put,
            delete,
            join,
        });
    }
    for (node, pod) in nodes.iter().zip(&mut pods) {
        node.remove_pod(driver, pod)?;
    }
    for node in &mut nodes {
        node.stop_flanneld()?;
    }
    Ok(())
}

/// wireguard-go on the same layout of hosts, configured as upstream flannel configures its
/// device, pods attached by the same CNI chain.
fn run_wireguard_go(
    cluster: &Cluster,
    driver: &Driver,
    repeats: usize,
    results: &mut Results,
) -> Result<(), BoxError> {
    let tag = wireguard_go_hosts::LABEL;
    println!("[{tag}] starting wireguard-go on 3 hosts");
    let hosts = wireguard_go_hosts::start(cluster)?;
    let mut pods = measure_nodes(tag, driver, &hosts.nodes, &hosts.subnets, repeats, results)
        .map_err(|e| -> BoxError {
            let router = cluster.underlay.router().exec(&["ip", "-4", "neigh"]);
            format!(
                "{e}\n{}router neighbours:\n{}",
                hosts.describe(),
                String::from_utf8_lossy(&router.stdout)
            )
            .into()
        })?;
    for (node, pod) in hosts.nodes.iter().zip(&mut pods) {
        node.remove_pod(driver, pod)?;
    }
    Ok(())
}

/// Pods on every node, the first packet and the ones after it from h1's pod to each other
/// pod, then throughput of each pair.
fn measure_nodes(
    tag: &'static str,
    driver: &Driver,
    nodes: &[Node],
    subnets: &[Ipv4Net],
    repeats: usize,
    results: &mut Results,
) -> Result<Vec<Pod>, BoxError> {
    let mut pods = Vec::new();
    for node in nodes {
        pods.push(node.add_pod(driver, &format!("{}a", node.tag()))?);
    }
    for k in 1..pods.len() {
        // The first packet between two pods: for WireGuard it waits for the handshake.
        let first = first_reply(&pods[0].netns, pods[k].ip, Duration::from_secs(15))?;
        let after = traffic::ping(&pods[0].netns, pods[k].ip, 5)?;
        results.first_packet.push(FirstPacket {
            backend: tag,
            pair: format!("h1 → {}", nodes[k].tag()),
            first,
            after: after.rtts.into_iter().collect(),
        });
    }
    for (k, pod) in pods.iter().enumerate().skip(1) {
        if !traffic::wait_reachable(&pods[0].netns, pod.ip, Duration::from_secs(15))? {
            return Err(format!(
                "[{tag}] {} cannot reach {}; h1 routes:\n{}",
                pods[0].name,
                pods[k].name,
                nodes[0].routes_text()
            )
            .into());
        }
    }
    for k in 1..nodes.len() {
        let path = nodes[0].path_to(&nodes[k], subnets[k]);
        for streams in STREAMS {
            println!(
                "[{tag}] iperf3 h1 -> {} ({path}), {streams} stream(s)",
                nodes[k].tag()
            );
            let m = measure_pair(nodes, &pods, k, streams, repeats)?;
            results.throughput.push(Throughput {
                backend: tag,
                pair: format!("h1 → {}", nodes[k].tag()),
                path: path.clone(),
                streams,
                pod: m[0].clone(),
                underlay: m[1].clone(),
                pod_cpu: m[2].clone(),
                underlay_cpu: m[3].clone(),
            });
        }
    }
    Ok(pods)
}

/// The round trip of the first echo that comes back, trying once a second until `within`:
/// a pod's first packet to another (a request dropped because a route was not there yet is
/// retried, so what is timed is the first that could be answered).
fn first_reply(
    from: &conformance::Netns,
    to: Ipv4Addr,
    within: Duration,
) -> Result<Option<f64>, BoxError> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        interrupt::check()?;
        let r = traffic::ping(from, to, 1)?;
        if let Some(rtt) = r.rtts.first() {
            return Ok(Some(*rtt));
        }
    }
    Ok(None)
}

/// Pod h1 → pod k and host h1 → host k, alternating run by run: throughput of pod and
/// underlay, then CPU seconds per GB of each.
fn measure_pair(
    nodes: &[Node],
    pods: &[Pod],
    k: usize,
    streams: u32,
    repeats: usize,
) -> Result<[Samples; 4], BoxError> {
    let pod_server = IperfServer::start(&pods[k].netns, pods[k].ip, IPERF_PORT)?;
    let host_server =
        IperfServer::start(nodes[k].host().netns(), nodes[k].host().ip(), IPERF_PORT)?;
    let mut out: [Samples; 4] = Default::default();
    for rep in 0..repeats {
        let pod_first = rep % 2 == 0;
        for overlay in [pod_first, !pod_first] {
            let (bps, cpu) = if overlay {
                measure_with_cpu(&pod_server, &pods[0].netns, streams)?
            } else {
                measure_with_cpu(&host_server, nodes[0].host().netns(), streams)?
            };
            let at = if overlay { 0 } else { 1 };
            out[at].push(bps);
            out[at + 2].push(cpu);
        }
    }
    Ok(out)
}

/// Waits on every watcher at once for `goal`, after `trigger` (called once
/// all watchers are polling) returns its start instant; the delay each saw.
fn watch_all(
    watchers: Vec<RouteWatch>,
    goal: &Goal<'_>,
    trigger: impl FnOnce() -> Result<Instant, BoxError>,
) -> Result<Vec<Duration>, BoxError> {
    let barrier = Barrier::new(watchers.len() + 1);
    let (started, seen) = std::thread::scope(|s| {
        let handles: Vec<_> = watchers
            .into_iter()
            .map(|mut w| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    w.wait(goal, ROUTE_TIMEOUT)
                })
            })
            .collect();
        barrier.wait();
        let started = trigger();
        let seen: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (started, seen)
    });
    let started = started?;
    let mut delays = Vec::new();
    for (i, outcome) in seen.into_iter().enumerate() {
        let outcome = outcome.map_err(|_| "route watcher panicked")??;
        let (_, at) = outcome.ok_or_else(|| {
            format!(
                "peer h{} did not reach {goal:?} within {ROUTE_TIMEOUT:?}",
                i + 1
            )
        })?;
        delays.push(
            at.checked_duration_since(started)
                .ok_or("route changed before the trigger")?,
        );
    }
    Ok(delays)
}

fn watchers(nodes: &[Node]) -> Result<Vec<RouteWatch>, BoxError> {
    Ok(nodes
        .iter()
        .map(|n| RouteWatch::open(n.host().netns().path()))
        .collect::<std::io::Result<_>>()?)
}

/// Fake nodes' lease records, put and deleted by hand; every peer's delay.
fn lease_latency(
    cluster: &Cluster,
    nodes: &[Node],
    subnets: &[Ipv4Net],
    backend: Backend,
    count: usize,
) -> Result<(Samples, Samples), BoxError> {
    let mut http = EtcdHttp::connect(nodes[0].host().netns().path(), cluster.etcd.client_addr())?;
    let lease = http.grant(FAKE_LEASE_TTL)?;
    let free: Vec<Ipv4Net> = (0..=255u8)
        .rev()
        .map(|n| Ipv4Net::new(Ipv4Addr::new(10, 244, n, 0), 24).expect("valid /24"))
        .filter(|n| !subnets.contains(n))
        .take(count)
        .collect();
    let (mut put, mut delete) = (Samples::new(), Samples::new());
    for (k, subnet) in free.into_iter().enumerate() {
        interrupt::check()?;
        let key = format!(
            "{PREFIX}/subnets/{}-{}",
            subnet.network(),
            subnet.prefix_len()
        );
        let value = fake_lease(backend, k as u8);
        for d in watch_all(watchers(nodes)?, &Goal::Present(subnet), || {
            Ok(http.send_put(&key, &value, Some(&lease))?)
        })? {
            put.push_duration(d);
        }
        http.finish()?;
        for d in watch_all(watchers(nodes)?, &Goal::Absent(subnet), || {
            Ok(http.send_delete(&key)?)
        })? {
            delete.push_duration(d);
        }
        http.finish()?;
    }
    Ok((put, delete))
}

/// A lease record as flanneld writes it, for a node that does not exist.
/// host-gw needs its next hop on the peers' segment; the vxlan ones sit on
/// segment B so DirectRouting cannot take the shortcut either.
fn fake_lease(backend: Backend, k: u8) -> String {
    let ip = match backend {
        Backend::HostGw => segment_address(Segment::A, 200 + k),
        _ => segment_address(Segment::B, 200 + k),
    };
    let (kind, data) = match backend {
        Backend::HostGw => ("host-gw", serde_json::Value::Null),
        Backend::Udp => ("", serde_json::Value::Null),
        _ => (
            "vxlan",
            json!({"VNI": 1, "VtepMAC": format!("0a:58:0a:f4:{k:02x}:01")}),
        ),
    };
    json!({"PublicIP": ip.to_string(), "PublicIPv6": null, "BackendType": kind, "BackendData": data}).to_string()
}

/// Fresh hosts on segment A start flanneld one after the other; the delay
/// from spawn to their subnet's route on every existing peer.
fn join_latency(
    cluster: &Cluster,
    nodes: &[Node],
    subnets: &[Ipv4Net],
) -> Result<Samples, BoxError> {
    let network: Ipv4Net = NETWORK.parse()?;
    let mut known = subnets.to_vec();
    let mut join = Samples::new();
    for j in 0..JOINS {
        interrupt::check()?;
        let mut newcomer = cluster.add_node(
            Segment::A,
            segment_address(Segment::A, 10 + j),
            &format!("j{}", j + 1),
        )?;
        let goal = Goal::NewIn {
            network,
            known: &known,
        };
        let delays = watch_all(watchers(nodes)?, &goal, || {
            Ok(newcomer.start_flanneld(&["--ip-masq"])?)
        })?;
        for d in delays {
            join.push_duration(d);
        }
        known.push(newcomer.wait_ready(READY_TIMEOUT)?);
        newcomer.stop_flanneld()?;
    }
    Ok(join)
}

fn render_throughput(rows: &[Throughput]) -> String {
    let mut t = Table::new(&[
        ("backend", Align::Left),
        ("pair", Align::Left),
        ("path", Align::Left),
        ("streams", Align::Right),
        ("pod to pod", Align::Right),
        ("underlay", Align::Right),
        ("pod/underlay", Align::Right),
        ("pod/vxlan", Align::Right),
        ("CPU s/GB pod", Align::Right),
        ("CPU s/GB underlay", Align::Right),
    ]);
    let mut last = None;
    let cpu = |v: Option<f64>| or_dash(v, |x| format!("{x:.2}"));
    for r in rows {
        if last.is_some() && last != Some(r.backend) {
            t.separator();
        }
        last = Some(r.backend);
        let vxlan = rows
            .iter()
            .find(|v| v.backend == "vxlan" && v.pair == r.pair && v.streams == r.streams);
        t.row([
            r.backend.to_owned(),
            r.pair.clone(),
            r.path.clone(),
            r.streams.to_string(),
            or_dash(r.pod.median(), fmt_bps),
            or_dash(r.underlay.median(), fmt_bps),
            fmt_ratio(r.pod.median(), r.underlay.median()),
            fmt_ratio(r.pod.median(), vxlan.and_then(|v| v.pod.median())),
            cpu(r.pod_cpu.median()),
            cpu(r.underlay_cpu.median()),
        ]);
    }
    t.render()
}

/// Per WireGuard row: the target, the CPU per GB it allows, what the udp machinery and the
/// crypto take of that, and ours (see the legend printed under it); `None` without the udp
/// and vxlan rows.
fn render_wg_ceiling(rows: &[Throughput], crypto: f64, cores: usize) -> Option<String> {
    let mut t = Table::new(&[
        ("pair", Align::Left),
        ("streams", Align::Right),
        ("target", Align::Right),
        ("budget", Align::Right),
        ("udp + crypto", Align::Right),
        ("ceiling", Align::Right),
        ("ours", Align::Right),
        ("verdict", Align::Left),
    ]);
    let same = |backend: &str, r: &Throughput| {
        rows.iter()
            .find(|o| o.backend == backend && o.pair == r.pair && o.streams == r.streams)
    };
    let mut any = false;
    for r in rows
        .iter()
        .filter(|r| r.backend == Backend::Wireguard.label())
    {
        let (Some(vxlan), Some(udp_cpu), Some(ours), Some(ours_cpu)) = (
            same("vxlan", r).and_then(|v| v.pod.median()),
            same("udp", r).and_then(|u| u.pod_cpu.median()),
            r.pod.median(),
            r.pod_cpu.median(),
        ) else {
            continue;
        };
        any = true;
        let target = vxlan * 0.5;
        // CPU seconds per GB that every core, busy all the time, affords at the target.
        let budget = cores as f64 * 8e9 / target;
        let floor = udp_cpu + crypto;
        t.row([
            r.pair.clone(),
            r.streams.to_string(),
            fmt_bps(target),
            format!("{budget:.2} s/GB"),
            format!("{udp_cpu:.2} + {crypto:.2} s/GB"),
            fmt_bps(cores as f64 * 8e9 / floor),
            format!("{}, {ours_cpu:.2} s/GB", fmt_bps(ours)),
            if ours >= target {
                "met".to_owned()
            } else if floor > budget {
                "needs a cheaper TUN + UDP path: udp + crypto alone exceed the budget".to_owned()
            } else if ours_cpu > budget {
                format!(
                    "missed on cost: ours takes {:.2} s/GB beyond udp + crypto, the budget leaves {:.2}",
                    ours_cpu - floor,
                    budget - floor
                )
            } else {
                // Machine-wide busy cores while ours ran: CPU per GB times GB per second.
                let busy = ours_cpu * ours / 8e9;
                format!("missed on idle time: ours fits the budget but kept {busy:.2} of {cores} cores busy")
            },
        ]);
    }
    any.then(|| t.render())
}

fn render_first_packet(rows: &[FirstPacket]) -> String {
    let mut t = Table::new(&[
        ("backend", Align::Left),
        ("pair", Align::Left),
        ("first", Align::Right),
        ("after", Align::Right),
    ]);
    for r in rows {
        t.row([
            r.backend.to_owned(),
            r.pair.clone(),
            or_dash(r.first, fmt_secs),
            or_dash(r.after.median(), fmt_secs),
        ]);
    }
    t.render()
}

fn render_programming(rows: &[Programming]) -> String {
    let mut t = Table::new(&[
        ("backend", Align::Left),
        ("peers", Align::Right),
        ("lease put: median", Align::Right),
        ("p99", Align::Right),
        ("lease delete: median", Align::Right),
        ("p99", Align::Right),
        ("new flanneld: median", Align::Right),
        ("max", Align::Right),
        ("samples", Align::Left),
    ]);
    for r in rows {
        t.row([
            r.backend.to_owned(),
            r.peers.to_string(),
            or_dash(r.put.median(), fmt_secs),
            or_dash(r.put.percentile(99.0), fmt_secs),
            or_dash(r.delete.median(), fmt_secs),
            or_dash(r.delete.percentile(99.0), fmt_secs),
            or_dash(r.join.median(), fmt_secs),
            or_dash(r.join.max(), fmt_secs),
            format!("{} / {} / {}", r.put.len(), r.delete.len(), r.join.len()),
        ]);
    }
    t.render()
}

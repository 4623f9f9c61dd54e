//! The flannel-rs demo (`scripts/demo.sh`): a three-host cluster in network
//! namespaces running our flanneld and CNI plugins, one backend after the
//! other, with pod-to-pod reachability, latency and throughput in a table.
//!
//! Everything lives in namespaces and temp dirs this process creates; they
//! go away on success, on error and on Ctrl-C alike.

use ipnet::Ipv4Net;
use std::time::{Duration, Instant};

use bench::cluster::{Backend, Cluster, Node, Pod};
use bench::interrupt;
use bench::stats::{fmt_bps, fmt_secs, Samples};
use bench::table::{Align, Table};
use bench::traffic::{self, IperfServer, TrafficError};
use conformance::{Driver, PluginDir};

const PODS_PER_HOST: [&str; 2] = ["a", "b"];
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(15);
const PINGS: u32 = 5;
const IPERF_SECS: u32 = 2;
const IPERF_PORT: u16 = 5201;

type BoxError = Box<dyn std::error::Error>;

/// One line of the final table.
struct Row {
    backend: &'static str,
    pair: String,
    path: String,
    status: String,
    ok: bool,
    rtt: Option<f64>,
    throughput: String,
}

fn main() {
    interrupt::run_main("demo", 2, || {
        run().map(|failed| {
            if failed > 0 {
                println!("\n{failed} check(s) failed.");
            }
            i32::from(failed > 0)
        })
    })
}

/// Runs every backend; the number of failed checks.
fn run() -> Result<usize, BoxError> {
    let t0 = Instant::now();
    println!(
        "demo: underlay (segments A 192.168.1.0/24 and B 192.168.2.0/24 behind a router) and etcd"
    );
    let cluster = Cluster::start()?;
    println!(
        "demo: etcd at {} (in the router's namespace)",
        cluster.etcd.endpoint()
    );
    let driver = Driver::new(PluginDir::ours()?);
    let mut rows = Vec::new();
    for backend in Backend::ALL {
        interrupt::check()?;
        println!();
        match run_backend(&cluster, &driver, backend, &mut rows) {
            Ok(()) => {}
            Err(e) if interrupt::received().is_some() => return Err(e),
            Err(e) => {
                println!("[{}] FAILED: {e}", backend.label());
                rows.push(Row {
                    backend: backend.label(),
                    pair: "(setup)".into(),
                    path: String::new(),
                    status: "fail".into(),
                    ok: false,
                    rtt: None,
                    throughput: String::new(),
                });
            }
        }
    }
    println!("\ndemo: tearing down the underlay and etcd");
    drop(driver);
    drop(cluster);
    println!("\n{}", render(&rows));
    println!("host-gw ran on segment A's two hosts only: it routes pod subnets via the peer's address, which must be on the same L2 segment.");
    println!("demo: done in {}", fmt_secs(t0.elapsed().as_secs_f64()));
    Ok(rows.iter().filter(|r| !r.ok).count())
}

fn run_backend(
    cluster: &Cluster,
    driver: &Driver,
    backend: Backend,
    rows: &mut Vec<Row>,
) -> Result<(), BoxError> {
    let tag = backend.label();
    println!(
        "[{tag}] etcd {}/config = {}",
        bench::cluster::PREFIX,
        backend.net_conf()
    );
    cluster.configure(backend)?;
    if backend == Backend::HostGw {
        println!("[{tag}] hosts on segment A only (host-gw needs the peers on one L2 segment)");
    }
    let mut nodes = cluster.add_nodes(backend)?;
    let mut started = Vec::new();
    let args = [&["--ip-masq"], backend.flanneld_args()].concat();
    for node in &mut nodes {
        started.push(node.start_flanneld(&args)?);
    }
    let first = &nodes[0];
    println!(
        "[{tag}] started on each host: ip netns exec {} flanneld {}",
        first.host().netns().name(),
        first.flanneld_args().join(" ")
    );
    let mut subnets = Vec::new();
    for (node, started) in nodes.iter_mut().zip(started) {
        let subnet = node.wait_ready(READY_TIMEOUT)?;
        println!(
            "[{tag}] {} ({}, segment {:?}): lease {subnet}, subnet.env {} after start",
            node.tag(),
            node.host().ip(),
            node.host().segment(),
            fmt_secs(started.elapsed().as_secs_f64())
        );
        subnets.push(subnet);
    }
    let mut pods: Vec<(usize, Pod)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for name in PODS_PER_HOST {
            interrupt::check()?;
            let started = Instant::now();
            let pod = node.add_pod(driver, &format!("{}{name}", node.tag()))?;
            println!(
                "[{tag}] {}: pod {} = {} (CNI ADD {})",
                node.tag(),
                pod.name,
                pod.ip,
                fmt_secs(started.elapsed().as_secs_f64())
            );
            pods.push((i, pod));
        }
    }
    let outcome = measure(backend, &nodes, &subnets, &pods, rows);
    // Teardown runs whatever the measurements did, as a runtime would.
    for (i, pod) in &mut pods {
        if let Err(e) = nodes[*i].remove_pod(driver, pod) {
            println!("[{tag}] DEL {}: {e}", pod.name);
            rows.push(Row {
                backend: tag,
                pair: format!("DEL {}", pod.name),
                path: String::new(),
                status: "fail".into(),
                ok: false,
                rtt: None,
                throughput: String::new(),
            });
        }
    }
    let mut exits = Vec::new();
    for node in &mut nodes {
        if let Some(status) = node.stop_flanneld()? {
            exits.push(format!("{} {status}", node.tag()));
        }
    }
    println!(
        "[{tag}] pods deleted through libcni; flanneld stopped ({})",
        exits.join(", ")
    );
    outcome
}

fn measure(
    backend: Backend,
    nodes: &[Node],
    subnets: &[Ipv4Net],
    pods: &[(usize, Pod)],
    rows: &mut Vec<Row>,
) -> Result<(), BoxError> {
    let tag = backend.label();
    // Throughput for the pair that crosses the most: first host to last.
    let iperf_pair = (0, pods.len() - PODS_PER_HOST.len());
    for (i, (na, a)) in pods.iter().enumerate() {
        for (j, (nb, b)) in pods.iter().enumerate().skip(i + 1) {
            let reachable = traffic::wait_reachable(&a.netns, b.ip, CONVERGE_TIMEOUT)?;
            let report = if reachable {
                Some(traffic::ping(&a.netns, b.ip, PINGS)?)
            } else {
                None
            };
            let mut rtts = Samples::new();
            for r in report.iter().flat_map(|r| &r.rtts) {
                rtts.push(*r);
            }
            let (ok, status) = match &report {
                Some(r) if r.all_replied() => (true, "ok".to_owned()),
                Some(r) => (false, format!("fail ({}/{} replies)", r.received, r.sent)),
                None => (false, "fail (unreachable)".to_owned()),
            };
            if !ok {
                let routes: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("{}:\n{}", n.tag(), n.routes_text()))
                    .collect();
                println!(
                    "[{tag}] {} -> {} {status}; routes:\n{}",
                    a.name,
                    b.name,
                    routes.join("")
                );
            }
            let throughput = if (i, j) == iperf_pair {
                throughput(tag, a, b)?
            } else {
                (true, String::new())
            };
            rows.push(Row {
                backend: tag,
                pair: format!("{} ({}) ↔ {} ({})", a.name, a.ip, b.name, b.ip),
                path: nodes[*na].path_to(&nodes[*nb], subnets[*nb]),
                status,
                ok: ok && throughput.0,
                rtt: rtts.median(),
                throughput: throughput.1,
            });
        }
    }
    println!(
        "[{tag}] pinged {} pod pairs ({PINGS} echoes each)",
        pods.len() * (pods.len() - 1) / 2
    );
    Ok(())
}

/// iperf3 from `a` to `b`; whether it worked and the cell to print.
fn throughput(tag: &str, a: &Pod, b: &Pod) -> Result<(bool, String), TrafficError> {
    let measured = IperfServer::start(&b.netns, b.ip, IPERF_PORT)
        .and_then(|s| s.measure(&a.netns, IPERF_SECS, 1));
    match measured {
        Ok(bps) => {
            println!(
                "[{tag}] iperf3 {} -> {}: {} (TCP, 1 stream, {IPERF_SECS} s)",
                a.name,
                b.name,
                fmt_bps(bps)
            );
            Ok((true, fmt_bps(bps)))
        }
        Err(e @ TrafficError::Interrupted(_)) => Err(e),
        Err(e) => {
            println!("[{tag}] iperf3 {} -> {}: {e}", a.name, b.name);
            Ok((false, "error".into()))
        }
    }
}

fn render(rows: &[Row]) -> String {
    let mut t = Table::new(&[
        ("backend", Align::Left),
        ("pod pair", Align::Left),
        ("path", Align::Left),
        ("ping", Align::Left),
        ("rtt (median)", Align::Right),
        ("TCP throughput", Align::Right),
    ]);
    let mut last = None;
    for r in rows {
        if last.is_some() && last != Some(r.backend) {
            t.separator();
        }
        last = Some(r.backend);
        t.row([
            r.backend.to_owned(),
            r.pair.clone(),
            r.path.clone(),
            r.status.clone(),
            r.rtt.map(fmt_secs).unwrap_or_default(),
            r.throughput.clone(),
        ]);
    }
    t.render()
}

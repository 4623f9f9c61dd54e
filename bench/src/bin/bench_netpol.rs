//! NetworkPolicy benchmark (`scripts/bench-netpol.sh`): one node with 1,000 pods (every one
//! a real network namespace attached through the CNI chain) and 200 policies, enforced by our
//! flanneld (`--network-policy`, kube mode against the test API server).
//!
//! - How the table grows: rules and set elements as policies are added (at a quarter of the
//!   pods), then as the rest of the pods arrive (rules must not grow with pods).
//! - API change → enforced: a probe pod opens fresh TCP connections to a server pod while the
//!   benchmark flips what policy says about them — half the changes are policies created and
//!   deleted (rules change), half a pod relabelled (set elements change) — and times, from
//!   just before the API write, until connections behave the new way.
//! - Pod-to-pod TCP throughput (iperf3) on the node and to a pod of a second node, with the
//!   200 policies in force and the server isolated (a policy admits the client), against the
//!   same pair with flanneld started without `--network-policy` (no table at all).
//! - flanneld's memory with all of it.
//!
//! `BENCH_NETPOL_PODS` (1000), `BENCH_NETPOL_POLICIES` (200), `BENCH_NETPOL_EVENTS` (100).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bench::stats::{fmt_bps, fmt_kib, fmt_ratio, fmt_secs, or_dash, Samples};
use bench::table::{Align, Table};
use bench::traffic::IperfServer;
use bench::{env_count, interrupt};
use conformance::kubeapi::{fixture_node, KubeApi};
use conformance::netpol::{namespace_object, pod_object, rv_of, KubeNode};
use conformance::reach::{in_netns, Servers};
use conformance::{Driver, Netns, PluginDir, Segment, Underlay};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

const NAMESPACES: usize = 20;
const PROBE_NS: &str = "probe";
const IPERF_PORT: u16 = 5201;
const IPERF_SECS: u32 = 2;
/// Rounds of one run with the table and one without.
const IPERF_REPEATS: usize = 8;
const ATTACH_THREADS: usize = 8;
const READY: Duration = Duration::from_secs(120);
/// Whether a connection attempt is judged denied: allowed ones on this node take well under
/// a millisecond, so a SYN unanswered this long was dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(20);
const EVENT_DEADLINE: Duration = Duration::from_secs(10);
/// Quiet time after flanneld restarts before throughput is measured.
const SETTLE: Duration = Duration::from_secs(5);

struct Pod {
    netns: Netns,
    ip: Ipv4Addr,
}

fn attach(driver: &Driver, node: &KubeNode, id: &str) -> Result<Pod, BoxError> {
    let netns = Netns::new("bnp")?;
    netns.set_loopback_up()?;
    let result = driver
        .add(
            &node.conflist(),
            node.host.netns(),
            &netns,
            "eth0",
            id,
            None,
        )
        .map_err(|f| format!("CNI ADD of {id}: {f:?}"))?;
    let ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("ADD of {id} gave no IPv4 address: {result}"))?;
    Ok(Pod { netns, ip })
}

/// The model pods of the benchmark's namespaces: `ns<i % 20>/p<i>`, labelled so that the
/// policies below select and admit a fraction of them.
fn model_labels(i: usize) -> Value {
    json!({"app": format!("a{}", i % 10), "rank": format!("r{}", i % 50)})
}

/// Policy `i`: isolates the app it selects for ingress (from another app, and from some pods
/// of some namespaces, on a numbered and a named port); every fourth also limits egress to
/// DNS inside a CIDR with a hole.
fn model_policy(i: usize) -> Value {
    let mut spec = json!({
        "podSelector": {"matchLabels": {"app": format!("a{}", i % 10)}},
        "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"app": format!("a{}", (i + 1) % 10)}}},
                     {"namespaceSelector": {"matchLabels": {"team": format!("t{}", i % 4)}},
                      "podSelector": {"matchLabels": {"rank": format!("r{}", i % 50)}}}],
            "ports": [{"port": 8000 + i as u64}, {"port": "serve-80-tcp"}]
        }]
    });
    if i.is_multiple_of(4) {
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
        spec["egress"] = json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("10.244.{}.0/24", i % 4)]}}],
                                 "ports": [{"port": 53, "protocol": "UDP"}]}]);
    }
    json!({"metadata": {"name": format!("pol{i}"), "namespace": format!("ns{}", i % NAMESPACES)}, "spec": spec})
}

/// The rules and set elements of the node's table, as the kernel lists them.
fn table_size(node: &KubeNode) -> Result<(usize, usize), BoxError> {
    let out =
        node.host
            .netns()
            .exec_ok(&["nft", "-j", "list", "table", "inet", "flannel-netpol"])?;
    let v: Value = serde_json::from_str(&out)?;
    let items = v["nftables"].as_array().ok_or("no nftables array")?;
    let rules = items.iter().filter(|i| i.get("rule").is_some()).count();
    let elements = items
        .iter()
        .filter_map(|i| i.get("set"))
        .map(|s| s["elem"].as_array().map_or(0, Vec::len))
        .sum();
    Ok((rules, elements))
}

/// The probe client as the API server holds it, admitted by the servers' policy or not.
fn client_object(ip: Ipv4Addr, admitted: bool) -> Value {
    let allowed = if admitted { "yes" } else { "no" };
    pod_object(
        PROBE_NS,
        "client",
        "n1",
        &[IpAddr::V4(ip)],
        json!({"role": "client", "allowed": allowed}),
    )
}

/// Waits until `node` enforced `rv`, then adds a row with the table's size and the wait.
fn growth_row(
    growth: &mut Table,
    node: &KubeNode,
    pods: usize,
    policies: usize,
    rv: u64,
) -> Result<(), BoxError> {
    let took = wait_enforced(node, rv)?;
    let (rules, elements) = table_size(node)?;
    growth.row([
        pods.to_string(),
        policies.to_string(),
        rules.to_string(),
        elements.to_string(),
        fmt_secs(took.as_secs_f64()),
    ]);
    Ok(())
}

fn wait_enforced(node: &KubeNode, rv: u64) -> Result<Duration, BoxError> {
    let started = Instant::now();
    while node.enforced_version() < rv {
        if started.elapsed() > READY {
            return Err(format!(
                "{} did not enforce resourceVersion {rv}:\n{}",
                node.name,
                node.log()
            )
            .into());
        }
        interrupt::sleep(Duration::from_millis(20))?;
    }
    Ok(started.elapsed())
}

fn connects(to: SocketAddr) -> bool {
    TcpStream::connect_timeout(&to, CONNECT_TIMEOUT).is_ok()
}

/// From just before `write` until connections to `to` (made in the calling thread's
/// namespace) are `allowed` as wanted: the first success, or the first of two failures in a
/// row.
fn time_change(to: SocketAddr, allowed: bool, write: impl FnOnce()) -> Option<Duration> {
    let t0 = Instant::now();
    write();
    let mut first_failure: Option<Instant> = None;
    while t0.elapsed() < EVENT_DEADLINE {
        let at = Instant::now();
        let ok = connects(to);
        if allowed && ok {
            return Some(at - t0);
        }
        if !allowed {
            match (ok, first_failure) {
                (true, _) => first_failure = None,
                (false, Some(f)) => return Some(f - t0),
                (false, None) => first_failure = Some(at),
            }
        }
        if ok {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    None
}

fn rss_kib(pid: u32) -> Result<(u64, u64), BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Ok((field("VmRSS:").unwrap_or(0), field("VmHWM:").unwrap_or(0)))
}

fn main() {
    interrupt::run_main("bench_netpol", 1, run);
}

fn run() -> Result<i32, BoxError> {
    let pods_total = env_count("BENCH_NETPOL_PODS", 1000)?;
    let policies_total = env_count("BENCH_NETPOL_POLICIES", 200)?;
    let events = env_count("BENCH_NETPOL_EVENTS", 100)?;
    let underlay = Underlay::new()?;
    let api = KubeApi::start_in(underlay.router(), IpAddr::V4(Segment::A.router_ip()))?;
    for i in 0..NAMESPACES {
        api.put(
            "namespaces",
            namespace_object(&format!("ns{i}"), &[("team", &format!("t{}", i % 4))]),
        );
    }
    api.put("namespaces", namespace_object(PROBE_NS, &[]));
    let net_conf = json!({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}});
    // The benchmark node holds 1,000 pods: a /22 of the network (kube mode takes the
    // node's podCIDR as it is).
    let mut nodes = Vec::new();
    for (i, cidr) in ["10.244.0.0/22", "10.244.4.0/24"].iter().enumerate() {
        let name = format!("n{}", i + 1);
        let host = underlay.add_host(Segment::A, &format!("bn{}", i + 1))?;
        api.put("nodes", fixture_node(&name, Some(cidr), host.ip()));
        nodes.push(KubeNode::start(
            &api,
            host,
            &name,
            &net_conf,
            &["--network-policy"],
        )?);
    }
    for n in &mut nodes {
        n.wait_ready(READY)?;
    }
    let driver = Driver::new(PluginDir::ours()?);

    // The probe pods: client and server on n1 (counted among its pods), a server on n2.
    eprintln!("bench_netpol: attaching {pods_total} pods to n1 through the CNI chain");
    let client = attach(&driver, &nodes[0], "probe-client")?;
    let server = attach(&driver, &nodes[0], "probe-server")?;
    let remote = attach(&driver, &nodes[1], "probe-remote")?;
    let _servers = [
        Servers::start(&server.netns, &[80])?,
        Servers::start(&remote.netns, &[80])?,
    ];
    api.put("pods", client_object(client.ip, true));
    for (name, node, ip) in [("server", "n1", server.ip), ("remote", "n2", remote.ip)] {
        api.put(
            "pods",
            pod_object(
                PROBE_NS,
                name,
                node,
                &[IpAddr::V4(ip)],
                json!({"role": "server"}),
            ),
        );
    }
    // Servers admit only pods labelled allowed=yes: they are isolated throughout.
    let rv = rv_of(&api.put(
        "networkpolicies",
        json!({"metadata": {"name": "servers-admit-allowed", "namespace": PROBE_NS},
        "spec": {"podSelector": {"matchLabels": {"role": "server"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"allowed": "yes"}}}]}]}}),
    ));

    let mut pods: Vec<Pod> = vec![client, server];
    let attach_batch = |from: usize, to: usize| -> Result<Vec<Pod>, BoxError> {
        let ids: Vec<usize> = (from..to).collect();
        let chunks: Vec<Vec<usize>> = ids
            .chunks(ids.len().div_ceil(ATTACH_THREADS).max(1))
            .map(<[usize]>::to_vec)
            .collect();
        let results: Vec<Result<Vec<(usize, Pod)>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let (driver, node) = (&driver, &nodes[0]);
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|&i| {
                                attach(driver, node, &format!("bnp-{i}"))
                                    .map(|p| (i, p))
                                    .map_err(|e| e.to_string())
                            })
                            .collect::<Result<Vec<_>, String>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("attach thread panicked".into()))
                })
                .collect()
        });
        let mut out = Vec::new();
        for r in results {
            for (i, pod) in r? {
                api.put(
                    "pods",
                    pod_object(
                        &format!("ns{}", i % NAMESPACES),
                        &format!("p{i}"),
                        "n1",
                        &[IpAddr::V4(pod.ip)],
                        model_labels(i),
                    ),
                );
                out.push(pod);
            }
        }
        Ok(out)
    };

    // Growth of the table: a quarter of the pods, policies in four steps, then all pods.
    let mut growth = Table::new(&[
        ("pods on n1", Align::Right),
        ("policies", Align::Right),
        ("nft rules", Align::Right),
        ("set elements", Align::Right),
        ("change enforced in", Align::Right),
    ]);
    let quarter = pods_total / 4;
    let client_ip = pods[0].ip;
    let attached = |pods: &mut Vec<Pod>, to: usize| -> Result<u64, BoxError> {
        let started = Instant::now();
        pods.extend(attach_batch(pods.len(), to)?);
        eprintln!(
            "bench_netpol: {} pods attached in {:.1?}",
            pods.len(),
            started.elapsed()
        );
        // A write after the last pod, to wait for.
        Ok(rv_of(&api.put("pods", client_object(client_ip, true))))
    };
    let last = attached(&mut pods, quarter)?;
    growth_row(&mut growth, &nodes[0], pods.len(), 1, rv.max(last))?;
    let mut added = 0;
    for step in [policies_total / 4, policies_total / 2, policies_total] {
        let mut rv = 0;
        for i in added..step {
            rv = rv_of(&api.put("networkpolicies", model_policy(i)));
        }
        added = step;
        growth_row(&mut growth, &nodes[0], pods.len(), step + 1, rv)?;
    }
    let last = attached(&mut pods, pods_total)?;
    growth_row(&mut growth, &nodes[0], pods.len(), policies_total + 1, last)?;
    let (rss, _) = rss_kib(nodes[0].pid().ok_or("flanneld on n1 is not running")?)?;

    // API change -> enforced, measured by connections from the client pod.
    let to_server = SocketAddr::new(IpAddr::V4(pods[1].ip), 80);
    let mut by_policy = Samples::new();
    let mut by_label = Samples::new();
    let mut missed = 0usize;
    let deny_policy = json!({"metadata": {"name": "client-egress-81-only", "namespace": PROBE_NS},
        "spec": {"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                 "egress": [{"ports": [{"port": 81}]}]}});
    in_netns(pods[0].netns.path(), || -> Result<(), String> {
        for k in 0..events {
            interrupt::check().map_err(|e| e.to_string())?;
            let (deny, by_label_event) = (k % 2 == 0, (k / 2) % 2 == 1);
            let took = if by_label_event {
                time_change(to_server, !deny, || {
                    api.put("pods", client_object(client_ip, !deny));
                })
            } else if deny {
                time_change(to_server, false, || {
                    api.put("networkpolicies", deny_policy.clone());
                })
            } else {
                time_change(to_server, true, || {
                    api.delete("networkpolicies", PROBE_NS, "client-egress-81-only");
                })
            };
            match took {
                Some(d) if by_label_event => by_label.push_duration(d),
                Some(d) => by_policy.push_duration(d),
                None => missed += 1,
            }
        }
        Ok(())
    })??;
    let mut latency = Table::new(&[
        ("API change -> enforced (probe connections)", Align::Left),
        ("changes", Align::Right),
        ("median", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
    ]);
    for (what, s) in [
        ("policy created / deleted (rules change)", &by_policy),
        ("pod relabelled (set elements change)", &by_label),
    ] {
        latency.row([
            what.to_owned(),
            s.len().to_string(),
            or_dash(s.median(), fmt_secs),
            or_dash(s.percentile(99.0), fmt_secs),
            or_dash(s.max(), fmt_secs),
        ]);
    }
    let sync_count = nodes[0].metric("flannel_netpol_sync_seconds_count");
    let sync_sum = nodes[0].metric("flannel_netpol_sync_seconds_sum");

    // Throughput with the table and without it. flanneld is stopped (the table stays, as on
    // any exit) and the table is taken away and put back between runs, so the two sides
    // differ in nothing but the table; the order alternates every round.
    let server_iperf = IperfServer::start(&pods[1].netns, pods[1].ip, IPERF_PORT)?;
    let remote_iperf = IperfServer::start(&remote.netns, remote.ip, IPERF_PORT)?;
    let mut saved = Vec::new();
    for n in &mut nodes {
        n.stop()?;
        let dump = n.dir().join("flannel-netpol.nft");
        std::fs::write(
            &dump,
            n.host
                .netns()
                .exec_ok(&["nft", "list", "table", "inet", "flannel-netpol"])?,
        )?;
        saved.push(dump);
    }
    let set_table = |present: bool| -> Result<(), BoxError> {
        for (n, dump) in nodes.iter().zip(&saved) {
            let ns = n.host.netns();
            ns.exec_ok(&[
                "nft",
                "add table inet flannel-netpol; delete table inet flannel-netpol",
            ])?;
            if present {
                ns.exec_ok(&["nft", "-f", &dump.display().to_string()])?;
            }
        }
        Ok(())
    };
    let (mut with_local, mut with_remote) = (Samples::new(), Samples::new());
    let (mut without_local, mut without_remote) = (Samples::new(), Samples::new());
    for round in 0..IPERF_REPEATS {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for enforcing in order {
            set_table(enforcing)?;
            let (local, remote) = if enforcing {
                (&mut with_local, &mut with_remote)
            } else {
                (&mut without_local, &mut without_remote)
            };
            interrupt::check()?;
            local.push(server_iperf.measure(&pods[0].netns, IPERF_SECS, 1)?);
            remote.push(remote_iperf.measure(&pods[0].netns, IPERF_SECS, 1)?);
        }
    }
    // Memory of a flanneld started with everything present, with and without the flag.
    let mut peak = Vec::new();
    for args in [&["--network-policy"][..], &[][..]] {
        for n in &mut nodes {
            n.restart(Some(args))?;
            n.wait_ready(READY)?;
        }
        interrupt::sleep(SETTLE)?;
        peak.push(rss_kib(nodes[0].pid().ok_or("flanneld on n1 is not running")?)?.1);
    }
    let (hwm_with, hwm_without) = (peak[0], peak[1]);
    let mut tput = Table::new(&[
        ("pod to pod, iperf3 TCP, 1 stream", Align::Left),
        (
            &format!(
                "{} policies (median of {IPERF_REPEATS})",
                policies_total + 2
            ),
            Align::Right,
        ),
        ("no table", Align::Right),
        ("ratio", Align::Right),
    ]);
    for (what, with, without) in [
        ("same node", &with_local, &without_local),
        ("to the other node (vxlan)", &with_remote, &without_remote),
    ] {
        tput.row([
            what.to_owned(),
            or_dash(with.median(), fmt_bps),
            or_dash(without.median(), fmt_bps),
            fmt_ratio(with.median(), without.median()),
        ]);
    }

    println!(
        "NetworkPolicy on one node: {} pods (all attached through the CNI chain), {} policies\n",
        pods.len(),
        policies_total + 2
    );
    println!("{}", growth.render());
    println!("{}", latency.render());
    if missed > 0 {
        println!("{missed} change(s) not seen within {EVENT_DEADLINE:?}");
    }
    if let (Some(c), Some(s)) = (sync_count, sync_sum) {
        println!(
            "flanneld's own flannel_netpol_sync_seconds: {c} changes, mean {}\n",
            fmt_secs(s / c.max(1.0))
        );
    }
    println!("{}", tput.render());
    println!(
        "flanneld on n1, {} pods and {} policies: VmRSS {} after they arrived one by one; VmHWM {} for a flanneld started with all of them present; {} for one started without --network-policy",
        pods.len(),
        policies_total + 2,
        fmt_kib(rss),
        fmt_kib(hwm_with),
        fmt_kib(hwm_without)
    );
    Ok(if missed == 0 { 0 } else { 1 })
}

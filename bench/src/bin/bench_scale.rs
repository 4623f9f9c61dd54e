//! Scale benchmark (`scripts/bench-scale.sh`): lease acquisition by thousands of nodes at
//! once against one etcd, and one flanneld programming routes for thousands of peers.
//!
//! Usage: bench_scale [--nodes N,..] [--stack v4,dual] [--peers N,..] [--samples N]
//! [--only leases|routes]
//! `--nodes`: lease storms through flanneld's own Registry and acquire code (default
//! 1000,5000), each IPv4-only and dual-stack (`--stack`, default both); `--peers`: route-scale
//! runs (default 1000,5000), each with `--samples` timed new leases (default 200).

use std::time::Instant;

use bench::interrupt;
use bench::scale::lease_storm::{self, LeaseStormReport, Stack};
use bench::scale::route_storm::{self, RouteStormReport};
use bench::stats::{fmt_kib, fmt_secs, or_dash};
use bench::table::{Align, Table};

type BoxError = Box<dyn std::error::Error>;

/// The targets for one daemon with 5,000 peers.
const P99_TARGET_SECS: f64 = 0.100;
const RSS_TARGET_KIB: u64 = 20 * 1024;

#[derive(Debug, Clone, PartialEq)]
struct Args {
    nodes: Vec<usize>,
    stacks: Vec<Stack>,
    peers: Vec<usize>,
    samples: usize,
    leases: bool,
    routes: bool,
}

const USAGE: &str = "usage: bench_scale [--nodes N,..|none] [--stack v4,dual] [--peers N,..|none] [--samples N] [--only leases|routes]";

fn stacks(v: Option<String>) -> Result<Vec<Stack>, String> {
    let v = v.ok_or_else(|| format!("--stack needs a value\n{USAGE}"))?;
    v.split(',')
        .map(|s| match s.trim() {
            "v4" => Ok(Stack::V4),
            "dual" => Ok(Stack::Dual),
            other => Err(format!("--stack {other:?}: v4 or dual\n{USAGE}")),
        })
        .collect()
}

fn counts(flag: &str, v: Option<String>) -> Result<Vec<usize>, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
    if v == "none" {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|n| match n.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{flag} {v:?}: expected positive whole numbers\n{USAGE}"
            )),
        })
        .collect()
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        nodes: vec![1000, 5000],
        stacks: vec![Stack::V4, Stack::Dual],
        peers: vec![1000, 5000],
        samples: 200,
        leases: true,
        routes: true,
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--nodes" => a.nodes = counts(&flag, it.next())?,
            "--stack" => a.stacks = stacks(it.next())?,
            "--peers" => a.peers = counts(&flag, it.next())?,
            "--samples" => a.samples = counts(&flag, it.next())?.into_iter().sum(),
            "--only" => match it.next().as_deref() {
                Some("leases") => a.routes = false,
                Some("routes") => a.leases = false,
                other => return Err(format!("--only {other:?}: leases or routes\n{USAGE}")),
            },
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    interrupt::run_main("bench-scale", 1, || run(&args).map(|()| 0))
}

fn run(args: &Args) -> Result<(), BoxError> {
    let t0 = Instant::now();
    let mut leases = Vec::new();
    if args.leases {
        for &n in &args.nodes {
            for &stack in &args.stacks {
                interrupt::check()?;
                println!("[leases] {n} {} nodes acquiring at once", stack.name());
                leases.push(lease_storm::run(n, stack)?);
            }
        }
    }
    let mut routes = Vec::new();
    if args.routes {
        for &n in &args.peers {
            println!(
                "[routes] flanneld with {n} peers, then {} new leases timed",
                args.samples
            );
            routes.push(route_storm::run(n, args.samples)?);
        }
    }
    println!("\n({} in total)", fmt_secs(t0.elapsed().as_secs_f64()));
    if !leases.is_empty() {
        println!("\nLease scale: simulated nodes acquiring from one etcd at once (flanneld's acquire_lease, one connection per node)\n");
        print!("{}", render_leases(&leases));
        println!("  etcd calls: gRPC calls etcd served during the storm, from its grpc_server_handled_total counters (read before and after)");
        println!("  lost CAS: subnet claims that lost the compare-and-swap to another node (create_subnet answered AlreadyExists or Claimed)");
        println!("  shared IPv4 / IPv6: pairs of records in etcd whose subnets of that family overlap, from an etcdctl listing");
        for r in &leases {
            let run = format!("{} {} nodes", r.nodes, r.stack.name());
            println!("  {run}: calls per lease by method: {}", per_method(r));
            println!(
                "  {run}: etcd WAL fsyncs: {} taking {} in total",
                r.fsync.count,
                fmt_secs(r.fsync.secs)
            );
            for (err, n) in &r.errors {
                println!("  {run}: acquire_lease failed {n}× (daemon loop retried): {err}");
            }
            for p in r.check.problems.iter().take(5) {
                println!("  {run}: CHECK FAILED: {p}");
            }
        }
    }
    if !routes.is_empty() {
        println!("\nRoute scale: one flanneld (vxlan) in a netns, peers' leases in etcd before it starts\n");
        print!("{}", render_routes(&routes));
        println!("  all routes: flanneld spawned → last peer route in the kernel table (netlink notifications)");
        println!("  new lease → route: put of a new record sent → its route in the table, {} samples 20 ms apart", args.samples);
        println!(
            "  targets: p99 < {} and VmHWM ≤ {}",
            fmt_secs(P99_TARGET_SECS),
            fmt_kib(RSS_TARGET_KIB)
        );
    }
    let failed: usize = leases.iter().map(|r| r.check.problems.len()).sum();
    if failed > 0 {
        return Err(format!("{failed} lease-store invariant violations (see above)").into());
    }
    Ok(())
}

fn render_leases(rows: &[LeaseStormReport]) -> String {
    let mut t = Table::new(&[
        ("nodes", Align::Right),
        ("stack", Align::Left),
        ("all hold a lease", Align::Right),
        ("per node: p50", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
        ("etcd calls/lease", Align::Right),
        ("lost CAS", Align::Right),
        ("retried by daemon loop", Align::Right),
        ("records", Align::Right),
        ("shared IPv4", Align::Right),
        ("shared IPv6", Align::Right),
        ("problems", Align::Right),
    ]);
    for r in rows {
        t.row([
            r.nodes.to_string(),
            r.stack.name().to_owned(),
            fmt_secs(r.all_held.as_secs_f64()),
            or_dash(r.per_node.median(), fmt_secs),
            or_dash(r.per_node.percentile(99.0), fmt_secs),
            or_dash(r.per_node.max(), fmt_secs),
            format!("{:.1}", r.calls_per_lease()),
            r.lost_cas.to_string(),
            r.nodes_retried.to_string(),
            r.check.records.to_string(),
            r.check.overlapping.to_string(),
            match r.stack {
                Stack::V4 => "—".to_owned(),
                Stack::Dual => r.check.overlapping_v6.to_string(),
            },
            r.check.problems.len().to_string(),
        ]);
    }
    t.render()
}

fn per_method(r: &LeaseStormReport) -> String {
    r.calls
        .by_count()
        .iter()
        .map(|(m, n)| {
            let short = m.rsplit('/').next().unwrap_or(m);
            format!("{short} {:.2}", *n as f64 / r.nodes as f64)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "MISS"
    }
}

fn render_routes(rows: &[RouteStormReport]) -> String {
    let mut t = Table::new(&[
        ("peers", Align::Right),
        ("lease held", Align::Right),
        ("all routes", Align::Right),
        ("new lease → route: p50", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
        ("RSS after start", Align::Right),
        ("VmHWM at end", Align::Right),
        ("p99 target", Align::Left),
        ("RSS target", Align::Left),
    ]);
    for r in rows {
        let p99 = r.new_lease.percentile(99.0);
        t.row([
            r.peers.to_string(),
            or_dash(r.ready.map(|d| d.as_secs_f64()), fmt_secs),
            fmt_secs(r.all_routes.as_secs_f64()),
            or_dash(r.new_lease.median(), fmt_secs),
            or_dash(p99, fmt_secs),
            or_dash(r.new_lease.max(), fmt_secs),
            fmt_kib(r.after_start.rss_kib),
            fmt_kib(r.after_samples.hwm_kib),
            verdict(p99.is_some_and(|p| p < P99_TARGET_SECS)).to_owned(),
            verdict(r.after_samples.hwm_kib <= RSS_TARGET_KIB).to_owned(),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Args, String> {
        parse_args(v.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_and_overrides() {
        let d = args(&[]).unwrap();
        assert_eq!((d.nodes.as_slice(), d.samples), (&[1000, 5000][..], 200));
        let a = args(&[
            "--nodes",
            "10,20",
            "--peers",
            "300",
            "--samples",
            "5",
            "--only",
            "routes",
        ])
        .unwrap();
        assert_eq!(a.nodes, vec![10, 20]);
        assert_eq!(d.stacks, vec![Stack::V4, Stack::Dual]);
        assert_eq!(
            args(&["--stack", "dual"]).unwrap().stacks,
            vec![Stack::Dual]
        );
        assert!(args(&["--stack", "v6"]).is_err());
        assert_eq!(a.peers, vec![300]);
        assert_eq!(a.samples, 5);
        assert!(a.routes && !a.leases);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(args(&["--nodes", "0"]).is_err());
        assert!(args(&["--nodes"]).is_err());
        assert!(args(&["--peers", "x"]).is_err());
        assert!(args(&["--only", "both"]).is_err());
        assert!(args(&["--fast"]).is_err());
    }
}

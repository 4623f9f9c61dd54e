//! Tooling shared by the demo and the benchmark binaries (`src/bin/`).
//!
//! Built on the same bed as the tests (namespaces, underlay, etcd, libcni
//! driver) but returning errors instead of panicking: a benchmark that fails
//! half-way must still unwind through every `Drop` so no namespace leaks,
//! and so must one the operator interrupts with Ctrl-C ([`interrupt`]).
//!
//! - [`cluster`]: etcd, hosts running our flanneld, pods attached through libcni;
//! - [`traffic`]: ping and iperf3 between namespaces, parsed;
//! - [`routes`]: watching a namespace's routing table over netlink;
//! - [`etcd_http`]: writing lease records with an exact send timestamp;
//! - [`delegation`]: delegates run in-process against executed ones, same code;
//! - [`floor`]: the kernel and process costs every plugin pays, and the DEL floor they set;
//! - [`portmap_backends`]: our portmap's iptables and nftables backends compared;
//! - [`plugin_exec`]: running plugins directly (no libcni), timed, and their peak RSS;
//! - [`stats`] and [`table`]: medians, percentiles and aligned text tables;
//! - [`scale`]: lease and route scale with thousands of nodes;
//! - [`wireguard_go_hosts`]: wireguard-go as the reference userspace WireGuard;
//! - [`wg_crypto`]: what sealing and opening WireGuard data messages costs per GB.

pub mod cluster;
pub mod delegation;
pub mod etcd_http;
pub mod floor;
pub mod in_netns;
pub mod interrupt;
pub mod plugin_exec;
pub mod portmap_backends;
pub mod routes;
pub mod scale;
pub mod stats;
pub mod table;
pub mod traffic;
pub mod wg_crypto;
pub mod wireguard_go_hosts;

/// A positive count from the environment variable `name`, `default` when it is unset or
/// empty; anything else is an error naming the variable.
pub fn env_count(name: &str, default: usize) -> Result<usize, Box<dyn std::error::Error>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v:?}: expected a positive whole number").into()),
        },
        _ => Ok(default),
    }
}

/// `count` calls of `f(k)`, `k` in `0..count`, each on its own thread, all at once; the
/// wall time until the last returned. Any call's error (or panic) fails the whole.
pub fn all_at_once(
    count: usize,
    f: impl Fn(usize) -> Result<(), String> + Sync,
) -> Result<std::time::Duration, Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let outcomes: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .map(|k| {
                s.spawn({
                    let f = &f;
                    move || f(k)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .collect()
    });
    let took = started.elapsed();
    outcomes.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(took)
}

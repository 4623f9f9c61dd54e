//! Our portmap's two backends side by side (`scripts/bench-cni.sh`): ADD and DEL of the same
//! hostPort mappings with `backend: iptables` and `backend: nftables`, interleaved call by
//! call in one host namespace, so the table compares the rule programming alone.

use std::path::Path;

use serde_json::json;

use crate::interrupt;
use crate::plugin_exec::{self, Target};
use crate::stats::{fmt_ratio, fmt_secs, or_dash, Samples};
use crate::table::{Align, Table};
use conformance::Netns;

type BoxError = Box<dyn std::error::Error>;

const BACKENDS: [&str; 2] = ["iptables", "nftables"];

/// portmap as the second plugin of a chain: the bridge's result as prevResult, two TCP
/// mappings (UDP ones would add a conntrack flush, which is not rule programming).
fn config(backend: &str, pod: &Path, port: u16) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "pmbench",
        "type": "portmap",
        "backend": backend,
        "runtimeConfig": {"portMappings": [
            {"hostPort": port, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": port + 1, "containerPort": 443, "protocol": "tcp"},
        ]},
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": pod.display().to_string()}],
            "ips": [{"address": "10.99.0.2/24", "interface": 0}],
        },
    })
    .to_string()
}

/// Measures `iterations` ADD+DEL pairs per backend and renders the table.
pub fn measure(plugins: &Path, iterations: usize) -> Result<String, BoxError> {
    let host = Netns::new("pmb")?;
    let pod = Netns::new("pmbp")?;
    // portmap sets route_localnet on the interface that routes to the container.
    for argv in [
        &[
            "ip", "link", "add", "pmb0", "type", "veth", "peer", "name", "pmb1",
        ][..],
        &["ip", "addr", "add", "10.99.0.1/24", "dev", "pmb0"],
        &["ip", "link", "set", "pmb0", "up"],
        &["ip", "link", "set", "pmb1", "up"],
    ] {
        host.exec_ok(argv)?;
    }
    let bin = plugins.join("portmap");
    let mut samples: [[Samples; 2]; 2] = Default::default();
    for i in 0..iterations {
        interrupt::check()?;
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for b in order {
            let id = format!("pmb-{i}-{b}");
            let port = 20000 + (i % 1000) as u16 * 2;
            let stdin = config(BACKENDS[b], pod.path(), port);
            let t = Target {
                host: &host,
                pod: pod.path(),
                container_id: &id,
                ifname: "eth0",
            };
            for (op, command) in ["ADD", "DEL"].into_iter().enumerate() {
                let run = plugin_exec::exec(&bin, command, &t, plugins, stdin.as_bytes(), false)?;
                samples[b][op].push_duration(run.elapsed);
            }
        }
    }
    let mut t = Table::new(&[
        ("op", Align::Left),
        ("iptables median", Align::Right),
        ("p99", Align::Right),
        ("nftables median", Align::Right),
        ("p99", Align::Right),
        ("nft/iptables", Align::Right),
    ]);
    for (op, name) in ["ADD", "DEL"].into_iter().enumerate() {
        let (ipt, nft) = (&samples[0][op], &samples[1][op]);
        t.row([
            name.to_owned(),
            or_dash(ipt.median(), fmt_secs),
            or_dash(ipt.percentile(99.0), fmt_secs),
            or_dash(nft.median(), fmt_secs),
            or_dash(nft.percentile(99.0), fmt_secs),
            fmt_ratio(nft.median(), ipt.median()),
        ]);
    }
    Ok(t.render())
}

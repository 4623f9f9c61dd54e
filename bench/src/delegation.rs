//! In-process delegation against executed delegates, with the same code (issue 21): the
//! kube-flannel chain run plugin by plugin as libcni runs it (no driver), once with our four
//! names on `CNI_PATH` (bridge and host-local run inside flannel's process) and once with
//! bridge and host-local as copies of the executable — other files, so each is executed, as
//! every hop was before. Interleaved call by call, so load lands on both; CPU time (user +
//! system of all processes of the call, from `getrusage`) is shown beside the wall time
//! because it hardly moves with the machine's load.

use std::path::Path;
use std::time::Duration;

use crate::interrupt;
use crate::plugin_exec::{Chain, Target};
use crate::stats::{fmt_ratio, fmt_secs, or_dash, Samples};
use crate::table::{Align, Table};
use conformance::{kube_flannel_conflist, Netns, PluginDir};

type BoxError = Box<dyn std::error::Error>;

const SUBNET_ENV: &str =
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

/// CPU time used so far by this process's terminated, waited-for descendants.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_CHILDREN is always valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One way of running the chain: its own host namespace, node files and `CNI_PATH`.
struct Side {
    host: Netns,
    chain: Chain,
    _files: tempfile::TempDir,
}

impl Side {
    fn new(tag: &str, cni_path: &Path) -> Result<Side, BoxError> {
        let host = Netns::new(tag)?;
        host.set_loopback_up()?;
        let files = tempfile::Builder::new().prefix("fr-bench-dlg-").tempdir()?;
        let subnet_env = files.path().join("subnet.env");
        std::fs::write(&subnet_env, SUBNET_ENV)?;
        let conflist = kube_flannel_conflist("0.3.1", &subnet_env, files.path()).to_string();
        Ok(Side {
            host,
            chain: Chain::from_conflist(&conflist, cni_path)?,
            _files: files,
        })
    }
}

/// `iterations` ADD+DEL pairs per side; the rendered table.
pub fn measure(iterations: usize) -> Result<String, BoxError> {
    let ours = PluginDir::ours()?;
    let copies = tempfile::Builder::new()
        .prefix("fr-cni-copies-")
        .tempdir()?;
    for name in ["flannel", "portmap"] {
        std::os::unix::fs::symlink(ours.path().join(name), copies.path().join(name))?;
    }
    for name in ["bridge", "host-local"] {
        std::fs::copy(ours.path().join(name), copies.path().join(name))?;
    }
    let sides = [
        Side::new("dlgin", ours.path())?,
        Side::new("dlgex", copies.path())?,
    ];
    let pod = Netns::new("dlgpod")?;
    pod.set_loopback_up()?;
    // [side][ADD, DEL][wall, cpu]
    let mut samples: [[[Samples; 2]; 2]; 2] = Default::default();
    for i in 0..iterations {
        interrupt::check()?;
        for s in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let id = format!("dlg-{i}-{s}");
            let t = Target {
                host: &sides[s].host,
                pod: pod.path(),
                container_id: &id,
                ifname: "eth0",
            };
            let cpu = children_cpu();
            let (result, took) = sides[s].chain.add(&t)?;
            samples[s][0][0].push_duration(took);
            samples[s][0][1].push_duration(children_cpu() - cpu);
            let cpu = children_cpu();
            let took = sides[s].chain.del(&t, &result)?;
            samples[s][1][0].push_duration(took);
            samples[s][1][1].push_duration(children_cpu() - cpu);
        }
    }
    let mut t = Table::new(&[
        ("kube-flannel chain, plugins only", Align::Left),
        ("in-process median", Align::Right),
        ("p99", Align::Right),
        ("exec'd median", Align::Right),
        ("p99", Align::Right),
        ("in-process/exec'd", Align::Right),
    ]);
    for (op, name) in ["ADD", "DEL"].into_iter().enumerate() {
        for (m, what) in ["wall", "CPU"].into_iter().enumerate() {
            let (a, b) = (&samples[0][op][m], &samples[1][op][m]);
            t.row([
                format!("{name} {what}"),
                or_dash(a.median(), fmt_secs),
                or_dash(a.percentile(99.0), fmt_secs),
                or_dash(b.median(), fmt_secs),
                or_dash(b.percentile(99.0), fmt_secs),
                fmt_ratio(a.median(), b.median()),
            ]);
        }
    }
    Ok(t.render())
}

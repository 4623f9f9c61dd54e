//! The costs no CNI plugin can avoid, measured on this machine in the same run as the
//! plugins, with the kernel's own tools (`ip`, `iptables-restore`), not with our code.
//!
//! Two of them are waits inside the kernel that no user-space design removes:
//! - Deleting a veth pair: the netlink request returns only after `netdev_run_todo` has run
//!   an `rcu_barrier()`. Concurrent deletions share barriers, so 16 at once cost far less
//!   than 16 one after the other.
//! - Deleting iptables-nft rules: when the deleting process closes its nf_tables socket,
//!   the kernel flushes the pending destroy work (an RCU grace period) while holding the
//!   namespace's nf_tables commit mutex, so concurrent deleters in one namespace wait for
//!   each other's grace periods one by one.
//!
//! A DEL must delete the pair (and, with ipMasq, its rules), so a DEL latency target below
//! these numbers cannot be met by any implementation; the latency table says so per row.
//!
//! Two more costs sit on every path whatever the plugins do: a plugin process start (ours,
//! started with nothing to do), and on the libcni path the runtime side itself: the driver
//! (started as the benchmark starts it) running a one-plugin list whose plugin does almost
//! nothing (our host-local handing out an address from a private store). A target below
//! those is out of reach of any plugin.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

use crate::stats::{fmt_secs, or_dash, Samples};
use crate::table::{Align, Table};
use crate::{all_at_once, interrupt};
use conformance::{Driver, Netns, PluginDir};

type BoxError = Box<dyn std::error::Error>;

/// Pairs deleted by one `ip -batch` run: the process start is spread over this many.
pub const BATCH: usize = 8;
/// As many as the benchmark's parallel rounds run at once.
const AT_ONCE: usize = 16;

/// What the floor steps took, one sample per measurement.
#[derive(Default)]
pub struct Floor {
    spawn: Samples,
    create: Samples,
    delete_tool: Samples,
    delete_kernel: Samples,
    delete_at_once: Samples,
    restore_noop: Samples,
    restore_delete: Samples,
    restore_delete_at_once: Samples,
    plugin_start: Samples,
    libcni_one: [Samples; 2],
    libcni_one_at_once: [Samples; 2],
}

impl Floor {
    /// The least a DEL waits in the kernel, as a median: one at a time or `AT_ONCE` at once
    /// (then the wall time for all), with or without ipMasq rules to remove.
    pub fn del_floor(&self, at_once: bool, masquerade: bool) -> Option<f64> {
        let (veth, rules) = if at_once {
            (&self.delete_at_once, &self.restore_delete_at_once)
        } else {
            (&self.delete_kernel, &self.restore_delete)
        };
        let veth = veth.median()?;
        if !masquerade {
            return Some(veth);
        }
        // The two can overlap within a DEL, so only the larger one is certain.
        let rules = if at_once {
            rules.median()?
        } else {
            rules.median()? - self.restore_noop.median()?
        };
        Some(veth.max(rules))
    }

    /// The least an ADD of a list of `plugins` plugins costs on its path: through libcni the
    /// driver with one trivial plugin, otherwise `plugins` process starts.
    pub fn add_floor(&self, libcni: bool, at_once: bool, plugins: usize) -> Option<f64> {
        match (libcni, at_once) {
            (true, false) => self.libcni_one[0].median(),
            (true, true) => self.libcni_one_at_once[0].median(),
            (false, _) => Some(self.plugin_start.median()? * plugins as f64),
        }
    }

    /// The runtime's own part of a DEL through libcni (driver and one trivial plugin), to be
    /// added to the kernel's waits.
    pub fn libcni_del(&self, at_once: bool) -> Option<f64> {
        if at_once {
            self.libcni_one_at_once[1].median()
        } else {
            self.libcni_one[1].median()
        }
    }

    pub fn render(&self) -> String {
        let mut t = Table::new(&[
            ("unavoidable step", Align::Left),
            ("median", Align::Right),
            ("p99", Align::Right),
        ]);
        let at_once =
            format!("{AT_ONCE} veth pairs deleted at once ({AT_ONCE} `ip link del`, wall)");
        let rules_at_once =
            format!("{AT_ONCE} iptables-restores at once, each deleting a chain (wall)");
        let libcni_at_once = ["ADD", "DEL"]
            .map(|op| format!("libcni: {AT_ONCE} drivers + trivial plugin at once, {op} (wall)"));
        for (label, s) in [
            ("start a process (ip link show lo)", &self.spawn),
            ("veth pair across namespaces: create (ip)", &self.create),
            ("veth pair: delete (ip)", &self.delete_tool),
            (
                "veth pair: delete, kernel only (ip -batch, per pair)",
                &self.delete_kernel,
            ),
            (at_once.as_str(), &self.delete_at_once),
            ("iptables-restore: nothing to do", &self.restore_noop),
            (
                "iptables-restore: delete a chain and its jump",
                &self.restore_delete,
            ),
            (rules_at_once.as_str(), &self.restore_delete_at_once),
            (
                "start our plugin executable (CNI VERSION)",
                &self.plugin_start,
            ),
            (
                "libcni: driver + one trivial plugin, ADD",
                &self.libcni_one[0],
            ),
            (
                "libcni: driver + one trivial plugin, DEL",
                &self.libcni_one[1],
            ),
            (libcni_at_once[0].as_str(), &self.libcni_one_at_once[0]),
            (libcni_at_once[1].as_str(), &self.libcni_one_at_once[1]),
        ] {
            t.row([
                label.to_owned(),
                or_dash(s.median(), fmt_secs),
                or_dash(s.percentile(99.0), fmt_secs),
            ]);
        }
        t.render()
    }
}

fn timed(cmd: &mut Command) -> Result<f64, BoxError> {
    let t = Instant::now();
    let out = cmd.output()?;
    succeeded(&format!("{cmd:?}"), &out, t.elapsed().as_secs_f64())
}

/// `secs` when the run succeeded, else an error with its stderr.
fn succeeded(what: &str, out: &std::process::Output, secs: f64) -> Result<f64, BoxError> {
    if out.status.success() {
        return Ok(secs);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!("{what} failed: {}", stderr.trim()).into())
}

/// Runs `program args` in `ns` with `input` on stdin; the time until it exits.
fn timed_with_input(
    ns: &Netns,
    program: &str,
    args: &[&str],
    input: &str,
) -> Result<f64, BoxError> {
    let mut child = ns
        .command(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let t = Instant::now();
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    succeeded(program, &out, t.elapsed().as_secs_f64())
}

/// Creates pairs `fl{first}..` in `host`, their peers `eth{first}..` in `pod`, in one run.
fn create_pairs(host: &Netns, pod: &Netns, first: usize, count: usize) -> Result<(), BoxError> {
    let script: String = (first..first + count)
        .map(|i| {
            format!(
                "link add fl{i} type veth peer name eth{i} netns {}\n",
                pod.name()
            )
        })
        .collect();
    timed_with_input(host, "ip", &["-batch", "-"], &script).map(drop)
}

fn restore(ns: &Netns, script: &str) -> Result<f64, BoxError> {
    timed_with_input(ns, "iptables-restore", &["--noflush", "-w", "5"], script)
}

fn chain_setup(chain: &str, i: usize) -> String {
    format!(
        "*nat\n:{chain} - [0:0]\n-A {chain} -j RETURN\n-A POSTROUTING -s 10.255.{}.{}/32 -j {chain}\nCOMMIT\n",
        i / 250,
        i % 250 + 1
    )
}

fn chain_teardown(chain: &str, i: usize) -> String {
    format!(
        "*nat\n-D POSTROUTING -s 10.255.{}.{}/32 -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n",
        i / 250,
        i % 250 + 1
    )
}

/// Measures the floor: `iterations` samples of each single step, and a few rounds of the
/// steps done `AT_ONCE` at once.
pub fn measure(iterations: usize) -> Result<Floor, BoxError> {
    let host = Netns::new("flh")?;
    let pod = Netns::new("flp")?;
    let mut f = Floor::default();
    let mut next = 0; // interface and chain numbers are never reused
    for _ in 0..iterations {
        interrupt::check()?;
        let i = next;
        next += 1;
        let spawn = timed(Command::new("ip").args(["-n", host.name(), "link", "show", "lo"]))?;
        f.spawn.push(spawn);
        let (name, peer) = (format!("fl{i}"), format!("eth{i}"));
        f.create.push(timed(Command::new("ip").args([
            "-n",
            host.name(),
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            pod.name(),
        ]))?);
        f.delete_tool.push(timed(Command::new("ip").args([
            "-n",
            pod.name(),
            "link",
            "del",
            &peer,
        ]))?);

        create_pairs(&host, &pod, next, BATCH)?;
        let script: String = (next..next + BATCH)
            .map(|k| format!("link del eth{k}\n"))
            .collect();
        next += BATCH;
        let batch = timed_with_input(&pod, "ip", &["-batch", "-"], &script)?;
        f.delete_kernel
            .push((batch - spawn).max(0.0) / BATCH as f64);

        f.restore_noop.push(restore(&host, "*nat\nCOMMIT\n")?);
        let chain = format!("FLOOR-{i}");
        restore(&host, &chain_setup(&chain, i))?;
        f.restore_delete
            .push(restore(&host, &chain_teardown(&chain, i))?);
    }
    for _ in 0..iterations.div_ceil(10).max(3) {
        interrupt::check()?;
        let first = next;
        next += AT_ONCE;
        create_pairs(&host, &pod, first, AT_ONCE)?;
        f.delete_at_once.push_duration(all_at_once(AT_ONCE, |k| {
            let out = pod
                .command("ip")
                .args(["link", "del", &format!("eth{}", first + k)])
                .output()
                .map_err(|e| e.to_string())?;
            match out.status.success() {
                true => Ok(()),
                false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            }
        })?);
        for k in first..first + AT_ONCE {
            restore(&host, &chain_setup(&format!("FLOOR-{k}"), k))?;
        }
        f.restore_delete_at_once
            .push_duration(all_at_once(AT_ONCE, |k| {
                let k = first + k;
                restore(&host, &chain_teardown(&format!("FLOOR-{k}"), k))
                    .map(drop)
                    .map_err(|e| e.to_string())
            })?);
    }
    measure_runtime_side(&host, &pod, iterations, &mut f)?;
    Ok(f)
}

/// The plugin start and the libcni driver floor (see the module comment).
fn measure_runtime_side(
    host: &Netns,
    pod: &Netns,
    iterations: usize,
    f: &mut Floor,
) -> Result<(), BoxError> {
    let driver = Driver::new(PluginDir::ours()?);
    let exe = driver.plugins().path().join("host-local");
    let data = tempfile::Builder::new().prefix("fr-floor-").tempdir()?;
    let conflist = json!({
        "cniVersion": "1.0.0", "name": "floor",
        "plugins": [{"type": "host-local", "ipam": {
            "type": "host-local", "ranges": [[{"subnet": "10.99.0.0/16"}]], "dataDir": data.path()
        }}]
    })
    .to_string();
    let (add, del) = (
        |id: &str| driver.add(&conflist, host, pod, "eth0", id, None).map(drop),
        |id: &str| driver.del(&conflist, host, pod, "eth0", id, None),
    );
    for i in 0..iterations {
        interrupt::check()?;
        f.plugin_start
            .push(timed(Command::new(&exe).env("CNI_COMMAND", "VERSION"))?);
        let id = format!("floor-{i}");
        let t = Instant::now();
        add(&id)?;
        f.libcni_one[0].push_duration(t.elapsed());
        let t = Instant::now();
        del(&id)?;
        f.libcni_one[1].push_duration(t.elapsed());
    }
    for round in 0..iterations.div_ceil(10).max(3) {
        interrupt::check()?;
        let id = |k: usize| format!("floor-{round}-{k}");
        f.libcni_one_at_once[0].push_duration(all_at_once(AT_ONCE, |k| {
            add(&id(k)).map_err(|e| e.to_string())
        })?);
        f.libcni_one_at_once[1].push_duration(all_at_once(AT_ONCE, |k| {
            del(&id(k)).map_err(|e| e.to_string())
        })?);
    }
    Ok(())
}

//! The costs no CNI plugin can avoid, measured on this machine in the same run as the
//! plugins: what the kernel takes to create and to destroy a veth pair across two
//! namespaces, what starting any process costs, and one `iptables-restore`.
//!
//! Each is timed through the `ip`/`iptables-restore` tools and the bare process start is
//! reported next to them, so "kernel part ≈ tool time − process start" can be read off the
//! table. A plugin's ADD and DEL are bounded below by these numbers whatever it does in
//! user space, which is why a ratio against another plugin that pays the same floor has a
//! limit.

use std::process::Command;
use std::time::Instant;

use crate::bench::interrupt;
use crate::bench::stats::{fmt_secs, or_dash, Samples};
use crate::bench::table::{Align, Table};
use crate::Netns;

type BoxError = Box<dyn std::error::Error>;

fn timed(cmd: &mut Command) -> Result<f64, BoxError> {
    let t = Instant::now();
    let out = cmd.output()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(secs)
}

/// Measures the floor `iterations` times and renders it as a table.
pub fn measure(iterations: usize) -> Result<String, BoxError> {
    let host = Netns::new("flh")?;
    let pod = Netns::new("flp")?;
    let (mut spawn, mut create, mut delete, mut restore) = (
        Samples::new(),
        Samples::new(),
        Samples::new(),
        Samples::new(),
    );
    for i in 0..iterations {
        interrupt::check()?;
        let name = format!("fl{i}");
        spawn.push(timed(Command::new("ip").args([
            "-n",
            host.name(),
            "link",
            "show",
            "lo",
        ]))?);
        create.push(timed(Command::new("ip").args([
            "-n",
            host.name(),
            "link",
            "add",
            &name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name(),
        ]))?);
        delete.push(timed(Command::new("ip").args([
            "-n",
            pod.name(),
            "link",
            "del",
            "eth0",
        ]))?);
        let chain = format!("FLOOR-{i}");
        let script = format!("*nat\n:{chain} - [0:0]\n-A {chain} -j RETURN\nCOMMIT\n*nat\n-F {chain}\n-X {chain}\nCOMMIT\n");
        let mut child = host
            .command("iptables-restore")
            .args(["--noflush", "-w", "5"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let t = Instant::now();
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(script.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(format!(
                "iptables-restore failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        restore.push(t.elapsed().as_secs_f64());
    }
    let mut t = Table::new(&[
        ("unavoidable step", Align::Left),
        ("median", Align::Right),
        ("p99", Align::Right),
    ]);
    for (label, s) in [
        ("start a process (ip link show lo)", &spawn),
        ("veth pair across namespaces: create (ip)", &create),
        ("veth pair: delete (ip; kernel waits for RCU)", &delete),
        ("iptables-restore: create+delete one chain", &restore),
    ] {
        t.row([
            label.to_owned(),
            or_dash(s.median(), fmt_secs),
            or_dash(s.percentile(99.0), fmt_secs),
        ]);
    }
    Ok(t.render())
}

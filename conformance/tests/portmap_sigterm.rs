//! portmap ignores SIGTERM while it changes the firewall, as bridge does: a runtime that gives
//! up on a slow ADD or DEL and sends SIGTERM must not leave a mapping half made or half
//! removed (netavark's lesson: DNAT rules left behind by a SIGTERM mid-teardown).
//!
//! `iptables-restore` is slowed down by a wrapper earlier on portmap's PATH, which announces
//! that it runs and then execs the real tool; the SIGTERM arrives while it waits.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use conformance::cni::our_bin_dir;
use conformance::{cmd, Netns};

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"pmterm","type":"portmap",
  "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},
  "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],
    "ips":[{"address":"10.99.0.2/24","interface":0}]}}"#;

/// A PATH directory whose `iptables-restore` touches `started` and waits before running
/// the real one.
fn slow_restore(dir: &Path) {
    let script = format!(
        "#!/bin/sh\ntouch {}\nsleep 2\nexec /usr/sbin/iptables-restore \"$@\"\n",
        dir.join("started").display()
    );
    let path = dir.join("iptables-restore");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn start(host: &Netns, verb: &str, wrapper_dir: &Path) -> Child {
    let mut cmd = host.command(our_bin_dir().join("portmap"));
    cmd.env_clear()
        .envs([
            ("CNI_COMMAND", verb),
            ("CNI_CONTAINERID", "pmterm-1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", &our_bin_dir().display().to_string()),
        ])
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", wrapper_dir.display()),
        );
    cmd::spawn_with_stdin(&mut cmd, CONF.as_bytes()).unwrap()
}

/// Runs `verb`, sends SIGTERM while its `iptables-restore` is running, and requires that the
/// plugin finished its work and succeeded anyway.
fn survives_sigterm(host: &Netns, verb: &str) {
    let dir = tempfile::tempdir().unwrap();
    slow_restore(dir.path());
    let mut child = start(host, verb, dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.path().join("started").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{verb} ended ({status}) before iptables-restore ran: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{verb}: iptables-restore never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    cmd::signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{verb} was stopped by SIGTERM mid-change ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn add_and_del_finish_when_sigterm_arrives_mid_change() {
    let host = Netns::new("pmterm").unwrap();
    survives_sigterm(&host, "ADD");
    let nat = host.iptables_save("nat").unwrap();
    assert!(
        nat.contains("--to-destination 10.99.0.2:80") && nat.contains("-j CNI-DN-"),
        "ADD left no complete mapping:\n{nat}"
    );
    survives_sigterm(&host, "DEL");
    let nat = host.iptables_save("nat").unwrap();
    assert!(
        !nat.contains("CNI-DN-"),
        "DEL left the container's chain or its jumps:\n{nat}"
    );
}

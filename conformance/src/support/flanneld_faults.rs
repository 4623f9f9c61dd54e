//! Fault-injection helpers for the flanneld fault tests, on top of `flanneld_support`:
//! a counted background ping, a starting gate made of a frozen etcd, snapshots of the
//! state flanneld leaves in the kernel.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{Etcd, Host, Netns};

/// `ping -i <interval> -c <count>` running in the background. Counting packets instead of
/// interrupting ping at the end means no packet is ever in flight when the stats are taken,
/// so a zero-loss assertion is exact.
pub struct Pinger {
    child: Option<Child>,
    to: String,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
}

/// ping's summary line: `N packets transmitted, M received, ...`.
pub fn parse_ping_summary(out: &str) -> Option<PingStats> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut fields = line.split(',').map(str::trim);
    let transmitted = fields.next()?.split_whitespace().next()?.parse().ok()?;
    let received = fields.next()?.split_whitespace().next()?.parse().ok()?;
    Some(PingStats {
        transmitted,
        received,
    })
}

impl Pinger {
    pub const INTERVAL: Duration = Duration::from_millis(200);

    /// Pings `to` from `from` for about `span` (rounded to whole packets).
    pub fn start(from: &Netns, to: &str, span: Duration) -> Pinger {
        let count = (span.as_millis() / Self::INTERVAL.as_millis()).max(1);
        let child = from
            .command("ping")
            .args([
                "-n",
                "-q",
                "-i",
                "0.2",
                // The last reply may take seconds on a loaded machine; a dropped packet never
                // answers, so a long wait hides no loss.
                "-W",
                "5",
                "-c",
                &count.to_string(),
                to,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ping");
        Pinger {
            child: Some(child),
            to: to.to_owned(),
            // A loaded machine stretches the interval; give it generous slack.
            deadline: Instant::now() + span * 2 + Duration::from_secs(10),
        }
    }

    /// Waits for the last packet's answer (or its timeout) and returns the counts.
    pub fn finish(mut self) -> PingStats {
        let mut child = self.child.take().expect("ping is running");
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < self.deadline,
                "ping to {} did not finish in time",
                self.to
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping_summary(&text).unwrap_or_else(|| {
            panic!(
                "no ping summary for {}:\n{text}\n{}",
                self.to,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal_etcd(etcd: &Etcd, sig: libc::c_int) {
    let pid = etcd.pid().expect("etcd is running");
    // SAFETY: kill(2) on the test's own unreaped child.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "signal {sig} to etcd: {}",
        std::io::Error::last_os_error()
    );
}

/// A starting gate: while etcd is stopped (SIGSTOP) its socket still accepts connections, so
/// clients get as far as their first request and wait there; thawing answers every waiting
/// request at once. The kernel keeps the server's socket, and SIGKILL (Drop of `Etcd`) ends a
/// stopped process too, so a failing test cannot leave it frozen.
pub struct FrozenEtcd<'a>(&'a Etcd);

impl<'a> FrozenEtcd<'a> {
    pub fn freeze(etcd: &'a Etcd) -> FrozenEtcd<'a> {
        signal_etcd(etcd, libc::SIGSTOP);
        FrozenEtcd(etcd)
    }
}

impl Drop for FrozenEtcd<'_> {
    fn drop(&mut self) {
        signal_etcd(self.0, libc::SIGCONT);
    }
}

/// What flanneld leaves in a host's kernel, in a form that compares across time: routes,
/// neighbours and FDB of the vxlan device, the device itself, and flannel's iptables rules
/// (rule lines only: chain headers carry packet counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelState {
    pub routes: String,
    pub neigh: String,
    pub fdb: String,
    pub device: String,
    pub rules: Vec<String>,
}

pub const VXLAN_DEV: &str = "flannel.1";

fn stdout_of(ns: &Netns, argv: &[&str]) -> String {
    ns.exec_ok(argv)
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
}

impl KernelState {
    pub fn of(host: &Host) -> KernelState {
        let ns = host.netns();
        let mut rules = Vec::new();
        for table in ["nat", "filter"] {
            let saved = stdout_of(ns, &["iptables-save", "-t", table]);
            rules.extend(
                saved
                    .lines()
                    .filter(|l| l.starts_with("-A") && l.contains("FLANNEL"))
                    .map(str::to_owned),
            );
        }
        KernelState {
            routes: stdout_of(ns, &["ip", "-4", "route", "show", "dev", VXLAN_DEV]),
            neigh: stdout_of(ns, &["ip", "-4", "neigh", "show", "dev", VXLAN_DEV]),
            fdb: stdout_of(ns, &["bridge", "fdb", "show", "dev", VXLAN_DEV]),
            device: stdout_of(ns, &["ip", "-d", "-4", "addr", "show", "dev", VXLAN_DEV]),
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_is_parsed_with_and_without_loss() {
        let ok = "--- 10.244.1.2 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 801ms\n";
        assert_eq!(
            parse_ping_summary(ok),
            Some(PingStats {
                transmitted: 5,
                received: 5
            })
        );
        let lossy =
            "7 packets transmitted, 4 received, +3 errors, 42.8571% packet loss, time 1203ms";
        assert_eq!(
            parse_ping_summary(lossy),
            Some(PingStats {
                transmitted: 7,
                received: 4
            })
        );
        assert_eq!(parse_ping_summary("ping: unknown host"), None);
    }
}

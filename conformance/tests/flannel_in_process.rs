//! In-process delegation (issue 21): when flannel's delegate (bridge) or bridge's IPAM
//! (host-local) resolves on `CNI_PATH` to the very executable that runs, it runs in the same
//! process; any other file there (upstream's bridge, a wrapper script) is executed as before.
//!
//! Each verb, and a failure of each delegate, runs twice on twin beds: once with our four
//! plugins on `CNI_PATH` (in-process), once with wrapper scripts for bridge and host-local that
//! exec the same plugins (every hop a process). The two must print the same bytes (up to the
//! random veth name and MACs), exit alike and leave the same state behind. The processes each
//! run started are counted from its `execve` calls (strace).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use conformance::support::flannel::*;
use conformance::{Netns, PluginDir};
use serde_json::{json, Value};

/// How plugins reach their delegates on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path_ {
    InProcess,
    Exec,
}

/// One side: a node's files, a host and a pod namespace, a `CNI_PATH`.
struct Side {
    how: Path_,
    node: Node,
    host: Netns,
    pod: Netns,
    plugins: PluginDir,
    /// Wrapper scripts (exec side only).
    wrappers: Option<tempfile::TempDir>,
}

impl Side {
    fn new(how: Path_) -> Side {
        let plugins = PluginDir::ours().unwrap();
        let wrappers = (how == Path_::Exec).then(|| {
            let dir = tempfile::Builder::new()
                .prefix("fr-wrap-")
                .tempdir()
                .unwrap();
            for name in ["flannel", "portmap"] {
                std::os::unix::fs::symlink(plugins.path().join(name), dir.path().join(name))
                    .unwrap();
            }
            // A different file that runs the same plugin: the exec path must be taken.
            for name in ["bridge", "host-local"] {
                let target = plugins.path().join(name);
                let script = dir.path().join(name);
                std::fs::write(
                    &script,
                    format!("#!/bin/sh\nexec {} \"$@\"\n", target.display()),
                )
                .unwrap();
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            dir
        });
        Side {
            how,
            node: Node::new(),
            host: ns("fiphost"),
            pod: ns("fippod"),
            plugins,
            wrappers,
        }
    }

    fn cni_path(&self) -> &Path {
        match &self.wrappers {
            Some(dir) => dir.path(),
            None => self.plugins.path(),
        }
    }

    /// The flannel plugin object as libcni derives it from the kube-flannel conflist.
    fn conf(&self, version: &str, extra: Value) -> Value {
        self.node.plugin_conf(version, extra)
    }

    /// Runs flannel in the host namespace as a runtime would; `netns` overrides CNI_NETNS.
    fn run(&self, command: &str, conf: &Value, cni_args: &str, netns: Option<&Path>) -> Run {
        let trace = tempfile::NamedTempFile::new().unwrap();
        let flannel = self.cni_path().join("flannel");
        let mut cmd = self.host.command("strace");
        cmd.args(["-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o"])
            .arg(trace.path())
            .arg(&flannel)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "fip-1")
            .env("CNI_NETNS", netns.unwrap_or(self.pod.path()))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", self.cni_path());
        let out =
            conformance::cmd::output_with_stdin(&mut cmd, conf.to_string().as_bytes()).unwrap();
        let trace = std::fs::read_to_string(trace.path()).unwrap();
        Run {
            code: out.status.code(),
            // Each side has its own node directory and CNI_PATH; messages naming them are
            // otherwise equal.
            stdout: String::from_utf8_lossy(&out.stdout)
                .replace(self.node.dir.path().to_str().unwrap(), "<node>")
                .replace(self.cni_path().to_str().unwrap(), "<cni_path>"),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            processes: processes(&trace),
        }
    }

    fn saved_config(&self) -> Option<String> {
        self.node.saved_config("fip-1")
    }

    fn links_with_prefix(&self, prefix: &str) -> Vec<String> {
        let out = self.host.exec_ok(&["ip", "-o", "link", "show"]).unwrap();
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    fn pod_has_eth0(&self) -> bool {
        self.pod
            .exec(&["ip", "link", "show", "eth0"])
            .status
            .success()
    }
}

/// Processes that ran a program, from `strace -f -e trace=execve` output: one per PID with a
/// successful execve (a wrapper script and the plugin it execs are one process).
fn processes(trace: &str) -> u32 {
    let pids: std::collections::BTreeSet<&str> = trace
        .lines()
        .filter(|l| l.contains("execve(") && l.trim_end().ends_with("= 0"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    pids.len() as u32
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Processes started by the run, flannel's own included.
    processes: u32,
}

impl Run {
    fn json(&self) -> Value {
        if self.stdout.is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {:?}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// The ADD result with what is random per run (host veth name, MACs) blanked.
fn normalised(result: &Value) -> Value {
    let mut v = result.clone();
    if let Some(ifs) = v.get_mut("interfaces").and_then(Value::as_array_mut) {
        for i in ifs {
            i["mac"] = json!("<mac>");
            if i["name"].as_str().is_some_and(|n| n.starts_with("veth")) {
                i["name"] = json!("<veth>");
            }
            if i.get("sandbox").is_some() {
                i["sandbox"] = json!("<netns>");
            }
        }
    }
    v
}

fn twins() -> (Side, Side) {
    (Side::new(Path_::InProcess), Side::new(Path_::Exec))
}

/// Runs the same call on both sides; asserts both exit alike and print the same text, and
/// that in-process ran `in_process` processes against `exec`'s `exec`.
fn both(sides: &(Side, Side), call: impl Fn(&Side) -> Run, processes: (u32, u32)) -> (Run, Run) {
    let (a, b) = (call(&sides.0), call(&sides.1));
    assert_eq!(
        a.code, b.code,
        "exit codes differ\nin-process: {a:?}\nexec: {b:?}"
    );
    assert_eq!(
        normalised(&a.json()),
        normalised(&b.json()),
        "outputs differ\nin-process: {a:?}\nexec: {b:?}"
    );
    assert_eq!(
        (a.processes, b.processes),
        processes,
        "processes (in-process, exec)\nin-process: {a:?}\nexec: {b:?}"
    );
    (a, b)
}

#[test]
fn every_verb_runs_in_process_with_the_outcome_of_exec() {
    let sides = twins();
    let conf = |s: &Side| s.conf("1.1.0", json!({}));

    // ADD: flannel, then bridge and host-local in the same process; exec: three processes.
    let (add_in, add_ex) = both(&sides, |s| s.run("ADD", &conf(s), "", None), (1, 3));
    assert_eq!(add_in.code, Some(0), "{add_in:?}");
    assert_eq!(
        add_in.json()["ips"][0]["address"],
        "10.244.1.2/24",
        "{add_in:?}"
    );
    for s in [&sides.0, &sides.1] {
        assert!(s.pod_has_eth0(), "{:?}", s.how);
        assert_eq!(s.node.reserved_ips(), ["10.244.1.2"], "{:?}", s.how);
        assert!(s.saved_config().is_some(), "{:?}", s.how);
    }

    // CHECK with each side's own result: bridge checks the links and asks host-local.
    let prev = |s: &Side| match s.how {
        Path_::InProcess => add_in.json(),
        Path_::Exec => add_ex.json(),
    };
    let check = |s: &Side| {
        s.run(
            "CHECK",
            &s.conf("1.1.0", json!({"prevResult": prev(s)})),
            "",
            None,
        )
    };
    let (ok, _) = both(&sides, check, (1, 3));
    assert_eq!(ok.code, Some(0), "{ok:?}");

    // STATUS: flannel asks bridge, bridge asks host-local.
    let (status, _) = both(&sides, |s| s.run("STATUS", &conf(s), "", None), (1, 3));
    assert_eq!(status.code, Some(0), "{status:?}");

    // GC keeping the attachment: flannel asks bridge, then host-local directly.
    let keep = json!({"cni.dev/valid-attachments": [{"containerID": "fip-1", "ifname": "eth0"}]});
    let gc = |s: &Side| s.run("GC", &s.conf("1.1.0", keep.clone()), "", None);
    let (kept, _) = both(&sides, gc, (1, 3));
    assert_eq!(kept.code, Some(0), "{kept:?}");
    for s in [&sides.0, &sides.1] {
        assert_eq!(
            s.node.reserved_ips(),
            ["10.244.1.2"],
            "GC kept it ({:?})",
            s.how
        );
    }

    // CHECK failing in bridge: the container interface is gone.
    for s in [&sides.0, &sides.1] {
        s.pod
            .exec_ok(&["ip", "link", "set", "eth0", "name", "moved0"])
            .unwrap();
    }
    let (failed, _) = both(&sides, check, (1, 3));
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(
        failed.json()["msg"].as_str().unwrap().contains("eth0"),
        "{failed:?}"
    );
    for s in [&sides.0, &sides.1] {
        s.pod
            .exec_ok(&["ip", "link", "set", "moved0", "name", "eth0"])
            .unwrap();
    }

    // DEL: bridge removes the link and asks host-local to release the IP.
    let (del, _) = both(&sides, |s| s.run("DEL", &conf(s), "", None), (1, 3));
    assert_eq!(del.code, Some(0), "{del:?}");
    for s in [&sides.0, &sides.1] {
        assert!(!s.pod_has_eth0(), "{:?}", s.how);
        assert!(s.node.reserved_ips().is_empty(), "{:?}", s.how);
        assert!(s.saved_config().is_none(), "{:?}", s.how);
        assert!(s.links_with_prefix("veth").is_empty(), "{:?}", s.how);
    }
}

/// A delegate that fails hands the same CNI error to flannel on both paths, and flannel's
/// own cleanup (release through a delegate DEL, drop the saved config) still runs.
#[test]
fn delegate_failures_are_the_same_errors_and_the_caller_still_cleans_up() {
    let sides = twins();
    let conf = |s: &Side| s.conf("1.0.0", json!({}));
    let clean = |sides: &(Side, Side), what: &str| {
        for s in [&sides.0, &sides.1] {
            assert!(
                s.saved_config().is_none(),
                "{what}: saved config left ({:?})",
                s.how
            );
            assert!(
                s.node.reserved_ips().is_empty(),
                "{what}: IP left ({:?})",
                s.how
            );
            assert!(!s.pod_has_eth0(), "{what}: eth0 left ({:?})", s.how);
            assert!(
                s.links_with_prefix("veth").is_empty(),
                "{what}: veth left ({:?})",
                s.how
            );
        }
    };

    // host-local refuses an address outside its range; bridge passes its error through and
    // rolls back the veth, flannel releases and forgets. ADD then the undo's DEL: the exec
    // side starts flannel, bridge, host-local (ADD) and bridge, host-local (undo).
    let (ipam, _) = both(
        &sides,
        |s| s.run("ADD", &conf(s), "IgnoreUnknown=1;IP=10.9.9.9", None),
        (1, 5),
    );
    assert_eq!(ipam.code, Some(1), "{ipam:?}");
    let msg = ipam.json()["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("10.9.9.9"), "{msg}");
    clean(&sides, "IPAM failure");

    // bridge fails: a host link called cni0 that is not a bridge (the bridge the failed ADD
    // made stays, as it is shared with other pods; it goes first).
    for s in [&sides.0, &sides.1] {
        s.host.exec_ok(&["ip", "link", "del", "cni0"]).unwrap();
        s.host
            .exec_ok(&[
                "ip", "link", "add", "cni0", "type", "veth", "peer", "name", "cni0p",
            ])
            .unwrap();
    }
    // Exec side: flannel; bridge ADD with host-local ADD beside it, and host-local DEL in
    // bridge's rollback; flannel's undo, bridge DEL with its host-local DEL.
    let (bridge, _) = both(&sides, |s| s.run("ADD", &conf(s), "", None), (1, 6));
    assert_eq!(bridge.code, Some(1), "{bridge:?}");
    assert!(
        bridge.json()["msg"].as_str().unwrap().contains("cni0"),
        "{bridge:?}"
    );
    clean(&sides, "bridge failure");
    for s in [&sides.0, &sides.1] {
        s.host.exec_ok(&["ip", "link", "del", "cni0"]).unwrap();
    }

    // DEL with a CNI_NETNS that is no namespace: bridge's error reaches the runtime, the IP
    // is released anyway and flannel drops its saved config (as upstream).
    let (add, _) = both(&sides, |s| s.run("ADD", &conf(s), "", None), (1, 3));
    assert_eq!(add.code, Some(0), "{add:?}");
    let not_ns = tempfile::NamedTempFile::new().unwrap();
    let (del, _) = both(
        &sides,
        |s| s.run("DEL", &conf(s), "", Some(not_ns.path())),
        (1, 3),
    );
    assert_eq!(del.code, Some(1), "{del:?}");
    for s in [&sides.0, &sides.1] {
        assert!(s.saved_config().is_none(), "{:?}", s.how);
        assert!(s.node.reserved_ips().is_empty(), "{:?}", s.how);
    }
    let (del, _) = both(&sides, |s| s.run("DEL", &conf(s), "", None), (1, 1));
    assert_eq!(del.code, Some(0), "nothing saved any more: {del:?}");
    for s in [&sides.0, &sides.1] {
        s.pod.exec(&["ip", "link", "del", "eth0"]);
    }
    clean(&sides, "DEL failure");

    // GC failing in host-local (its store is a file), and STATUS failing in bridge's IPAM
    // lookup (no such IPAM plugin): both pass the delegate's error through.
    for s in [&sides.0, &sides.1] {
        std::fs::remove_dir_all(s.node.ipam_dir()).unwrap();
        std::fs::write(s.node.ipam_dir(), "not a directory").unwrap();
    }
    let gc = |s: &Side| {
        s.run(
            "GC",
            &s.conf("1.1.0", json!({"cni.dev/valid-attachments": []})),
            "",
            None,
        )
    };
    let (gc_failed, _) = both(&sides, gc, (1, 3));
    assert_eq!(gc_failed.code, Some(1), "{gc_failed:?}");
    let status = |s: &Side| {
        let mut c = s.conf("1.1.0", json!({}));
        c["ipam"]["type"] = json!("no-such-ipam");
        s.run("STATUS", &c, "", None)
    };
    let (status_failed, _) = both(&sides, status, (1, 2));
    assert_eq!(status_failed.code, Some(1), "{status_failed:?}");
    assert!(
        status_failed.json()["msg"]
            .as_str()
            .unwrap()
            .contains("no-such-ipam"),
        "{status_failed:?}"
    );
}

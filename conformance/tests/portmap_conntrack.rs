//! portmap's flush of stale UDP conntrack entries (issue 19, item 2). A UDP flow that reached
//! a host port before its mapping existed has a conntrack entry without the DNAT, so it would
//! keep going to the host and never reach the pod. portmap deletes such entries over
//! ctnetlink, as upstream does; the `conntrack` program (absent from most nodes and from our
//! image) is not on the plugin's PATH here, so a flush that relied on it would do nothing.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conformance::support::flannel::*;
use conformance::{Impl, Netns};
use serde_json::{json, Value};

const HOST_PORT: u16 = 5353;
/// The flow's fixed source port: the same 5-tuple before and after the mapping.
const CLIENT_PORT: u16 = 40053;

/// A PATH with the firewall tools portmap runs, and `ip` (the bed starts the plugin through
/// `ip netns exec`), but no `conntrack`.
fn firewall_only_path() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("fr-pmpath-")
        .tempdir()
        .unwrap();
    for tool in [
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
        "nft",
        "ip",
    ] {
        let real = ["/usr/sbin", "/sbin", "/usr/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} is not installed"));
        std::os::unix::fs::symlink(real, dir.path().join(tool)).unwrap();
    }
    dir
}

/// Our portmap run directly, as libcni would, with `path` as its PATH.
fn portmap(host: &Netns, command: &str, conf: &Value, path: &Path, pod: &Netns) -> (i32, String) {
    let plugins = conformance::PluginDir::ours().unwrap();
    let mut cmd = host.command(plugins.path().join("portmap"));
    cmd.env_clear()
        .env("PATH", path)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "pmct-1")
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", plugins.path());
    let out = conformance::cmd::output_with_stdin(&mut cmd, conf.to_string().as_bytes()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "portmap {command}: {}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), stderr)
}

/// Sends to `to` from `CLIENT_PORT` in `host` every 50 ms until stopped; every reply is
/// passed on. Runs on its own thread, which stays in `host`'s namespace.
fn client(
    host: &Netns,
    to: &str,
    stop: &'static AtomicBool,
) -> (mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let ns = std::fs::File::open(host.path()).unwrap();
    let to = to.to_owned();
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace fd; it never returns.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let sock = UdpSocket::bind(("0.0.0.0", CLIENT_PORT)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let _ = sock.send_to(b"ping\n", (to.as_str(), HOST_PORT));
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
            }
        }
    });
    (rx, handle)
}

#[test]
fn a_udp_flow_started_before_the_mapping_reaches_the_pod_after_add() {
    let node = Node::new();
    let driver = driver(&all(Impl::Ours));
    let host = ns("pmcthost");
    let pod = ns("pmctpod");
    let conflist = node.conflist("0.3.1");
    let result = driver
        .add(&conflist, &host, &pod, "eth0", "pmct-1", None)
        .expect("pod network");
    let _listeners = listen(&pod, "from-pod");
    // As on any node: flanneld's masquerade rule (kube-proxy's would do) puts the nat table,
    // and with it connection tracking, in the path of every packet.
    host.exec_ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        NETWORK,
        "!",
        "-d",
        NETWORK,
        "-j",
        "MASQUERADE",
    ])
    .unwrap();

    // The flow starts towards the node's own address on the host port: nothing listens
    // there yet, and conntrack records the flow without any DNAT.
    static STOP: AtomicBool = AtomicBool::new(false);
    let (replies, thread) = client(&host, GATEWAY, &STOP);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        replies.try_recv().is_err(),
        "nothing answers before the mapping"
    );

    let path = firewall_only_path();
    let mut conf = json!({
        "cniVersion": "0.3.1", "name": "cbr0", "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [
            {"hostPort": HOST_PORT, "containerPort": 53, "protocol": "udp"}
        ]},
    });
    conf["prevResult"] = result.clone();
    let (_, stderr) = portmap(&host, "ADD", &conf, path.path(), &pod);

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = None;
    while Instant::now() < deadline {
        if let Ok(reply) = replies.recv_timeout(Duration::from_millis(200)) {
            got = Some(reply);
            break;
        }
    }
    STOP.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(
        got.as_deref(),
        Some("from-pod"),
        "the flow that started before the mapping reaches the pod\nportmap: {stderr}"
    );
    assert!(!stderr.contains("conntrack"), "{stderr}");

    portmap(&host, "DEL", &conf, path.path(), &pod);
    driver
        .del(&conflist, &host, &pod, "eth0", "pmct-1", None)
        .expect("DEL");
}

//! Shared bed for the flannel + portmap conformance tests: a node's flannel files in a temp
//! dir, the kube-flannel conflist pointed at them, pods with TCP/UDP listeners, and probes.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{kube_flannel_conflist, Driver, Impl, Netns, PluginDir};
use serde_json::{json, Value};

pub const NETWORK: &str = "10.244.0.0/16";
pub const SUBNET: &str = "10.244.1.0/24";
pub const GATEWAY: &str = "10.244.1.1";
/// What flanneld writes for a node that leased 10.244.1.0/24 with vxlan and ipMasq.
pub const SUBNET_ENV: &str = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

/// One node's flannel state: subnet.env, the plugin's data dir, host-local's store.
pub struct Node {
    pub dir: tempfile::TempDir,
}

impl Node {
    #[allow(clippy::new_without_default)] // makes namespaces, dirs, servers: not a default value
    pub fn new() -> Node {
        let dir = tempfile::Builder::new()
            .prefix("fr-flannel-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("subnet.env"), SUBNET_ENV).unwrap();
        Node { dir }
    }

    pub fn subnet_file(&self) -> PathBuf {
        self.dir.path().join("subnet.env")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("flannel")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// The kube-flannel ConfigMap's conflist, verbatim except for the three paths a test
    /// must not share with the machine, and the version when asked.
    pub fn conflist(&self, version: &str) -> String {
        kube_flannel_conflist(version, &self.subnet_file(), self.dir.path()).to_string()
    }

    /// The flannel plugin object as libcni derives it from the conflist at `version`, with
    /// `extra` keys (prevResult, runtimeConfig, …) added.
    pub fn plugin_conf(&self, version: &str, extra: Value) -> Value {
        let list: Value = serde_json::from_str(&self.conflist(version)).unwrap();
        let mut conf = list["plugins"][0].clone();
        conf["name"] = json!("cbr0");
        conf["cniVersion"] = json!(version);
        for (k, v) in extra.as_object().unwrap() {
            conf[k] = v.clone();
        }
        conf
    }

    pub fn saved_config(&self, container_id: &str) -> Option<String> {
        std::fs::read_to_string(self.data_dir().join(container_id)).ok()
    }

    /// IPs host-local has handed out on network `cbr0`.
    pub fn reserved_ips(&self) -> Vec<String> {
        super::bridge::reserved_ips(&self.ipam_dir(), "cbr0")
    }
}

pub fn ns(tag: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    ns.set_loopback_up().unwrap();
    ns
}

pub fn driver(choices: &[(&str, Impl)]) -> Driver {
    Driver::new(PluginDir::mixed(choices).unwrap_or_else(|e| panic!("plugin dir: {e}")))
}

pub fn all(which: Impl) -> [(&'static str, Impl); 4] {
    [
        ("flannel", which),
        ("bridge", which),
        ("host-local", which),
        ("portmap", which),
    ]
}

pub fn port_mappings() -> Value {
    json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}
    ]})
}

/// A TCP and a UDP responder in `pod` answering `reply` on ports 80 and 53.
pub struct Listeners {
    children: Vec<Child>,
    udp_stop: Arc<AtomicBool>,
    udp_thread: Option<JoinHandle<()>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.udp_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.udp_thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP responder on a dedicated thread that moves itself into `pod`'s namespace for good.
/// socat's forking UDP server (`UDP-RECVFROM:53,fork`) was tried first: it sometimes received
/// datagrams (the pod's UdpInDatagrams counted them) without ever answering, which made the
/// UDP host-port checks flaky for the reference portmap as much as for ours.
fn udp_responder(pod: &Netns, port: u16, reply: &str) -> (Arc<AtomicBool>, JoinHandle<()>) {
    let ns = std::fs::File::open(pod.path()).expect("open pod netns");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut answer = reply.as_bytes().to_vec();
    answer.push(b'\n');
    let thread_stop = stop.clone();
    let handle = std::thread::spawn(move || {
        // This thread never goes back to the test's namespace: it serves one socket and ends.
        // SAFETY: setns on our own thread with a valid namespace fd.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into pod: {}", std::io::Error::last_os_error());
        let sock = UdpSocket::bind(("0.0.0.0", port)).expect("bind UDP responder");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        ready_tx.send(()).expect("ready");
        let mut buf = [0u8; 1500];
        while !thread_stop.load(Ordering::Relaxed) {
            if let Ok((_, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&answer, from);
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("UDP responder did not start");
    (stop, handle)
}

pub fn listen(pod: &Netns, reply: &str) -> Listeners {
    let tcp = pod
        .command("socat")
        .args([
            "TCP-LISTEN:80,fork,reuseaddr".to_owned(),
            format!("SYSTEM:echo {reply}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat");
    let (udp_stop, udp_thread) = udp_responder(pod, 53, reply);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pod
        .exec_ok(&["ss", "-Hltn", "sport = :80"])
        .unwrap_or_default()
        .contains(":80")
    {
        assert!(
            Instant::now() < deadline,
            "TCP listener in {} did not come up",
            pod.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Listeners {
        children: vec![tcp],
        udp_stop,
        udp_thread: Some(udp_thread),
    }
}

/// What a TCP connection from `from` to `addr:port` reads back (empty on failure).
pub fn tcp_get(from: &Netns, addr: &str, port: u16) -> String {
    let out = from.exec(&[
        "socat",
        "-T",
        "3",
        "-",
        &format!("TCP:{addr}:{port},connect-timeout=3"),
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What a UDP request from `from` to `addr:port` reads back (empty on failure).
pub fn udp_get(from: &Netns, addr: &str, port: u16) -> String {
    let out = from.sh(&format!("echo ping | socat -T 2 - UDP:{addr}:{port}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn pings(from: &Netns, to: &str) -> bool {
    from.exec(&["ping", "-c", "1", "-W", "3", to])
        .status
        .success()
}

/// The nat table without counters and the header/footer comments, for comparisons.
pub fn nat_rules(host: &Netns) -> Vec<String> {
    host.iptables_save("nat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("-A") || (l.starts_with(':') && !l.contains(" ACCEPT ")))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
        .collect()
}

pub fn dn_chain_lines(host: &Netns) -> Vec<String> {
    nat_rules(host)
        .into_iter()
        .filter(|l| l.contains("CNI-DN-"))
        .collect()
}

pub fn first_ip(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address")
        .to_owned()
}

/// A result with the parts that differ between runs (MACs, random veth names) blanked.
pub fn normalized(result: &Value) -> Value {
    let mut r = result.clone();
    if let Some(ifaces) = r["interfaces"].as_array_mut() {
        for i in ifaces {
            i.as_object_mut().unwrap().remove("mac");
            if i.get("sandbox").is_none()
                && i["name"].as_str().is_some_and(|n| n.starts_with("veth"))
            {
                i["name"] = json!("veth*");
            }
            if let Some(s) = i.get_mut("sandbox") {
                *s = json!("<netns>");
            }
        }
    }
    r
}

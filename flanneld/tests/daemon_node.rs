//! The flanneld binary on one node (a namespace with a veth pair as its uplink, etcd beside
//! it): waiting for a missing or invalid config, readiness, re-acquiring a deleted lease,
//! restoring a deleted subnet.env, and a clean stop that leaves the lease in place.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use conformance::flanneld::{Flanneld, ETCD_PREFIX as PREFIX, LEASES_PREFIX};
use conformance::{Etcd, EtcdOptions, Netns};

const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

/// The daemon on its namespace (the bed's harness, this crate's own binary), etcd beside it.
struct Node {
    etcd: Etcd,
    flanneld: Flanneld<Netns>,
    /// Plays systemd's notify socket.
    notify: UnixDatagram,
}

impl Node {
    fn new() -> Node {
        let ns = Netns::new("fdnode").unwrap();
        ns.set_loopback_up().unwrap();
        for argv in [
            &[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink",
            ][..],
            &["ip", "addr", "add", "192.168.50.1/24", "dev", "eth0"],
            &["ip", "link", "set", "eth0", "up"],
            &["ip", "link", "set", "uplink", "up"],
        ] {
            ns.exec_ok(argv).unwrap();
        }
        let etcd = Etcd::start(EtcdOptions::in_netns(&ns, IpAddr::V4(NODE_IP))).unwrap();
        let flanneld = Flanneld::etcd(ns, &etcd.endpoint())
            .unwrap()
            .binary(env!("CARGO_BIN_EXE_flanneld"))
            .args(&["--iptables-resync=1"])
            .lease_ttl(60);
        let socket = flanneld.path("notify");
        let notify = UnixDatagram::bind(&socket).unwrap();
        notify.set_nonblocking(true).unwrap();
        Node {
            etcd,
            flanneld: flanneld.env("NOTIFY_SOCKET", socket),
            notify,
        }
    }

    fn ns(&self) -> &Netns {
        &self.flanneld.host
    }

    fn subnet_file(&self) -> &Path {
        self.flanneld.subnet_file()
    }

    fn log(&self) -> String {
        self.flanneld.log()
    }

    fn start(&mut self) {
        self.flanneld.spawn().unwrap();
    }

    fn wait_for(&self, what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn lease_keys(&self) -> Vec<String> {
        self.etcd.keys(LEASES_PREFIX).unwrap()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        self.flanneld.stop().unwrap()
    }
}

#[test]
fn node_lifecycle() {
    let mut node = Node::new();
    node.start();

    // No config yet, then an invalid one: flanneld waits and says why.
    node.wait_for("missing-config message", Duration::from_secs(20), || {
        node.log().contains("Couldn't fetch network config: flannel config not found in etcd store. Did you create your config using etcdv3 API?")
    });
    node.etcd
        .put(
            &format!("{PREFIX}/config"),
            r#"{"Network":"10.50.0.0/30","Backend":{"Type":"vxlan"}}"#,
        )
        .unwrap();
    node.wait_for("invalid-config message", Duration::from_secs(20), || {
        node.log()
            .contains("network is too small. Minimum useful network prefix is /28")
    });
    assert!(!node.subnet_file().exists());
    let mut buf = [0u8; 256];
    assert!(
        node.notify.recv(&mut buf).is_err(),
        "READY=1 before the node is ready"
    );
    node.etcd
        .put(
            &format!("{PREFIX}/config"),
            r#"{"Network":"10.50.0.0/16","Backend":{"Type":"vxlan"}}"#,
        )
        .unwrap();
    node.wait_for("subnet.env", Duration::from_secs(30), || {
        node.subnet_file().exists()
    });
    let env = std::fs::read_to_string(node.subnet_file()).unwrap();
    assert!(
        env.starts_with("FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50."),
        "{env}"
    );
    assert!(
        env.ends_with(".1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"),
        "{env}"
    );
    let mut got = Vec::new();
    node.wait_for("READY=1", Duration::from_secs(5), || {
        match node.notify.recv(&mut buf) {
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                true
            }
            Err(_) => false,
        }
    });
    assert_eq!(String::from_utf8_lossy(&got).trim(), "READY=1");
    let keys = node.lease_keys();
    assert_eq!(keys.len(), 1);
    let value = node.etcd.get(&keys[0]).unwrap().unwrap();
    assert!(value.starts_with(r#"{"PublicIP":"192.168.50.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":""#), "{value}");

    // subnet.env deleted by someone: rewritten on the next resync.
    std::fs::remove_file(node.subnet_file()).unwrap();
    node.wait_for("subnet.env rewritten", Duration::from_secs(10), || {
        std::fs::read_to_string(node.subnet_file()).is_ok_and(|t| t == env)
    });

    // Our record deleted (upstream would exit): re-acquired, same subnet, still running.
    node.etcd.delete(&keys[0]).unwrap();
    node.wait_for("re-acquired lease", Duration::from_secs(30), || {
        node.lease_keys() == keys
    });
    assert!(node.flanneld.is_running(), "flanneld must keep running");
    assert!(node.log().contains("re-acquiring"), "{}", node.log());

    // Clean stop: exit 0, lease and subnet.env stay.
    assert_eq!(node.stop().code(), Some(0));
    assert!(node.log().contains("Exiting cleanly..."));
    assert_eq!(node.lease_keys(), keys);
    assert!(node.subnet_file().exists());
}

#[test]
fn dual_stack_node_publishes_both_families() {
    let mut node = Node::new();
    node.ns()
        .exec_ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            "fd00:50::1/64",
            "dev",
            "eth0",
            "nodad",
        ])
        .unwrap();
    node.etcd
        .put(
            &format!("{PREFIX}/config"),
            r#"{"Network":"10.51.0.0/16","EnableIPv6":true,"IPv6Network":"fd10::/56","Backend":{"Type":"vxlan"}}"#,
        )
        .unwrap();
    node.start();
    node.wait_for("subnet.env", Duration::from_secs(30), || {
        node.subnet_file().exists()
    });
    let env = std::fs::read_to_string(node.subnet_file()).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines.len(), 6, "{env}");
    assert_eq!(lines[0], "FLANNEL_NETWORK=10.51.0.0/16");
    assert!(
        lines[1].starts_with("FLANNEL_SUBNET=10.51.") && lines[1].ends_with(".1/24"),
        "{env}"
    );
    assert_eq!(lines[2], "FLANNEL_IPV6_NETWORK=fd10::/56");
    assert!(
        lines[3].starts_with("FLANNEL_IPV6_SUBNET=fd10:0:0:") && lines[3].ends_with("::1/64"),
        "{env}"
    );
    assert_eq!(
        lines[4], "FLANNEL_MTU=1430",
        "vxlan over IPv6 needs 70 bytes"
    );
    let keys = node.lease_keys();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].contains("-24&fd10:0:0:") && keys[0].ends_with("::-64"),
        "{keys:?}"
    );
    let value = node.etcd.get(&keys[0]).unwrap().unwrap();
    assert!(value.starts_with(r#"{"PublicIP":"192.168.50.1","PublicIPv6":"fd00:50::1","BackendType":"vxlan","BackendData":{"#), "{value}");
    assert!(
        value.contains(r#""BackendV6Data":{"VNI":1,"VtepMAC":""#),
        "{value}"
    );
    assert_eq!(node.stop().code(), Some(0));
}

//! udp backend hosts on top of the backend test bed, and iperf3 between them.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flanneld::backend::udp::UdpBackend;
use flanneld::backend::Backend;
use flanneld::subnet::{Event, Lease};
use netconf::flannel::NetworkConfig;
use netops::netlink::Handle;

use crate::{lease, Node};

pub const NET_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}"#;
pub const PORT: u16 = 8285;

/// A node running the udp backend. The backend is declared first so it stops (and its TUN
/// device goes) before the namespace is deleted.
pub struct UdpHost {
    pub backend: UdpBackend,
    pub lease: Lease,
    pub node: Node,
}

impl UdpHost {
    /// Builds, prepares and activates the backend inside the node's namespace.
    pub fn start(node: Node, workers: Option<usize>) -> UdpHost {
        let config = NetworkConfig::parse(NET_CONF.as_bytes()).unwrap();
        let nl = Handle::in_netns(node.ns.path()).unwrap();
        let mut backend = UdpBackend::new(PORT, node.ext(), &config, nl).unwrap();
        if let Some(n) = workers {
            backend = backend.with_workers(n);
        }
        let (subnet, addr) = (node.subnet, node.addr);
        let (backend, lease) = node.ns.run(move || {
            let data = backend.prepare().expect("prepare");
            assert_eq!(data, None, "udp publishes no BackendData");
            let l = lease(subnet, addr, backend.backend_type(), data);
            backend.activate(&l).expect("activate");
            (backend, l)
        });
        UdpHost {
            backend,
            lease,
            node,
        }
    }

    pub fn add_peer(&mut self, peer: &Lease) {
        let r = self.backend.handle(&[Event::added(peer.clone())]).unwrap();
        assert_eq!((r.added, r.errors.len()), (1, 0), "{r:?}");
    }
}

/// Connects two hosts both ways.
pub fn mesh(a: &mut UdpHost, b: &mut UdpHost) {
    let (la, lb) = (a.lease.clone(), b.lease.clone());
    a.add_peer(&lb);
    b.add_peer(&la);
}

/// A one-shot iperf3 server in a namespace, killed on drop.
pub struct IperfServer(Child);

impl IperfServer {
    pub fn start(ns: &str, bind: Ipv4Addr) -> IperfServer {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "iperf3",
                "-s",
                "-1",
                "-B",
                &bind.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server");
        IperfServer(child)
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a single-stream TCP iperf3 from `from` to `to` for `secs` seconds; returns the
/// received rate in Gbit/s.
pub fn iperf_tcp(client_ns: &str, server_ns: &str, from: Ipv4Addr, to: Ipv4Addr, secs: u32) -> f64 {
    let _server = IperfServer::start(server_ns, to);
    let mut last = String::new();
    for _ in 0..50 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                client_ns,
                "iperf3",
                "-c",
                &to.to_string(),
                "-B",
                &from.to_string(),
                "-t",
                &secs.to_string(),
                "-J",
            ])
            .output()
            .expect("iperf3 client");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            return bps / 1e9;
        }
        // The server may not be listening yet.
        last = v["error"].as_str().unwrap_or_default().to_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("iperf3 from {from} to {to} failed: {last}");
}

//! The wireguard backend against the real kernel, in namespaces this test creates: two hosts,
//! the userspace device on each (this kernel has no WireGuard module), traffic across, the
//! device as upstream configures it, bad datagrams dropped and counted, a peer moving to a
//! new address, a malformed lease skipped.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use flanneld::backend::{WireguardImpl, WireguardNode};
use flanneld::metrics::wireguard::{Implementation, WireguardSnapshot};
use flanneld::metrics::{DatapathSource, DropReason};
use flanneld::subnet::{BackendData, Event, Lease, WireguardLeaseData};
use flanneld_bed::udp::iperf_tcp;
use flanneld_bed::{add_pod_gateway, add_pod_gateway_v6, join_dual, lease, lines, two_hosts, Node};
use serde_json::json;

const NET_CONF: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}"#;

struct WgHost {
    node: Node,
    lease: Lease,
    keys: tempfile::TempDir,
}

impl WgHost {
    fn start(mut node: Node, net_conf: &str) -> WgHost {
        let keys = tempfile::tempdir().unwrap();
        node.wireguard = WireguardNode {
            implementation: WireguardImpl::Userspace,
            key_file: keys.path().join("wgkey"),
            workers: None,
        };
        node.start(net_conf).expect("wireguard backend");
        let lease = node.join();
        WgHost { node, lease, keys }
    }

    fn add_peer(&mut self, peer: &Lease) {
        let r = self
            .node
            .backend()
            .handle(&[Event::added(peer.clone())])
            .unwrap();
        assert_eq!((r.added, r.errors.len()), (1, 0), "{r:?}");
    }

    fn snapshot(&mut self) -> WireguardSnapshot {
        match self.node.backend().datapath_source() {
            Some(DatapathSource::Wireguard(s)) => s(),
            other => panic!("no wireguard source: {other:?}"),
        }
    }

    fn data(&self) -> WireguardLeaseData {
        WireguardLeaseData::from_data(self.lease.attrs.backend_data.as_ref().unwrap()).unwrap()
    }
}

fn pair() -> (WgHost, WgHost) {
    let (a, b) = two_hosts();
    let mut a = WgHost::start(a, NET_CONF);
    let mut b = WgHost::start(b, NET_CONF);
    let (la, lb) = (a.lease.clone(), b.lease.clone());
    a.add_peer(&lb);
    b.add_peer(&la);
    (a, b)
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn device_key_and_lease_as_upstream_and_traffic_both_ways() {
    let (mut a, b) = pair();
    assert_eq!(
        a.node.backend().mtu(),
        1420,
        "1500 - 80, FLANNEL_MTU as upstream"
    );
    assert_eq!(a.node.backend().backend_type(), "wireguard");
    let ns = &a.node.ns;
    let link = ns.ip(&["-d", "link", "show", "flannel-wg"]);
    assert!(
        link.contains("mtu 1420") && link.contains("tun") && link.contains(",UP"),
        "{link}"
    );
    let addrs = ns.ip(&["-4", "-o", "addr", "show", "dev", "flannel-wg"]);
    assert!(addrs.contains("inet 10.244.1.0/32"), "{addrs}");
    assert_eq!(
        lines(&ns.ip(&["route", "show", "root", "10.244.0.0/16"])),
        ["10.244.0.0/16 dev flannel-wg scope link"]
    );
    // The wildcard address: the node's own address may change under the socket.
    let sockets = ns.exec(&["ss", "-uanH"]);
    assert!(sockets.contains("0.0.0.0:51820"), "{sockets}");

    // The key file: upstream's format and mode; the lease carries its public key and port.
    let key_file = a.keys.path().join("wgkey");
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text.len(), 44);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);
    let data = a.data();
    assert_eq!(data.port, 51820);
    assert_eq!(
        a.lease.attrs.backend_data.as_ref().unwrap().as_json(),
        format!(r#"{{"PublicKey":"{}","Port":51820}}"#, data.public_key)
    );
    let out = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(std::fs::File::open(&key_file).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        data.public_key.to_string()
    );

    let (gw_a, gw_b) = (add_pod_gateway(&a.node), add_pod_gateway(&b.node));
    assert!(a.node.ns.ping(gw_a, gw_b), "a -> b");
    assert!(b.node.ns.ping(gw_b, gw_a), "b -> a");
    let gbits = iperf_tcp(&a.node.ns.name, &b.node.ns.name, gw_a, gw_b, 1);
    assert!(gbits > 0.01, "TCP across the tunnel: {gbits} Gbit/s");

    let snap = a.snapshot();
    assert_eq!(snap.implementation, Implementation::Userspace);
    assert_eq!(snap.devices.len(), 1);
    let dev = &snap.devices[0];
    assert_eq!((dev.name.as_str(), dev.listen_port), ("flannel-wg", 51820));
    assert_eq!(dev.public_key, data.public_key.to_string());
    let peer = &dev.peers[0];
    assert_eq!(peer.public_key, b.data().public_key.to_string());
    assert_eq!(peer.endpoint, Some("192.168.77.2:51820".parse().unwrap()));
    assert_eq!(peer.allowed_ips, vec!["10.244.2.0/24".parse().unwrap()]);
    assert!(
        peer.handshakes >= 1 && peer.last_handshake.is_some(),
        "{peer:?}"
    );
    assert!(
        peer.rx_bytes > 1_000_000 || peer.tx_bytes > 1_000_000,
        "{peer:?}"
    );
    let dp = snap.datapath.unwrap();
    assert!(dp.packets_out > 1000 && dp.packets_in > 100, "{dp:?}");
}

#[test]
fn the_kernel_path_is_refused_clearly_where_the_kernel_has_no_wireguard() {
    let (mut a, _b) = two_hosts();
    let keys = tempfile::tempdir().unwrap();
    a.wireguard = WireguardNode {
        implementation: WireguardImpl::Kernel,
        key_file: keys.path().join("wgkey"),
        workers: None,
    };
    a.start(NET_CONF).unwrap();
    let ns = &a.ns;
    let backend = a.backend.as_deref_mut().unwrap();
    let e = ns.run(|| backend.prepare().unwrap_err()).to_string();
    assert!(e.contains("the kernel has no WireGuard"), "{e}");
    assert!(e.contains("--wireguard-impl=userspace or auto"), "{e}");
    assert!(
        !ns.try_exec(&["ip", "link", "show", "flannel-wg"]),
        "nothing left behind"
    );

    // auto: the same kernel, and the userspace device runs.
    a.wireguard.implementation = WireguardImpl::Auto;
    a.start(NET_CONF).unwrap();
    let _lease = a.join();
    let link = a.ns.ip(&["-d", "link", "show", "flannel-wg"]);
    assert!(link.contains("tun"), "{link}");
}

#[test]
fn bad_datagrams_are_dropped_and_counted_without_disturbing_traffic() {
    let (mut a, b) = pair();
    let (gw_a, gw_b) = (add_pod_gateway(&a.node), add_pod_gateway(&b.node));
    assert!(b.node.ns.ping(gw_b, gw_a));
    let target = SocketAddrV4::new(a.node.addr, 51820);
    b.node.ns.run(|| {
        let s = UdpSocket::bind(SocketAddrV4::new(b.node.addr, 0)).unwrap();
        let mut data = vec![4u8, 0, 0, 0];
        data.extend_from_slice(&[0x5a; 60_000]);
        for dgram in [
            vec![0xff; 64], // garbage
            vec![1, 0, 0],  // truncated
            vec![1; 148],   // an initiation with reserved bits set
            data,           // oversized data message for no session
            vec![
                4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0,
            ],
        ] {
            s.send_to(&dgram, target).unwrap();
        }
    });
    assert!(
        eventually(|| {
            let c = a.snapshot().datapath.unwrap();
            c.dropped(DropReason::Malformed) >= 3 && c.dropped(DropReason::UnknownSession) >= 2
        }),
        "{:?}",
        a.snapshot().datapath
    );
    assert!(a.node.ns.ping(gw_a, gw_b), "traffic still flows");
}

#[test]
fn a_peer_that_moves_keeps_its_session_and_a_malformed_lease_is_skipped() {
    let (mut a, b) = pair();
    let (gw_a, gw_b) = (add_pod_gateway(&a.node), add_pod_gateway(&b.node));
    assert!(a.node.ns.ping(gw_a, gw_b));
    let before = a.snapshot().devices[0].peers[0].handshakes;

    // b's public address changes (issue 19's follow-the-interface republishes the lease):
    // a updates the endpoint of the peer it has, no new peer, no new handshake needed.
    // (Removing the old address first: a secondary goes with the primary.)
    b.node
        .ns
        .ip(&["addr", "del", "192.168.77.2/24", "dev", "eth0"]);
    b.node
        .ns
        .ip(&["addr", "add", "192.168.77.12/24", "dev", "eth0"]);
    let mut moved = b.lease.clone();
    moved.attrs.public_ip = Ipv4Addr::new(192, 168, 77, 12);
    let r = a
        .node
        .backend()
        .handle(&[Event::added(moved.clone())])
        .unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    let peers = &a.snapshot().devices[0].peers;
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0].endpoint,
        Some("192.168.77.12:51820".parse().unwrap())
    );
    assert!(
        eventually(|| a.node.ns.ping(gw_a, gw_b)),
        "traffic to the new address: b has {} {}; a sees {:?}",
        b.node.ns.ip(&["-o", "addr"]),
        b.node.ns.ip(&["route"]),
        a.snapshot()
    );
    assert_eq!(
        a.snapshot().devices[0].peers[0].handshakes,
        before,
        "same session"
    );

    // A lease whose PublicKey does not parse: skipped with a line and a count; the others
    // keep working.
    let mut bad = lease(
        "10.244.9.0/24".parse().unwrap(),
        Ipv4Addr::new(192, 168, 77, 9),
        "wireguard",
        Some(json!({"PublicKey": "not-a-key", "Port": 51820})),
    );
    bad.attrs.backend_data = Some(BackendData::from(json!({"PublicKey": "not-a-key"})));
    let r = a
        .node
        .backend()
        .handle(&[Event::added(bad.clone())])
        .unwrap();
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(
        r.errors[0].contains("10.244.9.0/24") && r.errors[0].contains("PublicKey"),
        "{r:?}"
    );
    let r = a
        .node
        .backend()
        .reconcile(&[moved.into(), bad.into()])
        .unwrap();
    assert!(
        r.errors.is_empty(),
        "reported once, not on every reconcile: {r:?}"
    );
    let snap = a.snapshot();
    assert_eq!(snap.skipped_leases, 1);
    assert_eq!(snap.devices[0].peers.len(), 1);
    assert!(a.node.ns.ping(gw_a, gw_b));
}

/// A dual-stack WireGuard node with pod gateways on cni0 for both families.
fn join_dual_wg(node: &mut Node, n: u16, net_conf: &str, keys: &std::path::Path) -> Lease {
    node.wireguard = WireguardNode {
        implementation: WireguardImpl::Userspace,
        key_file: keys.join(format!("key{n}")),
        workers: None,
    };
    let own = join_dual(node, n, net_conf, "wireguard");
    add_pod_gateway(node);
    add_pod_gateway_v6(node, n);
    own
}

fn ping6(node: &Node, from: u16, to: u16) -> bool {
    node.ns.try_exec(&[
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "2",
        "-I",
        &format!("fc00:244:0:{from}::1"),
        &format!("fc00:244:0:{to}::1"),
    ])
}

#[test]
fn dual_stack_in_separate_and_single_device_modes() {
    for (mode, devices) in [
        ("separate", vec!["flannel-wg", "flannel-wg-v6"]),
        ("auto", vec!["flannel-wg"]),
        ("ipv6", vec!["flannel-wg"]),
    ] {
        let conf = format!(
            r#"{{"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fc00:244::/48","Backend":{{"Type":"wireguard","Mode":"{mode}"}}}}"#
        );
        let keys = tempfile::tempdir().unwrap();
        let (mut a, mut b) = two_hosts();
        let la = join_dual_wg(&mut a, 1, &conf, keys.path());
        let lb = join_dual_wg(&mut b, 2, &conf, keys.path());
        // BackendV6Data as upstream: the same key, ListenPortV6.
        let v6 = WireguardLeaseData::from_data(la.attrs.backend_v6_data.as_ref().unwrap()).unwrap();
        let v4 = WireguardLeaseData::from_data(la.attrs.backend_data.as_ref().unwrap()).unwrap();
        assert_eq!((v6.public_key, v6.port), (v4.public_key, 51821), "{mode}");
        for d in &devices {
            assert!(a.ns.try_exec(&["ip", "link", "show", d]), "{mode}: {d}");
        }
        let v6_dev = devices.last().unwrap();
        let addrs =
            a.ns.ip(&["-6", "-o", "addr", "show", "dev", v6_dev, "scope", "global"]);
        assert!(
            addrs.contains("inet6 fc00:244:0:1::/128"),
            "{mode}: {addrs}"
        );
        let routes = a.ns.ip(&["-6", "route", "show", "fc00:244::/48"]);
        assert!(
            routes.contains(&format!("dev {v6_dev}")),
            "{mode}: {routes}"
        );
        a.handle(&[Event::added(lb.clone())]);
        b.handle(&[Event::added(la.clone())]);
        let (gw_a, gw_b) = (Ipv4Addr::new(10, 244, 1, 1), Ipv4Addr::new(10, 244, 2, 1));
        assert!(eventually(|| a.ns.ping(gw_a, gw_b)), "{mode}: IPv4 a -> b");
        assert!(eventually(|| ping6(&a, 1, 2)), "{mode}: IPv6 a -> b");
        assert!(eventually(|| ping6(&b, 2, 1)), "{mode}: IPv6 b -> a");
    }
}

//! udp backend against the real kernel, in namespaces this test creates: two hosts, the
//! TUN datapath on each, traffic across, bad input dropped and counted.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use flanneld::backend::udp::UdpBackend;
use flanneld::backend::{self, Backend};
use flanneld::metrics::DropReason;
use flanneld::subnet::Event;
use flanneld_bed::udp::{iperf_tcp, mesh, UdpHost, NET_CONF, PORT};
use flanneld_bed::{add_pod_gateway, lease, lines, two_hosts};
use netconf::flannel::NetworkConfig;
use netops::netlink::Handle;

fn pair() -> (UdpHost, UdpHost) {
    let (a, b) = two_hosts();
    let mut a = UdpHost::start(a, None);
    let mut b = UdpHost::start(b, None);
    mesh(&mut a, &mut b);
    (a, b)
}

/// Waits for counters to settle: the forwarding threads flush them per batch.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn device_is_configured_like_upstream_and_carries_ping_and_tcp() {
    let (a, b) = pair();
    assert_eq!(a.backend.mtu(), 1472, "underlay MTU 1500 - 28");
    assert_eq!(a.backend.backend_type(), "");
    let link = a.node.ns.ip(&["-d", "link", "show", "flannel0"]);
    assert!(link.contains("mtu 1472"), "{link}");
    assert!(link.contains("tun type tun"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    let addrs = a
        .node
        .ns
        .ip(&["-4", "-o", "addr", "show", "dev", "flannel0"]);
    assert!(addrs.contains("inet 10.244.1.0/32"), "{addrs}");
    assert_eq!(
        lines(&a.node.ns.ip(&["route", "show", "root", "10.244.0.0/16"])),
        ["10.244.0.0/16 dev flannel0"]
    );
    let sockets = a.node.ns.exec(&["ss", "-uan"]);
    assert!(sockets.contains("192.168.77.1:8285"), "{sockets}");

    let (gw_a, gw_b) = (add_pod_gateway(&a.node), add_pod_gateway(&b.node));
    assert!(a.node.ns.ping(gw_a, gw_b), "no overlay connectivity a -> b");
    assert!(b.node.ns.ping(gw_b, gw_a), "no overlay connectivity b -> a");
    // The packets crossed as UDP between the public addresses, one inner packet each.
    let dump = a.node.ns.exec(&[
        "ping",
        "-c",
        "1",
        "-s",
        "1000",
        "-I",
        &gw_a.to_string(),
        &gw_b.to_string(),
    ]);
    assert!(dump.contains("1 received"), "{dump}");

    let gbits = iperf_tcp(&a.node.ns.name, &b.node.ns.name, gw_a, gw_b, 1);
    assert!(gbits > 0.01, "TCP across the overlay: {gbits} Gbit/s");
    let (ca, cb) = (a.backend.counters(), b.backend.counters());
    assert!(ca.packets_out > 1000 && ca.bytes_out > 1_000_000, "{ca:?}");
    assert!(cb.packets_in > 1000, "{cb:?}");
    assert_eq!(
        ca.drops.iter().sum::<u64>() - ca.dropped(DropReason::NotIp),
        0,
        "{ca:?}"
    );
    assert_eq!(
        cb.dropped(DropReason::UnknownPeer) + cb.dropped(DropReason::TunWriteFailed),
        0,
        "{cb:?}"
    );
}

#[test]
fn unknown_destinations_get_net_unreachable_and_removed_peers_stop_traffic() {
    let (mut a, b) = pair();
    let (gw_a, gw_b) = (add_pod_gateway(&a.node), add_pod_gateway(&b.node));
    assert!(a.node.ns.ping(gw_a, gw_b));

    let r = a
        .backend
        .handle(&[Event::removed(b.lease.clone())])
        .unwrap();
    assert_eq!((r.removed, r.errors.len()), (1, 0), "{r:?}");
    assert!(
        !a.node.ns.ping(gw_a, gw_b),
        "traffic still flows after removal"
    );
    // A TCP connect gets the ICMP error at once instead of timing out.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &a.node.ns.name, "bash", "-c"])
        .arg(format!(
            "timeout 5 bash -c 'exec 3<>/dev/tcp/{gw_b}/80' 2>&1; true"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No route to host") || text.contains("Network is unreachable"),
        "{text:?}"
    );
    assert!(
        eventually(|| a.backend.counters().icmp_unreachable >= 1),
        "{:?}",
        a.backend.counters()
    );
    assert!(a.backend.counters().dropped(DropReason::NoRoute) >= 1);

    // reconcile() with the full set brings the peer back and counts the repair.
    let r = a.backend.reconcile(&[b.lease.clone().into()]).unwrap();
    assert_eq!((r.added, r.removed), (1, 0), "{r:?}");
    assert!(a.node.ns.ping(gw_a, gw_b));
    let again = a.backend.reconcile(&[b.lease.clone().into()]).unwrap();
    assert_eq!(again.repaired, 0, "{again:?}");

    // A route deleted by hand comes back with the next reconcile.
    a.node
        .ns
        .ip(&["route", "del", "10.244.0.0/16", "dev", "flannel0"]);
    let r = a.backend.reconcile(&[b.lease.clone().into()]).unwrap();
    assert_eq!(r.repaired, 1, "{r:?}");
    assert!(a.node.ns.ping(gw_a, gw_b));
}

#[test]
fn bad_datagrams_are_dropped_and_counted_without_disturbing_traffic() {
    let (a, b) = pair();
    let (gw_a, gw_b) = (add_pod_gateway(&a.node), add_pod_gateway(&b.node));
    b.node
        .ns
        .ip(&["addr", "add", "192.168.77.9/24", "dev", "eth0"]);
    let target = SocketAddrV4::new(a.node.addr, PORT);
    b.node.ns.run(|| {
        let peer = UdpSocket::bind(SocketAddrV4::new(b.node.addr, 0)).unwrap();
        let stranger =
            UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 9), 0)).unwrap();
        let valid_to_outside = {
            let mut p = vec![
                0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 244, 2, 1, 8, 8, 8, 8,
            ];
            p.extend_from_slice(&[0; 8]);
            p
        };
        let ttl_one = {
            let mut p = valid_to_outside.clone();
            p[8] = 1;
            p[16..20].copy_from_slice(&[10, 244, 1, 1]);
            p
        };
        let from_peer: [&[u8]; 5] = [
            b"garbage",                     // not IPv4
            &[0x45, 0, 0, 200, 0, 0, 0, 0], // truncated
            &[0x45, 0, 0, 60],              // truncated, shorter than a header
            &valid_to_outside,
            &ttl_one,
        ];
        for d in from_peer {
            peer.send_to(d, target).unwrap();
        }
        stranger.send_to(&ttl_one, target).unwrap();
        peer.send_to(&[], target).unwrap();
    });
    // The kernel's own IPv6 chatter on flannel0 also counts as not IPv4.
    let expect = [
        (DropReason::Truncated, 3),
        (DropReason::OutsideNetwork, 1),
        (DropReason::TtlExpired, 1),
        (DropReason::UnknownPeer, 1),
    ];
    assert!(
        eventually(|| {
            let c = a.backend.counters();
            c.dropped(DropReason::NotIp) >= 1 && expect.iter().all(|(r, n)| c.dropped(*r) == *n)
        }),
        "{:?}",
        a.backend.counters()
    );
    assert!(a.node.ns.ping(gw_a, gw_b), "the datapath survived");
}

#[test]
fn new_backend_builds_udp_and_reports_missing_tun_clearly() {
    let (a, _b) = two_hosts();
    let config = NetworkConfig::parse(NET_CONF.as_bytes()).unwrap();
    let cfg = config.backend_config().unwrap();
    let nl = Handle::in_netns(a.ns.path()).unwrap();
    let be = backend::new_backend(&cfg, &a.ext(), &config, nl).expect("udp is supported");
    assert_eq!(be.backend_type(), "");
    assert_eq!(be.mtu(), 1472);
    drop(be);

    let v6 = NetworkConfig::parse(
        br#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"udp"}}"#,
    )
    .unwrap();
    let nl = Handle::in_netns(a.ns.path()).unwrap();
    let err = UdpBackend::new(PORT, a.ext(), &v6, nl)
        .err()
        .expect("IPv6 refused");
    assert!(err.to_string().contains("IPv4 only"), "{err}");

    // Without /dev/net/tun (a container without the device) the error says what to do.
    let nl = Handle::in_netns(a.ns.path()).unwrap();
    let mut no_tun = UdpBackend::new(PORT, a.ext(), &config, nl).unwrap();
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            hide_dev_net();
            a.ns.run(|| no_tun.prepare().expect_err("no TUN device node"))
        })
        .join()
        .unwrap()
    });
    let text = err.to_string();
    assert!(
        text.contains("/dev/net/tun") && text.contains("mknod"),
        "{text}"
    );

    // A second flanneld on the node cannot take over the device of the first.
    let host = UdpHost::start(a, Some(1));
    let nl = Handle::in_netns(host.node.ns.path()).unwrap();
    let mut second = UdpBackend::new(PORT, host.node.ext(), &config, nl).unwrap();
    let err = host
        .node
        .ns
        .run(|| second.prepare().expect_err("device busy"));
    let text = err.to_string();
    assert!(
        text.contains("failed to open TUN device flannel0") && text.contains("another flanneld"),
        "{text}"
    );
}

/// Gives the calling thread a private mount namespace in which /dev/net is an empty tmpfs.
fn hide_dev_net() {
    // SAFETY: unshare/mount affect only this thread (CLONE_FS unshares its fs context), which
    // ends right after the test step; arguments are valid C strings.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS),
            0,
            "unshare"
        );
        let none = c"none";
        assert_eq!(
            libc::mount(
                none.as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "make mounts private"
        );
        assert_eq!(
            libc::mount(
                none.as_ptr(),
                c"/dev/net".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null()
            ),
            0,
            "tmpfs over /dev/net"
        );
    }
}

#[test]
fn leases_without_backend_type_from_any_node_are_peers() {
    let (a, b) = two_hosts();
    let mut a = UdpHost::start(a, Some(1));
    let b = UdpHost::start(b, Some(1));
    // Upstream publishes udp leases with no BackendType; some other type is not filtered
    // either, as upstream's udp backend does not look.
    let mut other = b.lease.clone();
    other.attrs.backend_type = "vxlan".into();
    other.subnet = "10.244.7.0/24".parse().unwrap();
    let r = a
        .backend
        .handle(&[
            Event::added(b.lease.clone()),
            Event::added(other),
            Event::added(a.lease.clone()),
        ])
        .unwrap();
    assert_eq!(r.added, 2, "own lease ignored: {r:?}");
    let own = lease(a.lease.subnet, a.node.addr, "", None);
    let r = a
        .backend
        .reconcile(&[own.into(), b.lease.clone().into()])
        .unwrap();
    assert_eq!((r.added, r.removed), (0, 1), "{r:?}");
}

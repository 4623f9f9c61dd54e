//! flanneld under faults: an etcd outage, two nodes racing for a tiny pool, SIGTERM and
//! restart, systemd readiness, broken configs in etcd, and the command line's help and
//! version. Real etcd, real daemons in namespace hosts, pods through libcni.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use conformance::support::flanneld::*;
use conformance::support::flanneld_faults::*;
use conformance::Segment;
use ipnet::Ipv4Net;
use serde_json::{json, Value};

const NETWORK: &str = "10.244.0.0/16";

fn vxlan() -> Value {
    json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}})
}

fn config_key() -> String {
    format!("{PREFIX}/config")
}

/// The log written since byte offset `mark` (a length taken earlier).
fn log_since(node: &Flanneld, mark: usize) -> String {
    node.log().get(mark..).unwrap_or_default().to_owned()
}

fn lease_key(subnet: Ipv4Net) -> String {
    format!(
        "{PREFIX}/subnets/{}-{}",
        subnet.network(),
        subnet.prefix_len()
    )
}

fn assert_no_loss(stats: PingStats, at_least: u32, what: &str) {
    assert!(
        stats.transmitted >= at_least,
        "{what}: only {} pings sent, the window was not covered",
        stats.transmitted
    );
    assert_eq!(
        stats.received, stats.transmitted,
        "{what}: pings lost ({stats:?})"
    );
}

/// etcd is only the control plane: while it is down the kernel keeps forwarding on what
/// flanneld programmed, so not a single ping may be lost. The daemons must notice the
/// outage, keep running, pick the watch up where it stopped, renew their leases once etcd is
/// back, and see a node that joins afterwards.
#[test]
fn etcd_outage_loses_no_packet_and_daemons_recover() {
    // Renewal every 8 s, retried every 4 s after a failure: a 30 s outage swallows at least
    // three renewal attempts, and one succeeds within seconds of etcd's return.
    const TTL_SECS: u64 = 16;
    const OUTAGE: Duration = Duration::from_secs(30);
    let mut cluster = Cluster::new(&vxlan());
    let mut nodes = cluster.start_nodes(
        &[(Segment::A, "h1"), (Segment::B, "h2")],
        &[],
        Some(TTL_SECS),
    );
    let driver = our_driver();
    let mut pods = pods_in_full_mesh(&driver, &nodes, "ctr");

    // The ping spans a quiet lead-in, the outage and the recovery.
    let lead_in = Duration::from_secs(3);
    let pinger = Pinger::start(
        &pods[0].netns,
        &pods[1].ip,
        lead_in + OUTAGE + Duration::from_secs(12),
    );
    std::thread::sleep(lead_in);
    let before_outage: Vec<usize> = nodes.iter().map(|n| n.log().len()).collect();
    cluster.etcd.kill().unwrap();
    std::thread::sleep(OUTAGE);
    let before_return: Vec<usize> = nodes.iter().map(|n| n.log().len()).collect();
    for (n, mark) in nodes.iter().zip(&before_outage) {
        let during = log_since(n, *mark);
        assert!(
            during.contains("subnet watch interrupted"),
            "{}: watch failure not logged:\n{during}",
            n.host.netns().name()
        );
        assert!(
            during.contains("Error renewing lease"),
            "{}: failed renewal not logged:\n{during}",
            n.host.netns().name()
        );
        assert!(
            !n.host.netns().pids().is_empty(),
            "{} exited during the outage:\n{}",
            n.host.netns().name(),
            n.log()
        );
    }
    cluster.etcd.restart().unwrap();
    for (n, mark) in nodes.iter().zip(&before_return) {
        assert!(
            eventually(Duration::from_secs(TTL_SECS), || {
                let after = log_since(n, *mark);
                after.contains("subnet watch re-established") && after.contains("Lease renewed")
            }),
            "{}: no reconnect and renewal after etcd came back:\n{}",
            n.host.netns().name(),
            log_since(n, *mark)
        );
    }
    assert_no_loss(pinger.finish(), 200, "pod ping across the etcd outage");
    assert_eq!(cluster.lease_keys().len(), 2);

    // A node joining now is seen by both: routes to it appear and all pods reach each other.
    let mut h3 = start_flanneld(
        cluster.host(Segment::A, "h3"),
        &cluster.etcd,
        &[],
        Some(TTL_SECS),
    );
    h3.wait_ready(START).unwrap();
    pods.push(add_pod(&driver, &h3, "ctr-2"));
    nodes.push(h3);
    for n in &nodes[..2] {
        assert!(
            eventually(Duration::from_secs(10), || !n
                .route_to(nodes[2].subnet().unwrap())
                .is_empty()),
            "{} has no route to the new node",
            n.host.netns().name()
        );
    }
    assert_full_mesh(
        &pods.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
    );
    for n in &mut nodes {
        assert!(n.stop().unwrap().success(), "{}", n.log());
    }
}

/// A pool of exactly two subnets and two daemons released at the same instant: compare-and-
/// swap creation means they never share one, and the loser of a race takes the other.
#[test]
fn simultaneous_starts_never_share_a_subnet() {
    const ROUNDS: usize = 20;
    let pool: BTreeSet<Ipv4Net> = ["10.244.0.16/28", "10.244.0.32/28"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let cluster = Cluster::new(&json!({
        "Network": "10.244.0.0/26",
        "SubnetLen": 28,
        "SubnetMin": "10.244.0.16",
        "SubnetMax": "10.244.0.32",
        "Backend": {"Type": "host-gw"}
    }));
    let started = Instant::now();
    let mut nodes: Vec<Flanneld> = Vec::new();
    let mut races = 0;
    for round in 0..ROUNDS {
        // Every round starts from nothing: no record to reuse by PublicIP, no subnet.env
        // to prefer, so both daemons allocate from the shared pool.
        for n in &mut nodes {
            assert!(n.stop().unwrap().success());
            std::fs::remove_file(n.subnet_file()).unwrap();
        }
        cluster
            .etcd
            .etcdctl(&["del", "--prefix", &format!("{PREFIX}/subnets/")])
            .unwrap();
        let marks: Vec<usize> = nodes.iter().map(|n| n.log().len()).collect();
        {
            let _gate = FrozenEtcd::freeze(&cluster.etcd);
            if nodes.is_empty() {
                nodes = ["h1", "h2"]
                    .into_iter()
                    .map(|tag| {
                        start_flanneld(cluster.host(Segment::A, tag), &cluster.etcd, &[], None)
                    })
                    .collect();
            } else {
                for n in &mut nodes {
                    n.restart().unwrap();
                }
            }
            // Both have built their etcd client (the warning is logged right before the
            // first request) and are waiting on the frozen server.
            for (i, n) in nodes.iter().enumerate() {
                let mark = marks.get(i).copied().unwrap_or(0);
                assert!(
                    eventually(Duration::from_secs(10), || log_since(n, mark)
                        .contains("connecting to etcd with http")),
                    "round {round}: {} did not reach etcd:\n{}",
                    n.host.netns().name(),
                    n.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for n in &mut nodes {
            n.wait_ready(START).unwrap();
        }
        let subnets: Vec<Ipv4Net> = nodes.iter().map(|n| n.subnet().unwrap()).collect();
        assert_ne!(
            subnets[0], subnets[1],
            "round {round}: both got {}",
            subnets[0]
        );
        assert_eq!(
            subnets.iter().copied().collect::<BTreeSet<_>>(),
            pool,
            "round {round}"
        );
        let mut keys = cluster.lease_keys();
        keys.sort();
        let mut expected: Vec<String> = subnets.iter().map(|s| lease_key(*s)).collect();
        expected.sort();
        assert_eq!(keys, expected, "round {round}: etcd records");
        for (n, subnet) in nodes.iter().zip(&subnets) {
            let value = cluster.etcd.get(&lease_key(*subnet)).unwrap().unwrap();
            let attrs: Value = serde_json::from_str(&value).unwrap();
            assert_eq!(
                attrs["PublicIP"],
                n.host.ip().to_string(),
                "round {round}: {value}"
            );
        }
        races += nodes
            .iter()
            .zip(marks.iter().chain(std::iter::repeat(&0)))
            .filter(|(n, mark)| log_since(n, **mark).contains("subnet taken by another node"))
            .count();
    }
    eprintln!(
        "{ROUNDS} rounds in {:?}, {races} lost creation races retried",
        started.elapsed()
    );
    // About a third of the rounds collide (both pick the same subnet before either has
    // created it); none at all would mean the gate no longer releases them together and
    // the rounds above proved nothing about racing.
    assert!(
        races > 0,
        "no round raced; the starting gate is not working"
    );
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "rounds took {:?}",
        started.elapsed()
    );
}

/// SIGTERM ends flanneld with 0 and tears nothing down (as upstream): its device, routes,
/// neighbours, FDB and rules, the peer's entries for it and its etcd record all stay, and a
/// restart takes the same subnet, so pod traffic never notices.
#[test]
fn sigterm_keeps_state_and_restart_never_drops() {
    let cluster = Cluster::new(&vxlan());
    let mut nodes = cluster.start_nodes(
        &[(Segment::A, "h1"), (Segment::B, "h2")],
        &["--ip-masq"],
        None,
    );
    let driver = our_driver();
    let pods = pods_in_full_mesh(&driver, &nodes, "ctr");
    let subnet = nodes[1].subnet().unwrap();
    let record = || cluster.etcd.get(&lease_key(subnet)).unwrap();
    // Settled state: the periodic reconcile must not be mistaken for a change below.
    let peer_before = KernelState::of(&nodes[0].host);
    let own_before = KernelState::of(&nodes[1].host);
    let record_before = record().expect("h2's lease record");
    assert!(peer_before
        .fdb
        .contains(&format!("dst {}", nodes[1].host.ip())));
    assert!(peer_before.routes.contains(&subnet.to_string()));
    assert!(own_before
        .routes
        .contains(&nodes[0].subnet().unwrap().to_string()));
    assert!(own_before
        .rules
        .iter()
        .any(|r| r.starts_with("-A FLANNEL-POSTRTG")));

    let pinger = Pinger::start(&pods[0].netns, &pods[1].ip, Duration::from_secs(12));
    std::thread::sleep(Duration::from_secs(2));
    let status = nodes[1].stop().unwrap();
    assert!(
        status.success(),
        "SIGTERM exit: {status}\n{}",
        nodes[1].log()
    );
    assert!(nodes[1].log().contains("Exiting cleanly"));
    // Long enough for anything a dying daemon might have scheduled to show.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        KernelState::of(&nodes[1].host),
        own_before,
        "own state after SIGTERM"
    );
    assert_eq!(
        KernelState::of(&nodes[0].host),
        peer_before,
        "peer state after SIGTERM"
    );
    assert_eq!(record().as_deref(), Some(record_before.as_str()));

    nodes[1].restart().unwrap();
    nodes[1].wait_ready(START).unwrap();
    assert_eq!(nodes[1].subnet().unwrap(), subnet);
    assert!(nodes[1].log().contains("reusing"), "{}", nodes[1].log());
    assert_eq!(
        KernelState::of(&nodes[1].host),
        own_before,
        "own state after restart"
    );
    assert_eq!(
        KernelState::of(&nodes[0].host),
        peer_before,
        "peer state after restart"
    );
    assert_eq!(
        record().as_deref(),
        Some(record_before.as_str()),
        "same attributes (VtepMAC) after restart"
    );
    assert_no_loss(pinger.finish(), 55, "pod ping across SIGTERM and restart");
}

/// `READY=1` reaches the NOTIFY_SOCKET only once subnet.env is on disk, and only once. It is
/// held back twice: first the config is missing, then subnet.env cannot be written (its
/// directory is a regular file) until the test clears the way and a resync writes it.
#[test]
fn sd_notify_ready_follows_subnet_env() {
    let cluster = Cluster::new(&vxlan());
    cluster.etcd.delete(&config_key()).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("fr-notify-")
        .tempdir()
        .unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let blocker = dir.path().join("run");
    std::fs::write(&blocker, "not a directory").unwrap();
    let subnet_env = blocker.join("subnet.env");
    let mut daemon = Flanneld::etcd(cluster.host(Segment::A, "h1"), &cluster.etcd.endpoint())
        .unwrap()
        .subnet_file_at(subnet_env.clone())
        .args(&["--iptables-resync=1"])
        .env("NOTIFY_SOCKET", &socket_path)
        .start()
        .unwrap();
    let mut buf = [0u8; 256];
    let mut assert_silent = |what: &str| {
        assert!(socket.recv(&mut buf).is_err(), "READY=1 while {what}");
    };
    assert!(
        eventually(Duration::from_secs(20), || daemon
            .log()
            .matches("Couldn't fetch network config")
            .count()
            >= 2),
        "{}",
        daemon.log()
    );
    assert_silent("the config is missing");

    cluster
        .etcd
        .put(&config_key(), &vxlan().to_string())
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || daemon
            .log()
            .contains("Failed to write subnet file")),
        "{}",
        daemon.log()
    );
    // Several resyncs fail to write it in the meantime.
    std::thread::sleep(Duration::from_secs(3));
    assert_silent("subnet.env cannot be written");
    assert!(daemon.is_running());

    std::fs::remove_file(&blocker).unwrap();
    socket.set_nonblocking(false).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let n = socket
        .recv(&mut buf)
        .expect("READY=1 once subnet.env is written");
    // Read the moment the datagram arrives: the file must already be complete.
    let env = std::fs::read_to_string(&subnet_env).expect("subnet.env exists at READY=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim_end(), "READY=1");
    assert!(
        env.starts_with(&format!(
            "FLANNEL_NETWORK={NETWORK}\nFLANNEL_SUBNET=10.244."
        )) && env.ends_with("FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"),
        "{env}"
    );
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert!(
        socket.recv(&mut buf).is_err(),
        "READY=1 sent more than once"
    );
    assert!(daemon.stop().unwrap().success());
}

/// A broken config in etcd is logged with the field at fault and retried every second; the
/// daemon neither exits nor claims a subnet, and comes up as soon as the config is fixed.
#[test]
fn bad_config_is_reported_and_retried_until_fixed() {
    let bad: [(Value, &str); 3] = [
        (
            json!({"Network": "10.244.0.0/33", "Backend": {"Type": "vxlan"}}),
            "invalid CIDR address: 10.244.0.0/33 (in field \"Network\")",
        ),
        (
            json!({"Backend": {"Type": "vxlan"}}),
            "please define a correct Network parameter in the flannel config",
        ),
        (
            json!({"Network": NETWORK, "SubnetLen": 31, "Backend": {"Type": "vxlan"}}),
            "SubnetLen must be less than /31",
        ),
    ];
    let cluster = Cluster::new(&bad[0].0);
    let mut node = start_flanneld(cluster.host(Segment::A, "h1"), &cluster.etcd, &[], None);
    for (config, message) in &bad {
        let mark = node.log().len();
        cluster
            .etcd
            .put(&config_key(), &config.to_string())
            .unwrap();
        // Two reports after the put: it is still retrying, not stuck on the first attempt.
        assert!(
            eventually(Duration::from_secs(10), || {
                log_since(&node, mark)
                    .lines()
                    .filter(|l| l.contains("Couldn't fetch network config") && l.contains(message))
                    .count()
                    >= 2
            }),
            "{config} not reported as {message:?}:\n{}",
            log_since(&node, mark)
        );
        assert!(
            !node.host.netns().pids().is_empty(),
            "flanneld exited on {config}:\n{}",
            node.log()
        );
        assert!(!node.subnet_file().exists());
        assert!(cluster.lease_keys().is_empty());
    }
    cluster
        .etcd
        .put(&config_key(), &vxlan().to_string())
        .unwrap();
    let env = node.wait_ready(START).unwrap();
    assert!(env.contains("FLANNEL_SUBNET=10.244."), "{env}");
    assert_eq!(cluster.lease_keys(), [lease_key(node.subnet().unwrap())]);
    assert!(node.stop().unwrap().success());
}

//! More flanneld faults: SIGKILL (no chance to clean up or flush anything) and restart, and
//! subnet.env deleted under a running daemon. Real etcd, daemons in namespace hosts, pods
//! through libcni.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use conformance::support::flanneld::*;
use conformance::support::flanneld_faults::*;
use conformance::Segment;
use serde_json::json;

/// Pids of the flanneld processes in `node`'s host namespace.
fn flanneld_pids(node: &Flanneld) -> Vec<i32> {
    node.host
        .netns()
        .pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "flanneld")
        })
        .collect()
}

/// SIGKILL leaves the lease in etcd, the routes, fdb and neighbour entries in every kernel
/// and subnet.env on disk. The restarted daemon must take the same subnet (from subnet.env
/// and the record it still owns), rebuild nothing that peers see, and traffic through it
/// must not lose a packet at any point.
#[test]
fn sigkill_and_restart_keep_the_subnet_and_never_drop_a_packet() {
    let cluster = Cluster::new(&json!({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}));
    let mut nodes = cluster.start_nodes(
        &[(Segment::A, "k1"), (Segment::B, "k2")],
        &["--ip-masq"],
        None,
    );
    let driver = our_driver();
    let pods = pods_in_full_mesh(&driver, &nodes, "kill");
    let subnet = nodes[1].subnet().unwrap();
    let keys = cluster.lease_keys();
    let peer_before = KernelState::of(&nodes[0].host);
    let own_before = KernelState::of(&nodes[1].host);
    let env_before = std::fs::read_to_string(nodes[1].subnet_file()).unwrap();

    let pinger = Pinger::start(&pods[0].netns, &pods[1].ip, Duration::from_secs(14));
    std::thread::sleep(Duration::from_secs(2));
    let pids = flanneld_pids(&nodes[1]);
    assert_eq!(pids.len(), 1, "one flanneld on k2");
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(pids[0], libc::SIGKILL) }, 0);
    let gone = Instant::now() + Duration::from_secs(5);
    while !flanneld_pids(&nodes[1]).is_empty() {
        assert!(Instant::now() < gone, "SIGKILLed flanneld still alive");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Down for a while: the data plane must not depend on the daemon being alive.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        KernelState::of(&nodes[0].host),
        peer_before,
        "peer state while k2's daemon is dead"
    );
    assert_eq!(
        KernelState::of(&nodes[1].host),
        own_before,
        "own state while dead"
    );

    nodes[1].restart().unwrap();
    nodes[1].wait_ready(START).unwrap();
    assert_eq!(
        nodes[1].subnet().unwrap(),
        subnet,
        "same subnet after SIGKILL"
    );
    assert_eq!(
        std::fs::read_to_string(nodes[1].subnet_file()).unwrap(),
        env_before
    );
    assert_eq!(cluster.lease_keys(), keys, "no second lease taken");
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
    let stats = pinger.finish();
    assert!(stats.transmitted >= 60, "window not covered: {stats:?}");
    assert_eq!(
        stats.received, stats.transmitted,
        "pings lost across SIGKILL: {stats:?}"
    );
}

/// subnet.env is what every CNI ADD on the node reads: deleted (or replaced) under a running
/// daemon it comes back with the default resync, byte for byte, mode 0644, and CNI works
/// again without a restart.
#[test]
fn subnet_env_deleted_under_a_running_daemon_is_rewritten() {
    let cluster =
        Cluster::new(&json!({"Network": "10.245.0.0/16", "Backend": {"Type": "host-gw"}}));
    let mut node = start_flanneld(cluster.host(Segment::A, "s1"), &cluster.etcd, &[], None);
    let env = node.wait_ready(START).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(node.subnet_file()), 0o644);

    std::fs::remove_file(node.subnet_file()).unwrap();
    let deleted = Instant::now();
    // Default --iptables-resync is 5 s; two periods is the bound.
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(
            node.subnet_file()
        )
        .is_ok_and(|t| t == env)),
        "subnet.env not rewritten:\n{}",
        node.log()
    );
    eprintln!(
        "subnet.env rewritten {:?} after deletion",
        deleted.elapsed()
    );
    assert_eq!(mode(node.subnet_file()), 0o644);

    // Overwritten with garbage (a half-copied backup, say): also put back.
    std::fs::write(node.subnet_file(), "FLANNEL_NETWORK=garbage\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_to_string(
            node.subnet_file()
        )
        .is_ok_and(|t| t == env)),
        "corrupted subnet.env not repaired:\n{}",
        node.log()
    );
    let pod = add_pod(&our_driver(), &node, "after-rewrite");
    let subnet = node.subnet().unwrap();
    assert!(
        subnet.contains(&pod.ip.parse::<std::net::Ipv4Addr>().unwrap()),
        "{} outside {subnet}",
        pod.ip
    );
}

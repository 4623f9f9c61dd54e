//! NetworkPolicy over the other backends: host-gw (routes via the peer's address on one
//! segment), udp (pod packets through flanneld's TUN device `flannel0` in user space) and
//! wireguard (this kernel has no module: the userspace engine on `flannel-wg`).
//! Pod traffic enters and leaves every node through the IP forward hook whatever carries it
//! between nodes, so a selection of the e2e cases (ingress, egress, ports, named ports,
//! namespaces, CIDR blocks, same-node and cross-node pairs) must hold on each. A dual-stack
//! cluster checks the same cases over IPv6 (and IPv4 again, on the same table).

use conformance::support::netpol::Cluster;
use conformance::Segment;

const SELECTION: &[&str] = &[
    "default-deny-all",
    "only from a pod in a different namespace",
    "ports",
    "ingress on one named port",
    "egress to one UDP port only",
    "egress to a server in a CIDR block",
    "deny ingress from pods in other namespaces",
];

fn run(backend: &str, segments: [Segment; 2]) {
    let mut c = Cluster::start_on(backend, &[], segments);
    let failed = c.run_cases(Some(SELECTION));
    assert!(
        failed.is_empty(),
        "{backend}: {} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn host_gw() {
    run("host-gw", [Segment::A, Segment::A]);
}

#[test]
fn udp() {
    run("udp", [Segment::A, Segment::B]);
}

#[test]
fn wireguard() {
    run("wireguard", [Segment::A, Segment::B]);
}

#[test]
fn dual_stack_vxlan_enforces_ipv6_too() {
    let mut c = Cluster::start_dual_stack("vxlan");
    assert!(c.pods.iter().all(|p| p.ip6.is_some()));
    let mut failed = Vec::new();
    for v6 in [true, false] {
        c.probe_v6 = v6;
        for f in c.run_cases(Some(
            &[SELECTION, &["except clause of a CIDR block"]].concat(),
        )) {
            failed.push(format!("{}: {f}", if v6 { "IPv6" } else { "IPv4" }));
        }
    }
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

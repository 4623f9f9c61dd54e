//! NetworkPolicy enforced by our flanneld, checked the way Kubernetes' e2e netpol suite checks
//! a network plugin (`test/e2e/network/netpol/network_policy.go`): namespaces x, y, z with
//! pods a, b, c, here spread over two nodes joined by the real CNI chain and a vxlan overlay
//! across a router, and for every case the whole 9×9 matrix probed by real connections on
//! TCP and UDP ports 80 and 81. The cases are e2e's (adding endPort, a UDP-only egress port,
//! a UDP named port and a pod recreated with a new address); the expectations are e2e's
//! truth tables, extended to the probes e2e does not run for that case. This kernel has no
//! SCTP, so SCTP appears only in policies, where e2e's two "SCTP must not mean TCP" cases
//! check that it allows nothing else.
//!
//! One cluster serves every case, in order; between cases every policy is deleted and every
//! label restored, and the next case starts once both nodes report that enforced (the only
//! thing `/status` is read for).

use conformance::support::netpol::cases::{all, same, CASES};
use conformance::support::netpol::{Cluster, PROBES};

#[test]
fn e2e_netpol_cases_over_two_nodes() {
    assert!(CASES.len() >= 30);
    let mut c = Cluster::start("vxlan", &[]);
    let mut failed = c.run_cases(None);
    // Every case ended with the policies deleted: everything reaches everything again.
    if let Err(e) = c.check(&*same(all()), &PROBES) {
        failed.push(format!("after the last case:\n{e}"));
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        CASES.len(),
        failed.join("\n")
    );
}

//! The bed's reachability probes: servers answer TCP and UDP on both address families, probes
//! tell an answer from a dropped packet, and many run at once.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use conformance::reach::{probe_all, Proto, Servers};
use conformance::{Segment, Underlay};

#[test]
fn probes_see_answers_and_drops() {
    let underlay = Underlay::new().unwrap();
    let a = underlay.add_host(Segment::A, "ra").unwrap();
    let b = underlay.add_host(Segment::B, "rb").unwrap();
    let _servers = [
        Servers::start(a.netns(), &[80, 81]).unwrap(),
        Servers::start(b.netns(), &[80, 81]).unwrap(),
    ];
    let sources = [a.netns(), b.netns()];
    let targets: Vec<IpAddr> = vec![a.ip().into(), b.ip().into()];
    let short = Duration::from_millis(700);
    for proto in [Proto::Tcp, Proto::Udp] {
        let m = probe_all(
            &sources,
            &targets,
            proto,
            80,
            Duration::from_secs(5),
            |i, j| i == j,
        );
        assert_eq!(m, [[None, Some(true)], [Some(true), None]], "{proto}");
    }
    // b drops what arrives for port 81 over UDP and TCP from a.
    b.netns()
        .exec_ok(&[
            "nft",
            "add table inet t; add chain inet t in { type filter hook input priority 0; }; add rule inet t in th dport 81 drop",
        ])
        .unwrap();
    let started = Instant::now();
    for proto in [Proto::Tcp, Proto::Udp] {
        let m = probe_all(&sources, &targets, proto, 81, short, |i, j| i == j);
        assert_eq!(m, [[None, Some(false)], [Some(true), None]], "{proto}");
    }
    // Denied probes wait out the timeout once, in parallel, not once per pair.
    assert!(started.elapsed() < Duration::from_secs(20));
    // Many at once: 40 sources' worth of probes to both targets.
    let many = vec![a.netns(); 40];
    let m = probe_all(
        &many,
        &targets[1..],
        Proto::Udp,
        80,
        Duration::from_secs(5),
        |_, _| false,
    );
    assert!(m.iter().all(|r| r == &[Some(true)]), "{m:?}");
}

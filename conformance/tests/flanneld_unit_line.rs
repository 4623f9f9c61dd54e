//! The systemd unit line of countless flannel tutorials, verbatim:
//!
//! `flanneld --ip-masq --etcd-endpoints=https://<etcd>:2379 -etcd-cafile=<ca> -etcd-certfile=<crt> -etcd-keyfile=<key>`
//!
//! against an etcd that requires client certificates (a throw-away CA made by openssl), on
//! three hosts whose only other setting is the unit's `EnvironmentFile`-style
//! `FLANNELD_SUBNET_FILE`. The external interface comes from the default route, as on a real
//! host. Pods on all three ping each other across vxlan.

use std::net::IpAddr;
use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::{Etcd, EtcdOptions, FileNaming, Segment, TestCa, Underlay};
use serde_json::json;

const NETWORK: &str = "10.244.0.0/16";

#[test]
fn the_tutorial_unit_line_with_tls_etcd_meshes_three_hosts() {
    let underlay = Underlay::new().unwrap();
    let etcd_ip = Segment::A.router_ip();
    let pki = tempfile::tempdir().unwrap();
    // Files named as in the tutorials (cfssl's convention).
    let ca = TestCa::with_naming(pki.path(), "fr-unit-ca", FileNaming::Pem).unwrap();
    let server = ca
        .issue(
            "etcd",
            &format!("subjectAltName=IP:{etcd_ip}\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
    let (node_cert, node_key) = ca.issue("server", "extendedKeyUsage=clientAuth\n").unwrap();
    let tls = ca.mutual_etcd_tls(server, (node_cert.clone(), node_key.clone()));
    let etcd = Etcd::start(EtcdOptions::in_netns(underlay.router(), IpAddr::V4(etcd_ip)).tls(tls))
        .unwrap();
    etcd.put(
        &format!("{PREFIX}/config"),
        &json!({"Network": NETWORK, "Backend": {"Type": "vxlan"}}).to_string(),
    )
    .unwrap();

    let unit_line: Vec<String> = vec![
        "--ip-masq".into(),
        format!("--etcd-endpoints=https://{etcd_ip}:2379"),
        format!("-etcd-cafile={}", ca.cert().display()),
        format!("-etcd-certfile={}", node_cert.display()),
        format!("-etcd-keyfile={}", node_key.display()),
    ];
    let mut nodes: Vec<Flanneld> = [
        (Segment::A, "uh1"),
        (Segment::A, "uh2"),
        (Segment::B, "uh3"),
    ]
    .into_iter()
    .map(|(seg, tag)| {
        let host = underlay.add_host(seg, tag).unwrap();
        // A real host has a default route; flanneld picks its interface from it.
        host.netns()
            .exec_ok(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &seg.router_ip().to_string(),
            ])
            .unwrap();
        // Exactly the unit line: no flag of the harness's own.
        Flanneld::bare(host)
            .unwrap()
            .args(&unit_line)
            .start()
            .unwrap()
    })
    .collect();
    let mut subnets = Vec::new();
    for n in &mut nodes {
        let env = n.wait_ready(START).unwrap();
        assert!(
            env.starts_with(&format!(
                "FLANNEL_NETWORK={NETWORK}\nFLANNEL_SUBNET=10.244."
            )) && env.ends_with("/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"),
            "{env}"
        );
        let log = n.log();
        assert!(
            !log.contains("connecting to etcd with http"),
            "TLS was not used:\n{log}"
        );
        let subnet = env
            .lines()
            .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
            .unwrap()
            .to_owned();
        subnets.push(subnet);
    }
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 3, "{subnets:?}");
    let leases = etcd.keys(LEASES_PREFIX).unwrap();
    assert_eq!(leases.len(), 3, "{leases:?}");

    // --ip-masq took effect on every host.
    for n in &nodes {
        let nat = n
            .host
            .netns()
            .exec_ok(&["iptables-save", "-t", "nat"])
            .unwrap();
        assert!(nat.contains("-A FLANNEL-POSTRTG"), "{nat}");
    }

    let driver = our_driver();
    let pods: Vec<Pod> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| add_pod(&driver, n, &format!("unit-ctr-{i}")))
        .collect();
    for a in &pods {
        for b in &pods {
            if a.ip != b.ip {
                assert!(
                    eventually(Duration::from_secs(20), || pings(&a.netns, &b.ip)),
                    "{} cannot reach {}",
                    a.ip,
                    b.ip
                );
            }
        }
    }
}

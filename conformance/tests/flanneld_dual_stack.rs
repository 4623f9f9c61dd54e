//! Dual stack: each family's subnet has one holder.
//!
//! The field report: three dual-stack nodes started together on one etcd; etcd then held
//! `10.244.53.0-24&fc00:10:0:2b::-64` and `10.244.53.0-24&fc00:10:0:40::-64`, and pods across
//! that pair stopped reaching each other. Here three dual-stack hosts (IPv6 on the underlay
//! too) start together, round after round, on pools so small that their random picks collide;
//! no two may share an IPv4 or an IPv6 subnet, and pods reach each other over both families.
//! Records written the way an upstream node writes them (it checks only the whole key) are
//! resolved: the older record keeps the subnet on every node, and a flannel-rs node holding
//! the newer one moves.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::{Driver, Host, Netns, Segment};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{json, Value};

/// Four subnets of each family for three nodes: random picks collide often.
fn net_conf() -> Value {
    json!({
        "Network": "10.244.0.0/16", "SubnetMin": "10.244.1.0", "SubnetMax": "10.244.4.0",
        "EnableIPv6": true, "IPv6Network": "fc00:10::/48",
        "IPv6SubnetMin": "fc00:10:0:1::", "IPv6SubnetMax": "fc00:10:0:4::",
        "Backend": {"Type": "vxlan"}
    })
}

const ROUNDS: usize = 12;

fn underlay_v6(host: &Host) -> Ipv6Addr {
    let [.., last] = host.ip().octets();
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, u16::from(last))
}

/// A host on segment A with an IPv6 address on its underlay link too.
fn dual_host(cluster: &Cluster, tag: &str) -> Host {
    let host = cluster.host(Segment::A, tag);
    let addr = format!("{}/64", underlay_v6(&host));
    host.netns()
        .exec_ok(&["ip", "-6", "addr", "add", &addr, "dev", "eth0", "nodad"])
        .unwrap();
    host
}

/// The IPv6 lease network from subnet.env.
fn subnet6(node: &Flanneld) -> Ipv6Net {
    let text = std::fs::read_to_string(node.subnet_file()).expect("subnet.env");
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_IPV6_SUBNET="))
        .unwrap_or_else(|| panic!("no FLANNEL_IPV6_SUBNET in {text}"));
    v.parse::<Ipv6Net>().unwrap().trunc()
}

/// The (IPv4, IPv6) subnets of a lease key (`…/10.244.1.0-24&fc00:10:0:1::-64`).
fn parse_key(key: &str) -> (Ipv4Net, Option<Ipv6Net>) {
    let last = key.rsplit('/').next().unwrap();
    let (v4, v6) = match last.split_once('&') {
        Some((a, b)) => (a, Some(b)),
        None => (last, None),
    };
    let cidr = |s: &str| {
        let (ip, len) = s.rsplit_once('-').expect("a lease key");
        format!("{ip}/{len}")
    };
    (
        cidr(v4).parse().unwrap(),
        v6.map(|b| cidr(b).parse().unwrap()),
    )
}

/// The (IPv4, IPv6) subnets of every record in etcd.
fn records(cluster: &Cluster) -> Vec<(Ipv4Net, Option<Ipv6Net>)> {
    cluster.lease_keys().iter().map(|k| parse_key(k)).collect()
}

fn assert_unique(cluster: &Cluster, nodes: &[Flanneld], round: usize) {
    let recs = records(cluster);
    let v4: BTreeSet<_> = recs.iter().map(|r| r.0).collect();
    let v6: BTreeSet<_> = recs.iter().filter_map(|r| r.1).collect();
    assert_eq!(recs.len(), nodes.len(), "round {round}: {recs:?}");
    assert_eq!(
        (v4.len(), v6.len()),
        (3, 3),
        "round {round}: etcd holds {recs:?}"
    );
    let held: BTreeSet<_> = nodes
        .iter()
        .map(|n| (n.subnet().unwrap(), subnet6(n)))
        .collect();
    assert_eq!(held.len(), 3, "round {round}: {held:?}");
    for n in nodes {
        let log = n.log();
        assert!(!log.contains("invalid argument"), "round {round}:\n{log}");
        assert!(!log.contains("also held by"), "round {round}:\n{log}");
    }
}

/// A pod with both families; returns its netns and its (IPv4, IPv6) addresses.
fn dual_pod(driver: &Driver, node: &Flanneld, id: &str) -> (Netns, String, String) {
    let (netns, result) = attach(driver, &node.conflist(), &node.host, id);
    let ip = |i: usize| {
        let cidr = result["ips"][i]["address"].as_str().expect("an address");
        cidr.split('/').next().unwrap().to_owned()
    };
    let (a, b) = (ip(0), ip(1));
    if a.contains(':') {
        (netns, b, a)
    } else {
        (netns, a, b)
    }
}

fn pings6(from: &Netns, to: &str) -> bool {
    from.exec(&["ping", "-6", "-c", "1", "-W", "1", to])
        .status
        .success()
}

fn assert_dual_mesh(driver: &Driver, nodes: &[Flanneld], round: usize) {
    let pods: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| dual_pod(driver, n, &format!("ds{round}-{i}")))
        .collect();
    for (a, a4, _) in &pods {
        for (_, b4, b6) in &pods {
            if a4 == b4 {
                continue;
            }
            assert!(
                eventually(Duration::from_secs(30), || pings(a, b4)),
                "round {round}: {a4} cannot reach {b4}"
            );
            assert!(
                eventually(Duration::from_secs(30), || pings6(a, b6)),
                "round {round}: {a4} cannot reach {b6} over IPv6"
            );
        }
    }
    for (i, (n, (netns, ..))) in nodes.iter().zip(pods).enumerate() {
        driver
            .del(
                &n.conflist(),
                n.host.netns(),
                &netns,
                "eth0",
                &format!("ds{round}-{i}"),
                None,
            )
            .unwrap();
    }
}

#[test]
fn three_dual_stack_hosts_started_together_never_share_a_subnet() {
    let cluster = Cluster::new(&net_conf());
    let mut nodes: Vec<Flanneld> = ["dsa", "dsb", "dsc"]
        .into_iter()
        .map(|tag| {
            let host = dual_host(&cluster, tag);
            start_flanneld(host, &cluster.etcd, &["--ip-masq"], None)
        })
        .collect();
    let driver = our_driver();
    for round in 0..ROUNDS {
        if round > 0 {
            for n in &mut nodes {
                n.stop().unwrap();
            }
            // A fresh cluster each round: no records, no claims, no subnet.env to reuse.
            for dir in ["subnets/", "claims/"] {
                cluster
                    .etcd
                    .etcdctl(&["del", "--prefix", &format!("{PREFIX}/{dir}")])
                    .unwrap();
            }
            for n in &mut nodes {
                // As after a reboot: the bridge of the last round's pods, with its old
                // gateway addresses, is gone too.
                let _ = n.host.netns().exec(&["ip", "link", "del", "cni0"]);
                let _ = std::fs::remove_file(n.subnet_file());
                n.restart().unwrap();
            }
        }
        for n in &mut nodes {
            n.wait_ready(START).unwrap();
        }
        assert_unique(&cluster, &nodes, round);
        if round == 0 || round == ROUNDS - 1 {
            assert_dual_mesh(&driver, &nodes, round);
        }
    }
}

/// A record as an upstream flanneld writes it: the whole key checked, nothing else.
fn upstream_record(cluster: &Cluster, key: &str, public_ip: &str, mac: &str) {
    let value = json!({"PublicIP": public_ip, "PublicIPv6": "fd00:1::c8", "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": mac},
        "BackendV6Data": {"VNI": 1, "VtepMAC": mac}});
    let lease = cluster.etcd.etcdctl(&["lease", "grant", "600"]).unwrap();
    let id = lease.split_whitespace().nth(1).expect("lease id");
    cluster
        .etcd
        .etcdctl(&[
            "put",
            "--lease",
            id,
            "--",
            &format!("{PREFIX}/subnets/{key}"),
            &value.to_string(),
        ])
        .unwrap();
}

fn neigh(node: &Flanneld, ip: &str, dev: &str) -> String {
    let out = node
        .host
        .netns()
        .exec(&["ip", "neigh", "show", ip, "dev", dev]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_subnet_shared_with_an_upstream_record_goes_to_the_older() {
    let cluster = Cluster::new(&json!({
        "Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fc00:10::/48",
        "Backend": {"Type": "vxlan"}
    }));
    let hosts = [dual_host(&cluster, "dua"), dual_host(&cluster, "dub")];
    // A record of ours that an older upstream record already shares (written before the fix,
    // or by an upstream node racing ours): node A holds the newer one and must move.
    upstream_record(
        &cluster,
        "10.244.2.0-24&fc00:10:0:5::-64",
        "192.168.1.200",
        "02:00:00:00:02:00",
    );
    let ours = json!({"PublicIP": hosts[0].ip().to_string(), "PublicIPv6": underlay_v6(&hosts[0]).to_string(),
        "BackendType": "vxlan"});
    cluster
        .etcd
        .put(
            &format!("{PREFIX}/subnets/10.244.2.0-24&fc00:10:0:9::-64"),
            &ours.to_string(),
        )
        .unwrap();
    let mut nodes: Vec<Flanneld> = hosts
        .into_iter()
        .map(|h| start_flanneld(h, &cluster.etcd, &["--ip-masq"], None))
        .collect();
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(60), || {
            nodes[0].log().contains(
            "is also held by 10.244.2.0-24&fc00:10:0:5::-64 (192.168.1.200), an older record: this node moves to another subnet"
        )
        }),
        "{}",
        nodes[0].log()
    );
    assert!(
        eventually(Duration::from_secs(60), || nodes[0]
            .subnet()
            .unwrap()
            .to_string()
            != "10.244.2.0/24"),
        "{}",
        nodes[0].log()
    );
    assert!(!cluster
        .lease_keys()
        .iter()
        .any(|k| k.ends_with("10.244.2.0-24&fc00:10:0:9::-64")));
    // B routes 10.244.2.0/24 to the upstream record's VTEP, never to A's stale claim.
    assert!(
        eventually(Duration::from_secs(30), || neigh(
            &nodes[1],
            "10.244.2.0",
            "flannel.1"
        )
        .contains("02:00:00:00:02:00")),
        "{}",
        nodes[1].log()
    );

    // Now an upstream node writes a record sharing B's IPv4 subnet after B's: B keeps it, A
    // keeps routing it to B, and each says so once.
    let b = nodes[1].subnet().unwrap();
    let key = format!("{}-{}&fc00:10:0:77::-64", b.addr(), b.prefix_len());
    upstream_record(&cluster, &key, "192.168.1.201", "02:00:00:00:02:01");
    let b_mac = {
        let out = nodes[1]
            .host
            .netns()
            .exec(&["cat", "/sys/class/net/flannel.1/address"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for n in &nodes {
        assert!(
            eventually(Duration::from_secs(30), || n.log().contains(&key)),
            "{}",
            n.log()
        );
    }
    assert!(
        nodes[1]
            .log()
            .contains("a newer record: this node keeps it"),
        "{}",
        nodes[1].log()
    );
    assert_eq!(
        nodes[1].subnet().unwrap(),
        b,
        "the older record's node stays"
    );
    assert!(nodes[0]
        .log()
        .contains(&format!("routing it to {}", nodes[1].host.ip())));
    let seen = neigh(&nodes[0], &b.network().to_string(), "flannel.1");
    assert!(
        seen.contains(&b_mac),
        "A's neighbour for {b}: {seen:?}, B's VTEP MAC {b_mac}\n{}",
        nodes[0].log()
    );
    pods_in_full_mesh(&our_driver(), &nodes, "du");
}

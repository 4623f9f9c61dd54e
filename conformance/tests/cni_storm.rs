//! A CNI storm on one flannel node: 64 pods added at once through libcni with the
//! kube-flannel chain (flannel → bridge + host-local, then portmap with one host port per
//! pod), then all deleted at once, three rounds on the same node. Every call must succeed,
//! no IP may be handed out twice, and each round must leave the node exactly as the
//! first one did: no veth, no IP reservation, no saved flannel config, no per-pod iptables
//! rule, no libcni cache entry.

use std::collections::BTreeSet;
use std::path::Path;

use conformance::support::flannel::*;
use conformance::{CniFailure, Driver, Impl, Netns};
use serde_json::{json, Value};

const PODS: usize = 64;
const ROUNDS: usize = 3;
const FIRST_HOST_PORT: u16 = 20000;

fn host_port(i: usize) -> u16 {
    FIRST_HOST_PORT + i as u16
}

fn caps(i: usize) -> Value {
    json!({"portMappings": [{"hostPort": host_port(i), "containerPort": 80, "protocol": "tcp"}]})
}

fn container_id(round: usize, i: usize) -> String {
    format!("storm-r{round}-{i}")
}

/// Every table's rules and chains without counters, sorted, for comparing two states.
fn firewall(host: &Netns) -> Vec<String> {
    let mut lines = Vec::new();
    for table in ["nat", "filter", "mangle"] {
        for line in host.iptables_save(table).unwrap().lines() {
            if line.starts_with('#') {
                continue;
            }
            lines.push(format!(
                "{table}: {}",
                line.split(" [").next().unwrap_or(line)
            ));
        }
    }
    lines.sort();
    lines
}

fn entries(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `verb` for every pod at once, each on its own thread; the results in pod order, or
/// every failure in one message.
fn on_all_pods<T: Send>(
    pods: &[Netns],
    round: usize,
    what: &str,
    verb: impl Fn(usize, &Netns) -> Result<T, CniFailure> + Sync,
) -> Vec<T> {
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let verb = &verb;
                s.spawn(move || verb(i, pod))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("CNI thread"))
            .collect()
    });
    let failures: Vec<String> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.as_ref().err().map(|e| format!("pod {i}: {e:?}")))
        .collect();
    assert!(
        failures.is_empty(),
        "round {round}: {} {what}s failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    outcomes.into_iter().map(Result::unwrap).collect()
}

fn add_all(driver: &Driver, conf: &str, host: &Netns, pods: &[Netns], round: usize) -> Vec<Value> {
    on_all_pods(pods, round, "ADD", |i, pod| {
        driver.add(
            conf,
            host,
            pod,
            "eth0",
            &container_id(round, i),
            Some(&caps(i)),
        )
    })
}

fn del_all(driver: &Driver, conf: &str, host: &Netns, pods: &[Netns], round: usize) {
    on_all_pods(pods, round, "DEL", |i, pod| {
        driver.del(
            conf,
            host,
            pod,
            "eth0",
            &container_id(round, i),
            Some(&caps(i)),
        )
    });
}

/// What a round must have built while its pods are up.
fn assert_all_attached(node: &Node, host: &Netns, results: &[Value], round: usize) {
    let ips: BTreeSet<String> = results.iter().map(first_ip).collect();
    assert_eq!(
        ips.len(),
        PODS,
        "round {round}: duplicate IPs handed out: {ips:?}"
    );
    for ip in &ips {
        assert!(
            ip.starts_with("10.244.1.") && ip.ends_with("/24"),
            "{ip} not in {SUBNET}"
        );
        assert_ne!(
            ip,
            &format!("{GATEWAY}/24"),
            "a pod got the gateway address"
        );
    }
    assert_eq!(
        node.reserved_ips().len(),
        PODS,
        "round {round}: host-local reservations"
    );
    assert_eq!(
        entries(&node.data_dir()).len(),
        PODS,
        "round {round}: flannel saved configs"
    );
    assert_eq!(
        host.links_of_kind("veth").unwrap().len(),
        PODS,
        "round {round}: host veths"
    );
    let nat = nat_rules(host);
    for i in 0..PODS {
        let dport = format!("--dport {} -j DNAT", host_port(i));
        assert_eq!(
            nat.iter()
                .filter(|l| l.starts_with("-A CNI-DN-") && l.contains(&dport))
                .count(),
            1,
            "round {round}: DNAT rule for pod {i}'s host port:\n{nat:#?}"
        );
    }
}

/// What must be gone once a round's pods are deleted; `baseline` is the firewall after the
/// first round, which every later round must reproduce exactly.
fn assert_nothing_left(
    node: &Node,
    host: &Netns,
    driver: &Driver,
    round: usize,
    baseline: &mut Option<Vec<String>>,
) {
    assert!(
        host.links_of_kind("veth").unwrap().is_empty(),
        "round {round}: veths left"
    );
    assert!(
        node.reserved_ips().is_empty(),
        "round {round}: IPs left reserved: {:?}",
        node.reserved_ips()
    );
    assert!(
        entries(&node.data_dir()).is_empty(),
        "round {round}: flannel dataDir: {:?}",
        entries(&node.data_dir())
    );
    let cached = entries(&driver.cache_dir().join("results"));
    assert!(cached.is_empty(), "round {round}: libcni cache: {cached:?}");
    let fw = firewall(host);
    let per_pod: Vec<&String> = fw
        .iter()
        .filter(|l| l.contains("CNI-DN-") || l.contains("storm-r") || l.contains("10.244.1."))
        .collect();
    assert!(
        per_pod.is_empty(),
        "round {round}: per-pod rules left: {per_pod:#?}"
    );
    match baseline {
        None => *baseline = Some(fw),
        Some(first) => assert_eq!(
            &fw, first,
            "round {round} left a different firewall than round 1"
        ),
    }
}

#[test]
fn sixty_four_pods_at_once_through_the_flannel_chain_three_rounds() {
    let node = Node::new();
    let driver = driver(&all(Impl::Ours));
    let host = ns("shost");
    let conf = node.conflist("1.0.0");
    let mut baseline = None;
    for round in 1..=ROUNDS {
        let pods: Vec<Netns> = (0..PODS).map(|_| ns("spod")).collect();
        let results = add_all(&driver, &conf, &host, &pods, round);
        assert_all_attached(&node, &host, &results, round);
        del_all(&driver, &conf, &host, &pods, round);
        assert_nothing_left(&node, &host, &driver, round, &mut baseline);
    }
}

//! The `inet flannel-netpol` table against the real nft and kernel, in throw-away namespaces:
//! every rule form the compiler writes is accepted (IPv4 and IPv6, ranges, named ports,
//! SCTP, ipBlocks with excepts); a chain of differences leaves exactly what a whole-table
//! write of the final state leaves; a pod change is elements only; a failed or drifted
//! table is written whole again; the drop counters can be read; `--network-policy` off
//! removes the table.

use std::collections::BTreeMap;
use std::net::IpAddr;

use conformance::Netns;
use flanneld::netpol::ruleset::{diff_script, TABLE};
use flanneld::netpol::table::{remove_leftover, Table};
use flanneld::netpol::{compile, Cluster, Families, PodInfo, Policy, PolicyKey, Protocol};
use serde_json::{json, Value};

const BOTH: Families = Families { v4: true, v6: true };

fn in_ns<R>(ns: &Netns, f: impl FnOnce() -> R) -> R {
    netops::netns::run_in(ns.path(), f).expect("enter test namespace")
}

fn pod(node: &str, name: &str, n: u8) -> PodInfo {
    let ips: Vec<IpAddr> = vec![
        format!("10.244.{}.{n}", n % 2 + 1).parse().unwrap(),
        format!("fd00:{}::{n}", n % 2 + 1).parse().unwrap(),
    ];
    let ports = [
        ("serve-80-tcp", Protocol::Tcp, 80),
        ("serve-81-udp", Protocol::Udp, 81),
    ];
    PodInfo::running(node, &[("pod", name)], &ips, &ports)
}

fn cluster() -> Cluster {
    let mut c = Cluster::default();
    let mut n = 0;
    for ns in ["x", "y", "z"] {
        for name in ["a", "b", "c"] {
            n += 1;
            c.put_pod(ns, name, pod(if n % 2 == 0 { "n1" } else { "n2" }, name, n));
        }
    }
    c
}

fn add_policy(c: &mut Cluster, ns: &str, name: &str, spec: Value) {
    let key = PolicyKey {
        namespace: ns.into(),
        name: name.into(),
    };
    c.policies.insert(key.clone(), Policy::parse(key, &spec));
}

/// Every rule form the compiler writes.
fn rich(c: &mut Cluster) {
    add_policy(
        c,
        "x",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    );
    add_policy(
        c,
        "x",
        "mixed",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}, "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]}},
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.2.0/24", "10.244.1.7/32"]}},
                {"ipBlock": {"cidr": "fd00::/16", "except": ["fd00:2::/64"]}}],
              "ports": [{"port": 80}, {"protocol": "UDP", "port": 81, "endPort": 90},
                        {"port": "serve-80-tcp"}, {"protocol": "SCTP", "port": 80}, {"protocol": "UDP"}]}],
            "egress": [{"to": [{"podSelector": {}}], "ports": [{"protocol": "UDP", "port": "serve-81-udp"}]},
                       {"ports": [{"port": "serve-80-tcp"}]},
                       {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "serve-80-tcp"}]}]}),
    );
    add_policy(
        c,
        "y",
        "allow-all",
        json!({"podSelector": {}, "ingress": [{}], "egress": [{}]}),
    );
    add_policy(
        c,
        "z",
        "broken",
        json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Like", "values": ["a"]}]}}),
    );
}

/// The table as the kernel lists it, independent of rule handles and element order.
fn kernel_view(ns: &Netns) -> BTreeMap<String, Vec<String>> {
    let out = ns
        .exec_ok(&["nft", "-j", "list", "table", "inet", TABLE])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut view: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in v["nftables"].as_array().unwrap() {
        if let Some(set) = item.get("set") {
            let mut elems: Vec<String> = set["elem"]
                .as_array()
                .map(|a| a.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            elems.sort();
            view.insert(format!("set {} {}", set["name"], set["type"]), elems);
        }
        if let Some(rule) = item.get("rule") {
            view.entry(format!("chain {}", rule["chain"]))
                .or_default()
                .push(rule["expr"].to_string());
        }
        if let Some(chain) = item.get("chain") {
            view.entry(format!("chain {}", chain["name"])).or_default();
        }
    }
    view
}

/// Rules (`"chain"`) or set elements (`"set"`) in a kernel view.
fn count(view: &BTreeMap<String, Vec<String>>, what: &str) -> usize {
    view.iter()
        .filter(|(k, _)| k.starts_with(what))
        .map(|(_, v)| v.len())
        .sum()
}

#[test]
fn every_rule_form_is_accepted_and_matches_the_compiled_counts() {
    let ns = Netns::new("npt").unwrap();
    let mut c = cluster();
    rich(&mut c);
    let compiled = compile(&c, "n1", BOTH);
    let (rules, elements) = (
        compiled.ruleset.rule_count(),
        compiled.ruleset.element_count(),
    );
    let mut table = Table::new();
    let applied = in_ns(&ns, || table.apply(compiled.ruleset)).unwrap();
    assert!(applied.full && applied.changed);
    let view = kernel_view(&ns);
    assert_eq!(count(&view, "chain"), rules);
    // Interval sets may list a range as one element; every element made it either way.
    let kernel_elements = count(&view, "set");
    assert!(
        kernel_elements > 0 && kernel_elements <= elements,
        "{kernel_elements} vs {elements}"
    );
    let text = ns
        .exec_ok(&["nft", "list", "table", "inet", TABLE])
        .unwrap();
    for want in [
        "type filter hook forward priority filter; policy accept;",
        "type filter hook input priority filter; policy accept;",
        "ct state established,related accept",
        "udp dport 81-90 return comment \"x/mixed\"",
        "sctp dport 80 return comment \"x/mixed\"",
        "counter name \"denied-ingress\" drop",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Nothing changed: nothing is sent.
    let again = in_ns(&ns, || table.apply(compile(&c, "n1", BOTH).ruleset)).unwrap();
    assert!(!again.changed);
    let counters = in_ns(&ns, || {
        netops::firewall::nft::list_counters(netops::firewall::nft::TableFamily::Inet, TABLE)
    })
    .unwrap();
    let names: Vec<&str> = counters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["denied-ingress", "denied-egress"]);
}

#[test]
fn differences_leave_what_a_whole_write_leaves() {
    let (stepped, fresh) = (Netns::new("npd").unwrap(), Netns::new("npf").unwrap());
    let mut c = cluster();
    let mut table = Table::new();
    let mut step = |c: &Cluster, what: &str| {
        let wanted = compile(c, "n1", BOTH).ruleset;
        let script = table
            .installed()
            .map(|old| diff_script(old, &wanted))
            .unwrap_or_default();
        let applied =
            in_ns(&stepped, || table.apply(wanted)).unwrap_or_else(|e| panic!("{what}: {e}"));
        (applied, script)
    };
    step(&c, "start");
    rich(&mut c);
    let (applied, _) = step(&c, "policies added");
    assert!(!applied.full && applied.changed);
    // Pods coming, going and being relabelled: element commands only.
    c.put_pod("x", "new", pod("n1", "a", 77));
    c.remove_pod("y", "b");
    c.pods
        .get_mut("x")
        .unwrap()
        .get_mut("c")
        .unwrap()
        .labels
        .insert("pod".into(), "a".into());
    let (_, script) = step(&c, "pods changed");
    assert!(!script.is_empty());
    assert!(script.lines().all(|l| l.contains(" element ")), "{script}");
    // A policy changed and one deleted: sets that lose their last user are deleted.
    add_policy(
        &mut c,
        "x",
        "mixed",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    c.policies.retain(|k, _| k.name != "allow-all");
    let (_, script) = step(&c, "policies changed");
    assert!(
        script.contains("flush chain") && script.contains("delete set"),
        "{script}"
    );
    // The last pod of a namespace gone, all policies gone.
    c.pods.remove("z");
    c.policies.clear();
    step(&c, "policies cleared");

    let mut whole = Table::new();
    in_ns(&fresh, || whole.apply(compile(&c, "n1", BOTH).ruleset)).unwrap();
    assert_eq!(kernel_view(&stepped), kernel_view(&fresh));
}

#[test]
fn a_failed_or_drifted_table_is_written_whole_again() {
    let ns = Netns::new("npr").unwrap();
    let mut c = cluster();
    rich(&mut c);
    let mut table = Table::new();
    in_ns(&ns, || table.apply(compile(&c, "n1", BOTH).ruleset)).unwrap();
    // Someone removed an element this process believes is there: the difference that
    // deletes it fails as a whole and changes nothing; the retry rewrites the table.
    let (target, elem) = {
        let rs = table.installed().unwrap();
        let (name, set) = rs
            .sets
            .iter()
            .find(|(n, s)| n.ends_with("-4") && !s.elements.is_empty() && n.starts_with('s'))
            .unwrap();
        (
            name.clone(),
            set.elements.iter().next().unwrap().to_string(),
        )
    };
    ns.exec_ok(&[
        "nft",
        "delete",
        "element",
        "inet",
        TABLE,
        &target,
        &format!("{{ {elem} }}"),
    ])
    .unwrap();
    c.pods.clear();
    let before = kernel_view(&ns);
    let err = in_ns(&ns, || table.apply(compile(&c, "n1", BOTH).ruleset)).unwrap_err();
    assert!(err.to_string().contains("nft"), "{err}");
    assert_eq!(
        kernel_view(&ns),
        before,
        "a failed transaction changes nothing"
    );
    let retry = in_ns(&ns, || table.apply(compile(&c, "n1", BOTH).ruleset)).unwrap();
    assert!(retry.full);

    // The table flushed away (nft flush ruleset, a firewalld reload): noticed, written whole.
    assert!(in_ns(&ns, || table.present()).unwrap());
    ns.exec_ok(&["nft", "flush", "ruleset"]).unwrap();
    assert!(!in_ns(&ns, || table.present()).unwrap());
    let again = in_ns(&ns, || table.apply(compile(&c, "n1", BOTH).ruleset)).unwrap();
    assert!(again.full);
    assert!(in_ns(&ns, || table.present()).unwrap());
}

#[test]
fn turning_the_feature_off_removes_the_table() {
    let ns = Netns::new("npo").unwrap();
    assert!(!in_ns(&ns, remove_leftover).unwrap());
    let mut table = Table::new();
    in_ns(&ns, || table.apply(compile(&cluster(), "n1", BOTH).ruleset)).unwrap();
    assert!(in_ns(&ns, remove_leftover).unwrap());
    let tables = ns.exec_ok(&["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains(TABLE), "{tables}");
}

#[test]
fn a_thousand_pods_and_two_hundred_policies_fit_one_transaction() {
    let ns = Netns::new("npl").unwrap();
    let mut c = Cluster::default();
    for i in 0..1000u32 {
        let ip: IpAddr =
            std::net::Ipv4Addr::from(0x0af4_0000 + (i / 250) * 256 + i % 250 + 2).into();
        let mut p = pod(
            if i % 2 == 0 { "n1" } else { "n2" },
            &format!("p{}", i % 10),
            1,
        );
        p.ips = vec![ip];
        c.put_pod(&format!("ns{}", i % 20), &format!("pod{i}"), p);
    }
    for i in 0..200 {
        add_policy(
            &mut c,
            &format!("ns{}", i % 20),
            &format!("pol{i}"),
            json!({
            "podSelector": {"matchLabels": {"pod": format!("p{}", i % 10)}},
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": format!("p{}", (i + 1) % 10)}}}],
                         "ports": [{"port": 80}, {"port": "serve-81-udp", "protocol": "UDP"}]}]}),
        );
    }
    let compiled = compile(
        &c,
        "n1",
        Families {
            v4: true,
            v6: false,
        },
    );
    let rules = compiled.ruleset.rule_count();
    let mut table = Table::new();
    in_ns(&ns, || table.apply(compiled.ruleset)).unwrap();
    let view = kernel_view(&ns);
    assert_eq!(count(&view, "chain"), rules);
    // Two ingress rules per policy (one per port entry), plus the hooks and drops.
    assert!(rules <= 2 * 200 + 10, "{rules}");
}

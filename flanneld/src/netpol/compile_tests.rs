//! The compiler against the semantics: an evaluator of the rules it writes (the small part of
//! nft's language it uses) is run on every pod pair, port and protocol and compared with a
//! direct reading of the API's rules over the same cluster, for the e2e model and for random
//! clusters and policies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::netpol::policy::Protocol;
use crate::netpol::ruleset::{Ruleset, SetKind};

const NODES: [&str; 2] = ["n1", "n2"];
const BOTH: Families = Families { v4: true, v6: true };

/// What a rule chain decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Continue,
    Return,
    Accept,
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Packet {
    src: IpAddr,
    dst: IpAddr,
    proto: Protocol,
    port: u16,
}

fn in_set(rs: &Ruleset, name: &str, key: Element) -> bool {
    let set = rs
        .sets
        .get(name)
        .unwrap_or_else(|| panic!("rule uses undefined set {name}"));
    match (set.kind, key) {
        (SetKind::Addr, Element::Addr(_)) | (SetKind::AddrPort, Element::AddrPort(..)) => {
            set.elements.contains(&key)
        }
        (SetKind::Net, Element::Addr(a)) => set.elements.iter().any(|e| match e {
            Element::Net(n) => n.contains(&a),
            _ => false,
        }),
        (kind, key) => panic!("set {name} of kind {kind:?} looked up with {key:?}"),
    }
}

/// Evaluates one chain of `rs` for a new connection's first packet.
fn eval(rs: &Ruleset, chain: &str, p: Packet) -> Verdict {
    for rule in rs.rules(chain) {
        let words: Vec<&str> = rule.split_whitespace().collect();
        let mut i = 0;
        let mut matched = true;
        let mut verdict = None;
        while i < words.len() && matched && verdict.is_none() {
            match words[i] {
                // Established flows are not what a new connection meets.
                "ct" => matched = false,
                "icmpv6" => matched = false,
                "ip" | "ip6" => {
                    let family = if words[i] == "ip" {
                        Family::V4
                    } else {
                        Family::V6
                    };
                    matched &= Family::of(p.src) == family;
                    let field = words[i + 1];
                    let addr = if field == "saddr" { p.src } else { p.dst };
                    if words[i + 2] == "." {
                        assert_eq!(&words[i + 3..i + 5], ["th", "dport"], "{rule}");
                        let set = words[i + 5].trim_start_matches('@');
                        matched &= in_set(rs, set, Element::AddrPort(addr, p.port));
                        i += 6;
                    } else {
                        let set = words[i + 2].trim_start_matches('@');
                        matched &= in_set(rs, set, Element::Addr(addr));
                        i += 3;
                    }
                }
                "meta" => {
                    assert_eq!(words[i + 1], "l4proto", "{rule}");
                    matched &= words[i + 2] == p.proto.nft();
                    i += 3;
                }
                "th" => {
                    assert_eq!(words[i + 1], "dport", "{rule}");
                    let (a, z) = match words[i + 2].split_once('-') {
                        Some((a, z)) => (a.parse().unwrap(), z.parse().unwrap()),
                        None => {
                            let n: u16 = words[i + 2].parse().unwrap();
                            (n, n)
                        }
                    };
                    matched &= (a..=z).contains(&p.port);
                    i += 3;
                }
                "counter" => i += 3,
                "comment" => i = words.len(),
                "return" => verdict = Some(Verdict::Return),
                "drop" => verdict = Some(Verdict::Drop),
                "accept" => verdict = Some(Verdict::Accept),
                "jump" => {
                    match eval(rs, words[i + 1], p) {
                        Verdict::Drop => verdict = Some(Verdict::Drop),
                        Verdict::Accept => verdict = Some(Verdict::Accept),
                        Verdict::Return | Verdict::Continue => {}
                    }
                    i += 2;
                }
                other => panic!("evaluator does not know {other:?} in {rule:?}"),
            }
        }
        if matched {
            if let Some(v) = verdict {
                return v;
            }
        }
    }
    Verdict::Continue
}

/// Whether the compiled tables of both nodes let the packet from `src` to `dst` through.
fn passes(tables: &[(&str, Ruleset)], src_node: &str, dst_node: &str, p: Packet) -> bool {
    tables
        .iter()
        .filter(|(n, _)| *n == src_node || *n == dst_node)
        .all(|(_, rs)| eval(rs, FORWARD, p) != Verdict::Drop)
}

/// The API's rules read directly: is this new connection allowed?
fn allowed(c: &Cluster, src: (&str, &PodInfo), dst: (&str, &PodInfo), p: Packet) -> bool {
    let selecting = |(ns, pod): (&str, &PodInfo)| -> Vec<&Policy> {
        c.policies
            .values()
            .filter(|pol| {
                pod.takes_part() && pol.key.namespace == ns && pol.pod_selector.matches(&pod.labels)
            })
            .collect()
    };
    let peer_ok =
        |pol: &Policy, peers: &Option<Vec<Peer>>, (ns, pod): (&str, &PodInfo), addr: IpAddr| {
            match peers {
                None => true,
                Some(list) => list.iter().any(|peer| match peer {
                    Peer::Pods { namespaces, pods } => {
                        let ns_ok = match namespaces {
                            Namespaces::Own(own) => own == ns,
                            Namespaces::Matching(sel) => sel.matches(&c.namespace_labels(ns)),
                        };
                        let _ = pol;
                        pod.takes_part() && ns_ok && pods.matches(&pod.labels)
                    }
                    Peer::Block(b) => b.contains(addr),
                }),
            }
        };
    let port_ok = |ports: &[Port], dst_pod: &PodInfo| {
        ports.is_empty()
            || ports.iter().any(|port| {
                port.protocol == p.proto
                    && match &port.port {
                        PortMatch::Any => true,
                        PortMatch::Range(a, z) => (*a..=*z).contains(&p.port),
                        PortMatch::Named(n) => dst_pod.named_port(n, p.proto) == Some(p.port),
                    }
            })
    };
    let judge = |own: (&str, &PodInfo), other: (&str, &PodInfo), other_addr, egress: bool| {
        let isolating: Vec<(&Policy, &Vec<Rule>)> = selecting(own)
            .into_iter()
            .filter_map(|pol| {
                if egress {
                    pol.egress.as_ref()
                } else {
                    pol.ingress.as_ref()
                }
                .map(|r| (pol, r))
            })
            .collect();
        isolating.is_empty()
            || isolating.iter().any(|(pol, rules)| {
                rules.iter().any(|r| {
                    peer_ok(pol, &r.peers, other, other_addr)
                        && port_ok(&r.ports, if egress { other.1 } else { own.1 })
                })
            })
    };
    judge(src, dst, p.dst, true) && judge(dst, src, p.src, false)
}

fn pod(
    node: &str,
    labels: &[(&str, &str)],
    ips: &[&str],
    ports: &[(&str, Protocol, u16)],
) -> PodInfo {
    let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
    PodInfo::running(node, labels, &ips, ports)
}

/// The e2e model: namespaces x, y, z with pods a, b, c, spread over two nodes, serving
/// 80 and 81 on TCP and UDP under e2e's port names.
fn e2e_cluster() -> Cluster {
    let mut c = Cluster::default();
    let mut n = 0u8;
    for ns in ["x", "y", "z"] {
        c.namespaces.insert(
            ns.to_owned(),
            [("ns".to_owned(), ns.to_owned())].into_iter().collect(),
        );
        for name in ["a", "b", "c"] {
            n += 1;
            let node = NODES[usize::from(n % 2)];
            let ports: Vec<(&str, Protocol, u16)> = vec![
                ("serve-80-tcp", Protocol::Tcp, 80),
                ("serve-81-tcp", Protocol::Tcp, 81),
                ("serve-80-udp", Protocol::Udp, 80),
                ("serve-81-udp", Protocol::Udp, 81),
            ];
            let v4 = format!("10.244.{}.{n}", n % 2 + 1);
            let v6 = format!("fd00:{}::{n}", n % 2 + 1);
            c.put_pod(ns, name, pod(node, &[("pod", name)], &[&v4, &v6], &ports));
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

const PROBES: [(Protocol, u16); 6] = [
    (Protocol::Tcp, 80),
    (Protocol::Tcp, 81),
    (Protocol::Udp, 80),
    (Protocol::Udp, 81),
    (Protocol::Sctp, 80),
    (Protocol::Sctp, 81),
];

/// Compares the compiled tables with the semantics on every pair, family, port and protocol.
fn check_against_semantics(c: &Cluster) -> Result<(), String> {
    let tables: Vec<(&str, Ruleset)> = NODES
        .iter()
        .map(|n| (*n, compile(c, n, BOTH).ruleset))
        .collect();
    let pods: Vec<(&str, &str, &PodInfo)> = c
        .pods
        .iter()
        .flat_map(|(ns, ps)| ps.iter().map(move |(n, p)| (ns.as_str(), n.as_str(), p)))
        .filter(|(_, _, p)| p.takes_part())
        .collect();
    for (sns, sname, src) in &pods {
        for (dns, dname, dst) in &pods {
            if (sns, sname) == (dns, dname) {
                continue;
            }
            for (sip, dip) in src.ips.iter().zip(&dst.ips) {
                for (proto, port) in PROBES {
                    let p = Packet {
                        src: *sip,
                        dst: *dip,
                        proto,
                        port,
                    };
                    let want = allowed(c, (sns, src), (dns, dst), p);
                    let got = passes(&tables, &src.node, &dst.node, p);
                    if want != got {
                        return Err(format!(
                            "{sns}/{sname} -> {dns}/{dname} {p:?}: semantics say {want}, tables say {got}\npolicies: {:#?}\ntables: {:#?}",
                            c.policies, tables
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn no_policy_compiles_to_the_hooks_and_empty_isolation() {
    let c = e2e_cluster();
    let out = compile(&c, "n1", BOTH);
    assert_eq!(
        out.ruleset.rules(FORWARD),
        [
            "ct state established,related accept",
            "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept",
            "ip saddr @iso-eg-4 jump egress",
            "ip6 saddr @iso-eg-6 jump egress",
            "ip daddr @iso-in-4 jump ingress",
            "ip6 daddr @iso-in-6 jump ingress"
        ]
    );
    assert_eq!(
        out.ruleset.rules(INGRESS),
        [
            "ip daddr @iso-in-4 counter name \"denied-ingress\" drop",
            "ip6 daddr @iso-in-6 counter name \"denied-ingress\" drop"
        ]
    );
    assert_eq!(
        out.ruleset.rules(INPUT)[2..],
        [
            "ip saddr @iso-eg-4 jump egress",
            "ip6 saddr @iso-eg-6 jump egress"
        ]
    );
    assert_eq!(out.ruleset.element_count(), 0);
    // Four pods of nine live on n1.
    assert_eq!(out.local_pods.len(), 4);
    assert!(out.local_pods.iter().all(|p| p.ingress.is_empty()));
    check_against_semantics(&c).unwrap();
}

#[test]
fn rules_are_written_per_policy_rule_port_and_peer() {
    let mut c = e2e_cluster();
    add_policy(
        &mut c,
        "x",
        "allow-y-81",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                     {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
            "ports": [{"port": 81}, {"protocol": "UDP", "port": "serve-80-udp"}]
        }]}),
    );
    let out = compile(
        &c,
        "n2",
        Families {
            v4: true,
            v6: false,
        },
    );
    let rules = out.ruleset.rules(INGRESS);
    // 2 ports x (pods peer + v4 block) + the final drop.
    assert_eq!(rules.len(), 5, "{rules:#?}");
    let t = rules[0].split_whitespace().nth(2).unwrap().to_owned();
    assert!(t.starts_with("@t") && t.ends_with("-4"), "{t}");
    assert!(rules[0].contains(" ip saddr @s"));
    assert!(rules[0].ends_with(" meta l4proto tcp th dport 81 return comment \"x/allow-y-81\""));
    assert!(rules[1].contains(" ip saddr @b"));
    assert!(rules[2].contains(" meta l4proto udp ip daddr . th dport @n"));
    // x/a lives on n2 (pods alternate n2, n1, ...): it is the only target.
    let target = &out.ruleset.sets[&t[1..]];
    assert_eq!(target.elements.len(), 1);
    let block = rules[1]
        .split_whitespace()
        .nth(5)
        .unwrap()
        .trim_start_matches('@');
    let nets: Vec<String> = out.ruleset.sets[block]
        .elements
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        nets,
        [
            "192.168.0.0/24",
            "192.168.2.0/23",
            "192.168.4.0/22",
            "192.168.8.0/21",
            "192.168.16.0/20",
            "192.168.32.0/19",
            "192.168.64.0/18",
            "192.168.128.0/17"
        ]
    );
    let xa = out
        .local_pods
        .iter()
        .find(|p| p.namespace == "x" && p.name == "a")
        .unwrap();
    assert_eq!(
        xa.ingress,
        [PolicyKey {
            namespace: "x".into(),
            name: "allow-y-81".into()
        }]
    );
    check_against_semantics(&c).unwrap();
}

#[test]
fn pods_change_elements_and_policies_change_rules() {
    let mut c = e2e_cluster();
    add_policy(
        &mut c,
        "x",
        "from-b",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
    );
    let before = compile(&c, "n1", BOTH).ruleset;
    // A new pod b in x, and a relabelled pod: same rules, other elements.
    c.put_pod("x", "b2", pod("n2", &[("pod", "b")], &["10.244.2.50"], &[]));
    c.pods
        .get_mut("x")
        .unwrap()
        .get_mut("c")
        .unwrap()
        .labels
        .insert("pod".into(), "b".into());
    let after = compile(&c, "n1", BOTH).ruleset;
    assert_eq!(before.chains, after.chains);
    assert_ne!(before.sets, after.sets);
    let script = crate::netpol::ruleset::diff_script(&before, &after);
    assert!(script.lines().all(|l| l.contains(" element ")), "{script}");
    check_against_semantics(&c).unwrap();
    // 200 policies of the same shape: rules grow with policies, not with pods.
    for i in 0..200 {
        add_policy(
            &mut c,
            "y",
            &format!("p{i}"),
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": format!("c{i}")}}}], "ports": [{"port": 80}]}]}),
        );
    }
    let rules = compile(&c, "n1", BOTH).ruleset.rule_count();
    for i in 0..100 {
        c.put_pod(
            "z",
            &format!("extra{i}"),
            pod(
                "n1",
                &[("pod", "a")],
                &[&format!("10.244.1.{}", 100 + i)],
                &[],
            ),
        );
    }
    assert_eq!(compile(&c, "n1", BOTH).ruleset.rule_count(), rules);
}

#[test]
fn host_network_and_finished_pods_are_neither_targets_nor_peers() {
    let mut c = e2e_cluster();
    let mut host = pod("n1", &[("pod", "a")], &["192.168.1.10"], &[]);
    host.host_network = true;
    c.put_pod("x", "host", host);
    let mut done = pod("n1", &[("pod", "b")], &["10.244.1.99"], &[]);
    done.finished = true;
    c.put_pod("x", "done", done);
    add_policy(
        &mut c,
        "x",
        "deny",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    let out = compile(&c, "n1", BOTH);
    let all: Vec<Element> = out
        .ruleset
        .sets
        .values()
        .flat_map(|s| s.elements.iter().copied())
        .collect();
    for ip in ["192.168.1.10", "10.244.1.99"] {
        assert!(
            !all.contains(&Element::Addr(ip.parse().unwrap())),
            "{ip} in {all:?}"
        );
    }
    assert!(out
        .local_pods
        .iter()
        .all(|p| p.name != "host" && p.name != "done"));
}

#[test]
fn broken_policies_isolate_and_are_reported() {
    let mut c = e2e_cluster();
    add_policy(
        &mut c,
        "x",
        "weird",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
               "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Like", "values": ["b"]}]}}]}]}),
    );
    let out = compile(&c, "n2", BOTH);
    assert_eq!(out.errors.len(), 1);
    assert!(out.errors[0].1.contains("Like"), "{:?}", out.errors);
    let iso = &out.ruleset.sets["iso-in-4"];
    assert_eq!(iso.elements.len(), 1, "x/a is isolated");
    check_against_semantics(&c).unwrap();
}

#[test]
fn cidr_subtraction_yields_disjoint_prefixes() {
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    assert_eq!(subtract(net, &[]), [net]);
    assert!(subtract(net, &[net]).is_empty());
    let parts = subtract(net, &["10.128.0.0/9".parse().unwrap()]);
    assert_eq!(parts, ["10.0.0.0/9".parse::<IpNet>().unwrap()]);
    let excepts: Vec<IpNet> = vec![
        "10.1.2.3/32".parse().unwrap(),
        "10.200.0.0/16".parse().unwrap(),
    ];
    let parts = subtract(net, &excepts);
    for probe in [
        "10.1.2.2",
        "10.1.2.4",
        "10.199.255.255",
        "10.201.0.0",
        "10.0.0.0",
    ] {
        let a: IpAddr = probe.parse().unwrap();
        assert_eq!(
            parts.iter().filter(|p| p.contains(&a)).count(),
            1,
            "{probe}"
        );
    }
    for probe in ["10.1.2.3", "10.200.7.7"] {
        let a: IpAddr = probe.parse().unwrap();
        assert!(!parts.iter().any(|p| p.contains(&a)), "{probe}");
    }
}

// ---- random clusters and policies ----

fn selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"matchLabels": {"pod": "a"}})),
        Just(json!({"matchLabels": {"pod": "b"}})),
        Just(json!({"matchLabels": {"tier": "web"}})),
        Just(json!({"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]})),
        Just(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})),
        Just(json!({"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]})),
    ]
}

fn ns_selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"matchLabels": {"team": "red"}})),
        Just(json!({"matchLabels": {"kubernetes.io/metadata.name": "y"}})),
        Just(
            json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]})
        ),
        Just(json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]})),
    ]
}

fn peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        selector().prop_map(|s| json!({"podSelector": s})),
        ns_selector().prop_map(|s| json!({"namespaceSelector": s})),
        (ns_selector(), selector())
            .prop_map(|(n, p)| json!({"namespaceSelector": n, "podSelector": p})),
        Just(json!({"ipBlock": {"cidr": "10.244.1.0/24"}})),
        Just(
            json!({"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/29", "10.244.1.4/32"]}})
        ),
        Just(json!({"ipBlock": {"cidr": "0.0.0.0/0"}})),
        Just(json!({"ipBlock": {"cidr": "fd00:2::/64", "except": ["fd00:2::4/126"]}})),
        Just(json!({"ipBlock": {"cidr": "10.244.2.3/32"}})),
    ]
}

fn port() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"port": 80})),
        Just(json!({"protocol": "UDP", "port": 81})),
        Just(json!({"port": 80, "endPort": 81})),
        Just(json!({"protocol": "UDP", "port": 79, "endPort": 80})),
        Just(json!({"port": "serve-80-tcp"})),
        Just(json!({"protocol": "UDP", "port": "serve-81-udp"})),
        Just(json!({"port": "web"})),
        Just(json!({"protocol": "UDP"})),
        Just(json!({"protocol": "SCTP", "port": 81})),
    ]
}

fn rule(peers_field: &'static str) -> impl Strategy<Value = Value> {
    (
        proptest::option::of(proptest::collection::vec(peer(), 0..3)),
        proptest::option::of(proptest::collection::vec(port(), 0..3)),
    )
        .prop_map(move |(peers, ports)| {
            let mut r = json!({});
            if let Some(p) = peers {
                r[peers_field] = json!(p);
            }
            if let Some(p) = ports {
                r["ports"] = json!(p);
            }
            r
        })
}

fn policy_spec() -> impl Strategy<Value = Value> {
    (
        selector(),
        prop_oneof![
            Just(None),
            Just(Some(json!(["Ingress"]))),
            Just(Some(json!(["Egress"]))),
            Just(Some(json!(["Ingress", "Egress"]))),
        ],
        proptest::option::of(proptest::collection::vec(rule("from"), 0..3)),
        proptest::option::of(proptest::collection::vec(rule("to"), 0..3)),
        0..20u8,
    )
        .prop_map(|(sel, types, ingress, egress, odd)| {
            let mut spec = json!({"podSelector": sel});
            if let Some(t) = types {
                spec["policyTypes"] = t;
            }
            if let Some(i) = ingress {
                spec["ingress"] = json!(i);
            }
            if let Some(e) = egress {
                spec["egress"] = json!(e);
            }
            if odd == 0 {
                // Now and then one flanneld cannot understand: it must fail closed.
                spec["podSelector"] = json!({"matchExpressions": [{"key": "pod", "operator": "Glob", "values": ["*"]}]});
            }
            spec
        })
}

fn random_cluster() -> impl Strategy<Value = Cluster> {
    (
        proptest::collection::vec(
            proptest::option::of(prop_oneof![Just("red"), Just("blue")]),
            3,
        ),
        proptest::collection::vec((0..2usize, any::<bool>(), 0..16u8), 9),
        proptest::collection::vec((0..3usize, policy_spec()), 0..4),
    )
        .prop_map(|(teams, pods, policies)| {
            let mut c = Cluster::default();
            for (ns, team) in ["x", "y", "z"].iter().zip(teams) {
                let mut labels = crate::netpol::selector::Labels::new();
                if let Some(t) = team {
                    labels.insert("team".into(), t.into());
                }
                c.namespaces.insert((*ns).to_owned(), labels);
            }
            for (i, (node, web, ports)) in pods.into_iter().enumerate() {
                let (ns, name) = (["x", "y", "z"][i / 3], ["a", "b", "c"][i % 3]);
                let n = i as u8 + 1;
                let v4 = IpAddr::V4(Ipv4Addr::new(10, 244, node as u8 + 1, n));
                let v6 = IpAddr::V6(Ipv6Addr::new(
                    0xfd00,
                    node as u16 + 1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    n.into(),
                ));
                let mut labels: Vec<(&str, &str)> = vec![("pod", name)];
                if web {
                    labels.push(("tier", "web"));
                }
                // Each pod serves a random subset of the e2e ports; "web" is 80 on some
                // pods and 81 on others, so named ports must resolve per pod.
                let all = [
                    ("serve-80-tcp", Protocol::Tcp, 80),
                    ("serve-81-tcp", Protocol::Tcp, 81),
                    ("serve-80-udp", Protocol::Udp, 80),
                    ("serve-81-udp", Protocol::Udp, 81),
                ];
                let mut named: Vec<(&str, Protocol, u16)> = all
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| ports & (1 << b) != 0)
                    .map(|(_, p)| *p)
                    .collect();
                named.push(("web", Protocol::Tcp, if n % 2 == 0 { 80 } else { 81 }));
                let mut p = pod(NODES[node], &labels, &[], &named);
                p.ips = vec![v4, v6];
                c.put_pod(ns, name, p);
            }
            for (i, (ns, spec)) in policies.into_iter().enumerate() {
                add_policy(&mut c, ["x", "y", "z"][ns], &format!("p{i}"), spec);
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn compiled_tables_decide_as_the_api_rules_do(c in random_cluster()) {
        if let Err(e) = check_against_semantics(&c) {
            prop_assert!(false, "{}", e);
        }
    }
}

use super::*;
use serde_json::json;

fn key() -> PolicyKey {
    PolicyKey {
        namespace: "x".into(),
        name: "p".into(),
    }
}

fn parse(spec: Value) -> Policy {
    Policy::parse(key(), &spec)
}

fn ok(spec: Value) -> Policy {
    let p = parse(spec);
    assert_eq!(p.error, None, "{p:?}");
    p
}

fn broken(spec: Value) -> Policy {
    let p = parse(spec.clone());
    assert!(p.error.is_some(), "{spec} was accepted: {p:?}");
    p
}

#[test]
fn policy_types_default_as_the_api_server_does() {
    let p = ok(json!({"podSelector": {}}));
    assert_eq!((p.ingress, p.egress), (Some(vec![]), None));
    // An egress section adds Egress; an empty one does not (len(Egress) != 0).
    let p = ok(json!({"podSelector": {}, "egress": [{}]}));
    assert!(p.ingress.is_some() && p.egress.is_some());
    let p = ok(json!({"podSelector": {}, "egress": []}));
    assert!(p.ingress.is_some() && p.egress.is_none());
    // Explicit types win, and rules of a direction not listed are ignored.
    let p = ok(json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}));
    assert_eq!((p.ingress, p.egress), (None, Some(vec![])));
    let p = ok(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
    assert_eq!((p.ingress, p.egress), (Some(vec![]), Some(vec![])));
}

#[test]
fn empty_rule_allows_everything_and_missing_rules_deny() {
    let p = ok(json!({"podSelector": {}, "ingress": [{}]}));
    assert_eq!(
        p.ingress,
        Some(vec![Rule {
            peers: None,
            ports: vec![]
        }])
    );
    // `from: []` means every source too.
    let p = ok(json!({"podSelector": {}, "ingress": [{"from": [], "ports": []}]}));
    assert_eq!(p.ingress.unwrap()[0].peers, None);
    let p = ok(json!({"podSelector": {}, "ingress": []}));
    assert_eq!(p.ingress, Some(vec![]));
}

#[test]
fn peers_combine_selectors_and_default_the_namespace() {
    let p = ok(
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"pod": "b"}}},
            {"namespaceSelector": {}},
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "c"}}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
        ]}]}),
    );
    let peers = p.ingress.unwrap().remove(0).peers.unwrap();
    let sel = |v: Value| Selector::parse(&v).unwrap();
    assert_eq!(
        peers,
        vec![
            Peer::Pods {
                namespaces: Namespaces::Own("x".into()),
                pods: sel(json!({"matchLabels": {"pod": "b"}}))
            },
            Peer::Pods {
                namespaces: Namespaces::Matching(Selector::everything()),
                pods: Selector::everything()
            },
            Peer::Pods {
                namespaces: Namespaces::Matching(sel(json!({"matchLabels": {"ns": "y"}}))),
                pods: sel(json!({"matchLabels": {"pod": "c"}}))
            },
            Peer::Block(IpBlock {
                cidr: "10.0.0.0/8".parse().unwrap(),
                except: vec!["10.1.0.0/16".parse().unwrap()]
            }),
        ]
    );
}

#[test]
fn ports_numeric_ranges_named_and_protocol_only() {
    let p = ok(json!({"podSelector": {}, "ingress": [{"ports": [
        {"port": 80},
        {"protocol": "UDP", "port": 81},
        {"protocol": "TCP", "port": 8000, "endPort": 8080},
        {"port": "serve-80-tcp"},
        {"protocol": "SCTP"},
        {"protocol": "UDP", "port": "dns", "endPort": null}
    ]}]}));
    let ports = p.ingress.unwrap().remove(0).ports;
    let port = |protocol, port| Port { protocol, port };
    assert_eq!(
        ports,
        vec![
            port(Protocol::Tcp, PortMatch::Range(80, 80)),
            port(Protocol::Udp, PortMatch::Range(81, 81)),
            port(Protocol::Tcp, PortMatch::Range(8000, 8080)),
            port(Protocol::Tcp, PortMatch::Named("serve-80-tcp".into())),
            port(Protocol::Sctp, PortMatch::Any),
            port(Protocol::Udp, PortMatch::Named("dns".into())),
        ]
    );
}

#[test]
fn what_validation_refuses_fails_closed_with_a_reason() {
    for spec in [
        json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"endPort": 80}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "80"}]}]}),
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "Not_A_Name"}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1"}}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]}),
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["x"]}]}}]}]}),
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]}),
        json!({"podSelector": {}, "ingress": {}}),
        json!({"policyTypes": ["Egress"]}),
    ] {
        broken(spec);
    }
}

#[test]
fn a_broken_policy_isolates_what_it_can_tell_it_selects() {
    // The selector and the types are readable: those pods, that direction, nothing allowed.
    let p = broken(json!({
        "podSelector": {"matchLabels": {"pod": "a"}},
        "policyTypes": ["Egress"],
        "egress": [{"ports": [{"protocol": "ICMP"}]}]
    }));
    assert_eq!(
        p.pod_selector,
        Selector::parse(&json!({"matchLabels": {"pod": "a"}})).unwrap()
    );
    assert_eq!((p.ingress, p.egress), (None, Some(vec![])));
    assert!(
        p.error
            .as_deref()
            .unwrap()
            .contains("spec.egress[0]: ports[0]: unsupported protocol \"ICMP\""),
        "{:?}",
        p.error
    );
    // Unreadable selector: the whole namespace. Unreadable types: both directions.
    let p = broken(json!({
        "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Regex", "values": ["a.*"]}]},
        "policyTypes": ["Inbound"]
    }));
    assert!(p.pod_selector.is_everything());
    assert_eq!((p.ingress, p.egress), (Some(vec![]), Some(vec![])));
}

#[test]
fn ip_blocks_carve_out_their_excepts() {
    let b = IpBlock {
        cidr: "10.0.0.0/8".parse().unwrap(),
        except: vec!["10.1.0.0/16".parse().unwrap()],
    };
    assert!(b.contains("10.2.3.4".parse().unwrap()));
    assert!(!b.contains("10.1.3.4".parse().unwrap()));
    assert!(!b.contains("11.0.0.1".parse().unwrap()));
    assert!(!b.contains("fc00::1".parse().unwrap()));
    // Host bits in a CIDR are dropped, as Go's ParseCIDR does.
    let p = ok(
        json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.244.1.7/24"}}]}]}),
    );
    assert_eq!(
        p.egress.unwrap()[0].peers.as_ref().unwrap()[0],
        Peer::Block(IpBlock {
            cidr: "10.244.1.0/24".parse().unwrap(),
            except: vec![]
        })
    );
}

//! The e2e netpol cases (`test/e2e/network/netpol/network_policy.go`), each a function of
//! the cluster that makes its API changes and checks the whole matrix after each step. The
//! expectations are e2e's truth tables, extended to the probes e2e does not run for that
//! case (every case here is checked on TCP and UDP, ports 80 and 81).

use crate::reach::Proto;
use serde_json::{json, Value};

use super::{ns, pod, Cluster, Reach, PROBES};

pub type Expect = Box<dyn Fn(Proto, u16) -> Reach>;

pub fn same(r: Reach) -> Expect {
    Box::new(move |_, _| r.clone())
}

fn on(proto: Proto, port: u16, hit: Reach, other: Reach) -> Expect {
    Box::new(move |p, n| {
        if (p, n) == (proto, port) {
            hit.clone()
        } else {
            other.clone()
        }
    })
}

fn by_proto(tcp: Reach, udp: Reach) -> Expect {
    Box::new(move |p, _| {
        if p == Proto::Tcp {
            tcp.clone()
        } else {
            udp.clone()
        }
    })
}

pub fn all() -> Reach {
    Reach::all(true)
}

fn step(c: &Cluster, rv: u64, expect: Expect) -> Result<(), String> {
    c.wait_enforced(rv);
    c.check(&*expect, &PROBES)
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    let mut m = json!({});
    for (k, v) in pairs {
        m[*k] = json!(v);
    }
    json!({"matchLabels": m})
}

fn ns_name(n: &str) -> Value {
    labels(&[("kubernetes.io/metadata.name", n)])
}

fn expr(key: &str, op: &str, values: &[&str]) -> Value {
    json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]})
}

fn pod_a() -> Value {
    labels(&[("pod", "a")])
}

fn deny_ingress() -> Value {
    json!({"podSelector": {}, "policyTypes": ["Ingress"]})
}

/// A host route to a pod, in the family the cluster probes.
fn cidr32(c: &Cluster, id: &str) -> String {
    let a = c.pod(id).addr(c.probe_v6);
    format!("{a}/{}", if a.is_ipv6() { 128 } else { 32 })
}

/// A block holding every pod, in the family the cluster probes.
fn all_pods_block(c: &Cluster) -> &'static str {
    if c.probe_v6 {
        "fd10::/56"
    } else {
        "10.244.0.0/16"
    }
}

pub type Case = fn(&mut Cluster) -> Result<(), String>;

pub const CASES: &[(&str, Case)] = &[
    ("default-deny-ingress", |c| {
        let rv = c.policy("x", "deny-ingress", deny_ingress());
        step(c, rv, same(all().ingress(ns("x"), false)))?;
        c.node_reaches_its_pods()
    }),
    ("default-deny-all", |c| {
        let rv = c.policy(
            "x",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        );
        step(
            c,
            rv,
            same(all().ingress(ns("x"), false).egress(ns("x"), false)),
        )?;
        c.node_reaches_its_pods()
    }),
    ("allow from pods within the namespace by podSelector", |c| {
        let rv = c.policy(
            "x",
            "x-a-allows-x-b",
            json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"podSelector": labels(&[("pod", "b")])}]}]}),
        );
        step(
            c,
            rv,
            same(
                all()
                    .ingress(pod("x/a"), false)
                    .set(pod("x/b"), pod("x/a"), true),
            ),
        )
    }),
    ("allow ingress for a target", |c| {
        c.policy("x", "deny-all", deny_ingress());
        let rv = c.policy(
            "x",
            "allow-all-to-a",
            json!({"podSelector": pod_a(), "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {}}]}]}),
        );
        step(
            c,
            rv,
            same(all().ingress(ns("x"), false).ingress(pod("x/a"), true)),
        )
    }),
    ("allow ingress from pods in all namespaces", |c| {
        let rv = c.policy(
            "x",
            "allow-from-another-ns",
            json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        );
        step(c, rv, same(all()))
    }),
    (
        "allow only from a different namespace by namespaceSelector",
        |c| {
            let rv = c.policy(
                "x",
                "allow-client-a-via-ns-selector",
                json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": labels(&[("ns", "y")])}]}]}),
            );
            step(
                c,
                rv,
                same(
                    all()
                        .set(ns("x"), pod("x/a"), false)
                        .set(ns("z"), pod("x/a"), false),
                ),
            )
        },
    ),
    ("podSelector with matchExpressions", |c| {
        let rv = c.policy(
            "x",
            "x-a-allows-x-b",
            json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"podSelector": expr("pod", "In", &["b"])}]}]}),
        );
        step(
            c,
            rv,
            same(
                all()
                    .ingress(pod("x/a"), false)
                    .set(pod("x/b"), pod("x/a"), true),
            ),
        )
    }),
    ("namespaceSelector with matchExpressions", |c| {
        let rv = c.policy(
            "x",
            "allow-ns-y-match-selector",
            json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": expr("ns", "In", &["y"])}]}]}),
        );
        step(
            c,
            rv,
            same(
                all()
                    .set(ns("x"), pod("x/a"), false)
                    .set(ns("z"), pod("x/a"), false),
            ),
        )
    }),
    ("podSelector or namespaceSelector", |c| {
        let rv = c.policy("x", "allow-ns-y-match-selector", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": expr("kubernetes.io/metadata.name", "NotIn", &["x"])},
                                  {"podSelector": labels(&[("pod", "b")])}]}]}));
        step(c, rv, same(all().set(pod("x/c"), pod("x/a"), false)))
    }),
    ("podSelector and namespaceSelector in one peer", |c| {
        let rv = c.policy("x", "allow-ns-y-podselector-and-nsselector", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": expr("kubernetes.io/metadata.name", "NotIn", &["x"]),
                                   "podSelector": labels(&[("pod", "b")])}]}]}));
        step(
            c,
            rv,
            same(
                all()
                    .ingress(pod("x/a"), false)
                    .set(pod("y/b"), pod("x/a"), true)
                    .set(pod("z/b"), pod("x/a"), true),
            ),
        )
    }),
    ("multiple podSelectors and namespaceSelectors", |c| {
        let rv = c.policy("x", "allow-ns-y-z-pod-b-c", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": expr("kubernetes.io/metadata.name", "NotIn", &["x"]),
                                   "podSelector": expr("pod", "In", &["b", "c"])}]}]}));
        let mut r = all().ingress(pod("x/a"), false);
        for p in ["y/b", "y/c", "z/b", "z/c"] {
            r = r.set(pod(p), pod("x/a"), true);
        }
        step(c, rv, same(r))
    }),
    ("any podSelectors", |c| {
        let rv = c.policy("x", "allow-ns-x-pod-b-c", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"podSelector": labels(&[("pod", "b")])}, {"podSelector": labels(&[("pod", "c")])}]}]}));
        step(
            c,
            rv,
            same(
                all()
                    .ingress(pod("x/a"), false)
                    .set(pod("x/b"), pod("x/a"), true)
                    .set(pod("x/c"), pod("x/a"), true),
            ),
        )
    }),
    ("only from a pod in a different namespace", |c| {
        let rv = c.policy(
            "x",
            "allow-ns-y-pod-a-via-namespace-pod-selector",
            json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": ns_name("y"), "podSelector": pod_a()}]}]}),
        );
        step(
            c,
            rv,
            same(
                all()
                    .ingress(pod("x/a"), false)
                    .set(pod("y/a"), pod("x/a"), true),
            ),
        )
    }),
    ("ports", |c| {
        let rv = c.policy("x", "allow-client-a-via-ns-selector", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": ns_name("y")}], "ports": [{"port": 81, "protocol": "TCP"}]}]}));
        let isolated = all().ingress(pod("x/a"), false);
        step(
            c,
            rv,
            on(
                Proto::Tcp,
                81,
                isolated.clone().set(ns("y"), pod("x/a"), true),
                isolated,
            ),
        )
    }),
    (
        "stacked policies with overlapping podSelectors (a policy added while traffic flows)",
        |c| {
            let rv = c.policy("x", "allow-client-a-via-ns-selector", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": ns_name("y")}], "ports": [{"port": 81, "protocol": "TCP"}]}]}));
            let isolated = all().ingress(pod("x/a"), false);
            let from_y = isolated.clone().set(ns("y"), pod("x/a"), true);
            step(c, rv, on(Proto::Tcp, 81, from_y.clone(), isolated.clone()))?;
            let rv = c.policy("x", "allow-client-a-via-ns-selector-80", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": ns_name("y")}], "ports": [{"port": 80, "protocol": "TCP"}]}]}));
            step(c, rv, by_proto(from_y, isolated))
        },
    ),
    ("allow-all", |c| {
        let rv = c.policy(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{}]}),
        );
        step(c, rv, same(all()))
    }),
    ("ingress on one named port", |c| {
        let rv = c.policy(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
        );
        step(
            c,
            rv,
            on(Proto::Tcp, 81, all(), all().ingress(ns("x"), false)),
        )
    }),
    ("ingress from a namespace on one named port", |c| {
        let rv = c.policy("x", "allow-client-a-via-ns-selector-80", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": ns_name("y")}], "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]}]}));
        step(
            c,
            rv,
            on(
                Proto::Tcp,
                80,
                all()
                    .set(ns("x"), pod("x/a"), false)
                    .set(ns("z"), pod("x/a"), false),
                all().ingress(pod("x/a"), false),
            ),
        )
    }),
    ("egress on one named port", |c| {
        let rv = c.policy(
            "x",
            "allow-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
        );
        step(
            c,
            rv,
            on(Proto::Tcp, 80, all(), all().egress(ns("x"), false)),
        )
    }),
    (
        "updated policy (allow-all changed to deny-all while traffic flows)",
        |c| {
            let rv = c.policy(
                "x",
                "allow-all-mutate-to-deny-all",
                json!({"podSelector": {}, "ingress": [{}]}),
            );
            step(c, rv, same(all()))?;
            let rv = c.policy(
                "x",
                "allow-all-mutate-to-deny-all",
                json!({"podSelector": {}, "ingress": []}),
            );
            step(c, rv, same(all().ingress(ns("x"), false)))
        },
    ),
    (
        "ingress from an updated namespace (namespace relabelled)",
        |c| {
            let rv = c.policy(
                "x",
                "allow-client-a-via-ns-selector",
                json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": labels(&[("ns2", "updated")])}]}]}),
            );
            step(c, rv, same(all().ingress(pod("x/a"), false)))?;
            let rv = c.label_namespace("y", &[("ns2", "updated")]);
            step(
                c,
                rv,
                same(
                    all()
                        .ingress(pod("x/a"), false)
                        .set(ns("y"), pod("x/a"), true),
                ),
            )
        },
    ),
    ("ingress from an updated pod (pod relabelled)", |c| {
        let rv = c.policy("x", "allow-client-a-via-pod-selector", json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"podSelector": labels(&[("pod", "b"), ("pod2", "updated")])}]}]}));
        step(c, rv, same(all().ingress(pod("x/a"), false)))?;
        let rv = c.label_pod("x/b", &[("pod2", "updated")]);
        step(
            c,
            rv,
            same(
                all()
                    .ingress(pod("x/a"), false)
                    .set(pod("x/b"), pod("x/a"), true),
            ),
        )
    }),
    ("deny ingress from pods in other namespaces", |c| {
        let rv = c.policy(
            "x",
            "deny-empty-policy",
            json!({"podSelector": {},
            "ingress": [{"from": [{"podSelector": {}}]}]}),
        );
        step(
            c,
            rv,
            same(
                all()
                    .set(ns("y"), ns("x"), false)
                    .set(ns("z"), ns("x"), false),
            ),
        )
    }),
    (
        "deny ingress to an updated pod (pod relabelled into a policy)",
        |c| {
            let rv = c.policy(
                "x",
                "deny-ingress-via-label-selector",
                json!({
            "podSelector": labels(&[("target", "isolated")]), "policyTypes": ["Ingress"]}),
            );
            step(c, rv, same(all()))?;
            let rv = c.label_pod("x/a", &[("target", "isolated")]);
            step(c, rv, same(all().ingress(pod("x/a"), false)))
        },
    ),
    ("deny egress from pods by podSelector", |c| {
        let rv = c.policy(
            "x",
            "deny-egress-pod-a",
            json!({"podSelector": pod_a(), "policyTypes": ["Egress"]}),
        );
        step(c, rv, same(all().egress(pod("x/a"), false)))
    }),
    ("deny egress from all pods in a namespace", |c| {
        let rv = c.policy(
            "x",
            "deny-egress-ns-x",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        );
        step(c, rv, same(all().egress(ns("x"), false)))
    }),
    ("ingress and egress specified together", |c| {
        let rv = c.policy(
            "x",
            "allow-client-a-via-pod-selector",
            json!({"podSelector": pod_a(),
            "policyTypes": ["Egress", "Ingress"],
            "ingress": [{"from": [{"podSelector": labels(&[("pod", "b")])}]}],
            "egress": [{"ports": [{"port": 80}]}]}),
        );
        let base = all()
            .ingress(pod("x/a"), false)
            .set(pod("x/b"), pod("x/a"), true);
        let no_egress = all()
            .ingress(pod("x/a"), false)
            .egress(pod("x/a"), false)
            .set(pod("x/b"), pod("x/a"), true);
        step(c, rv, on(Proto::Tcp, 80, base, no_egress))
    }),
    (
        "egress denied on the client side even where the server allows it",
        |c| {
            c.policy(
                "x",
                "allow-to-ns-y-pod-a",
                json!({"podSelector": pod_a(), "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": ns_name("y"), "podSelector": pod_a()}]}]}),
            );
            let from_xa =
                json!([{"from": [{"namespaceSelector": ns_name("x"), "podSelector": pod_a()}]}]);
            c.policy(
                "y",
                "allow-from-xa-on-ya-match-selector",
                json!({"podSelector": pod_a(), "ingress": from_xa}),
            );
            let rv = c.policy(
                "y",
                "allow-from-xa-on-yb-match-selector",
                json!({"podSelector": labels(&[("pod", "b")]), "ingress": from_xa}),
            );
            step(
                c,
                rv,
                same(
                    all()
                        .egress(pod("x/a"), false)
                        .ingress(pod("y/a"), false)
                        .set(pod("x/a"), pod("y/a"), true)
                        .ingress(pod("y/b"), false),
                ),
            )
        },
    ),
    (
        "egress to a server in another namespace by pod and namespace selector",
        |c| {
            let rv = c.policy(
                "x",
                "allow-to-ns-y-pod-a",
                json!({"podSelector": pod_a(), "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": ns_name("y"), "podSelector": pod_a()}]}]}),
            );
            step(
                c,
                rv,
                same(
                    all()
                        .egress(pod("x/a"), false)
                        .set(pod("x/a"), pod("y/a"), true),
                ),
            )
        },
    ),
    ("ingress on any port of one protocol", |c| {
        let rv = c.policy(
            "x",
            "allow-ingress-by-proto",
            json!({"podSelector": pod_a(),
            "ingress": [{"ports": [{"protocol": "TCP"}]}]}),
        );
        step(c, rv, by_proto(all(), all().ingress(pod("x/a"), false)))
    }),
    (
        "multiple ingress policies, allow-all taking precedence",
        |c| {
            let rv = c.policy(
                "x",
                "allow-ingress-port-80",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
            );
            step(
                c,
                rv,
                on(Proto::Tcp, 80, all(), all().ingress(ns("x"), false)),
            )?;
            let rv = c.policy(
                "x",
                "allow-ingress",
                json!({"podSelector": {}, "ingress": [{}]}),
            );
            step(c, rv, same(all()))
        },
    ),
    (
        "multiple egress policies, allow-all taking precedence",
        |c| {
            let rv = c.policy(
                "x",
                "allow-egress-port-80",
                json!({"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 80}]}]}),
            );
            step(
                c,
                rv,
                on(Proto::Tcp, 80, all(), all().egress(ns("x"), false)),
            )?;
            let rv = c.policy(
                "x",
                "allow-egress",
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}),
            );
            step(c, rv, same(all()))
        },
    ),
    ("stop enforcing a policy once deleted", |c| {
        let rv = c.policy(
            "x",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        );
        step(
            c,
            rv,
            same(all().egress(ns("x"), false).ingress(ns("x"), false)),
        )?;
        let rv = c.delete_policy("x", "deny-all");
        step(c, rv, same(all()))
    }),
    ("egress to a server in a CIDR block", |c| {
        let rv = c.policy("x", "allow-client-a-via-cidr-egress-rule", json!({"podSelector": pod_a(),
            "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": cidr32(c, "y/b")}}]}]}));
        step(
            c,
            rv,
            same(
                all()
                    .egress(pod("x/a"), false)
                    .set(pod("x/a"), pod("y/b"), true),
            ),
        )
    }),
    ("except clause of a CIDR block", |c| {
        let rv = c.policy("x", "allow-client-a-via-cidr-egress-rule", json!({"podSelector": pod_a(),
            "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": all_pods_block(c), "except": [cidr32(c, "x/b")]}}]}]}));
        step(c, rv, same(all().set(pod("x/a"), pod("x/b"), false)))
    }),
    (
        "an IP both in a CIDR's except and in another rule's CIDR is allowed",
        |c| {
            let rv = c.policy("x", "allow-client-a-via-cidr-egress-rule", json!({"podSelector": pod_a(),
            "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": all_pods_block(c), "except": [cidr32(c, "x/b")]}}]}]}));
            step(c, rv, same(all().set(pod("x/a"), pod("x/b"), false)))?;
            let rv = c.policy("x", "allow-client-a-via-cidr-egress-rule", json!({"podSelector": pod_a(),
            "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": cidr32(c, "x/b")}}]}]}));
            step(
                c,
                rv,
                same(
                    all()
                        .egress(pod("x/a"), false)
                        .set(pod("x/a"), pod("x/b"), true),
                ),
            )
        },
    ),
    ("ingress and egress controlled independently", |c| {
        let rv = c.policy(
            "x",
            "allow-egress-for-target",
            json!({"podSelector": pod_a(), "policyTypes": ["Egress"], "egress": [{}]}),
        );
        step(c, rv, same(all()))?;
        let rv = c.policy(
            "x",
            "deny-ingress-via-label-selector",
            json!({"podSelector": pod_a(), "policyTypes": ["Ingress"]}),
        );
        step(c, rv, same(all().ingress(pod("x/a"), false)))
    }),
    ("protocol SCTP is not treated as TCP", |c| {
        c.policy("x", "deny-ingress", deny_ingress());
        let rv = c.policy(
            "x",
            "allow-only-sctp-ingress-on-port-81",
            json!({"podSelector": pod_a(),
            "ingress": [{"ports": [{"port": 81, "protocol": "SCTP"}]}]}),
        );
        step(c, rv, same(all().ingress(ns("x"), false)))
    }),
    ("a policy allowing only SCTP still isolates its pods", |c| {
        let rv = c.policy(
            "x",
            "allow-only-sctp-ingress-on-port-80",
            json!({"podSelector": pod_a(),
            "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]}),
        );
        step(c, rv, same(all().ingress(pod("x/a"), false)))
    }),
    ("no TCP when a policy allows only UDP", |c| {
        let rv = c.policy(
            "x",
            "allow-only-udp-ingress-on-port-81",
            json!({"podSelector": pod_a(),
            "ingress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]}),
        );
        step(
            c,
            rv,
            on(Proto::Udp, 81, all(), all().ingress(pod("x/a"), false)),
        )
    }),
    (
        "namespaceSelector matchLabels on the default namespace label",
        |c| {
            let rv = c.policy(
                "x",
                "allow-client-a-via-ns-selector-for-immutable-ns-label",
                json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": ns_name("y")}]}]}),
            );
            step(
                c,
                rv,
                same(
                    all()
                        .set(ns("x"), pod("x/a"), false)
                        .set(ns("z"), pod("x/a"), false),
                ),
            )
        },
    ),
    (
        "namespaceSelector matchExpressions on the default namespace label (egress)",
        |c| {
            let rv = c.policy("x", "allow-ns-y-match-selector-for-immutable-ns-label", json!({"podSelector": pod_a(),
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": expr("kubernetes.io/metadata.name", "NotIn", &["y"])}]}]}));
            step(c, rv, same(all().set(pod("x/a"), ns("y"), false)))
        },
    ),
    ("endPort ranges", |c| {
        let rv = c.policy(
            "x",
            "allow-ranges-from-y",
            json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"namespaceSelector": ns_name("y")}],
                         "ports": [{"port": 79, "endPort": 80, "protocol": "TCP"},
                                   {"port": 81, "endPort": 90, "protocol": "UDP"}]}]}),
        );
        let isolated = all().ingress(pod("x/a"), false);
        let from_y = isolated.clone().set(ns("y"), pod("x/a"), true);
        let (a, b) = (from_y.clone(), isolated.clone());
        step(
            c,
            rv,
            Box::new(move |p, n| match (p, n) {
                (Proto::Tcp, 80) | (Proto::Udp, 81) => a.clone(),
                _ => b.clone(),
            }),
        )
    }),
    ("egress to one UDP port only", |c| {
        let rv = c.policy(
            "x",
            "allow-egress-udp-81",
            json!({"podSelector": pod_a(), "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]}),
        );
        step(
            c,
            rv,
            on(Proto::Udp, 81, all(), all().egress(pod("x/a"), false)),
        )
    }),
    ("ingress on one UDP named port", |c| {
        let rv = c.policy(
            "x",
            "allow-udp-80",
            json!({"podSelector": {},
            "ingress": [{"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}),
        );
        step(
            c,
            rv,
            on(Proto::Udp, 80, all(), all().ingress(ns("x"), false)),
        )
    }),
    ("pod recreated with a new IP", |c| {
        let rv = c.policy(
            "x",
            "x-a-allows-x-b",
            json!({"podSelector": pod_a(),
            "ingress": [{"from": [{"podSelector": labels(&[("pod", "b")])}]}]}),
        );
        let expect = || {
            same(
                all()
                    .ingress(pod("x/a"), false)
                    .set(pod("x/b"), pod("x/a"), true),
            )
        };
        step(c, rv, expect())?;
        let rv = c.recreate("x/b");
        step(c, rv, expect())
    }),
];

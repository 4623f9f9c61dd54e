use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn v4() -> Vec<(IpNet, IpNet)> {
    vec![(net("10.244.0.0/16"), net("10.244.1.0/24"))]
}

/// Upstream's rule shapes (flanneld.md §6.2), with the two deliberate differences: rule 1
/// tests the mark bit under a mask, rule 4 returns only traffic into this node's subnet.
#[test]
fn masq_chain_has_upstreams_rules_with_rule_4_and_the_mark_fixed() {
    let c = masq_chain(net("10.244.0.0/16"), net("10.244.1.7/24"), true);
    assert_eq!(
        (c.name, c.kind, c.hook, c.priority, c.comment),
        (
            "postrtg",
            "nat",
            "postrouting",
            "srcnat",
            "chain to manage traffic masquerading by flannel"
        )
    );
    assert_eq!(
        c.rules,
        [
            "meta mark & 0x00004000 == 0x00004000 return",
            "ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return",
            "ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return",
            "ip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return",
            "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
            "ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random",
        ]
    );
}

#[test]
fn ipv6_rules_use_ip6_selectors_and_multicast_and_random_is_optional() {
    let c = masq_chain(net("fc00::/48"), net("fc00:0:0:5::/64"), false);
    assert_eq!(
        c.rules[3..],
        [
            "ip6 saddr != fc00::/48 ip6 daddr fc00:0:0:5::/64 return",
            "ip6 saddr fc00::/48 ip6 daddr != ff00::/8 masquerade",
            "ip6 saddr != fc00::/48 ip6 daddr fc00::/48 masquerade",
        ]
    );
    let f = forward_chain(net("fc00::/48"));
    assert_eq!(
        f.rules,
        ["ip6 saddr fc00::/48 accept", "ip6 daddr fc00::/48 accept"]
    );
}

#[test]
fn whole_transaction_is_exactly_upstreams_tables_replaced_in_place() {
    let t = Tables::new(tables(&v4(), true, true, true));
    assert_eq!(
        t.script(),
        "add table ip flannel-ipv4\n\
         delete table ip flannel-ipv4\n\
         add table ip flannel-ipv4 { comment \"rules for flannel-ipv4\" ; }\n\
         add chain ip flannel-ipv4 forward { type filter hook forward priority filter ; policy accept ; comment \"chain to accept flannel traffic\" ; }\n\
         add rule ip flannel-ipv4 forward ip saddr 10.244.0.0/16 accept\n\
         add rule ip flannel-ipv4 forward ip daddr 10.244.0.0/16 accept\n\
         add chain ip flannel-ipv4 postrtg { type nat hook postrouting priority srcnat ; policy accept ; comment \"chain to manage traffic masquerading by flannel\" ; }\n\
         add rule ip flannel-ipv4 postrtg meta mark & 0x00004000 == 0x00004000 return\n\
         add rule ip flannel-ipv4 postrtg ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return\n\
         add rule ip flannel-ipv4 postrtg ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return\n\
         add rule ip flannel-ipv4 postrtg ip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return\n\
         add rule ip flannel-ipv4 postrtg ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random\n\
         add rule ip flannel-ipv4 postrtg ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random\n\
         add table ip6 flannel-ipv6\n\
         delete table ip6 flannel-ipv6\n\
         add table ip6 flannel-ipv6 { comment \"rules for flannel-ipv6\" ; }\n"
    );
}

#[test]
fn flags_and_families_pick_the_chains() {
    let dual = vec![
        (net("10.244.0.0/16"), net("10.244.1.0/24")),
        (net("fc00::/48"), net("fc00:0:0:1::/64")),
    ];
    let names = |ts: &[Table]| -> Vec<(String, Vec<&str>)> {
        ts.iter()
            .map(|t| {
                (
                    format!("{} {}", t.family, t.name),
                    t.chains.iter().map(|c| c.name).collect(),
                )
            })
            .collect()
    };
    assert_eq!(
        names(&tables(&dual, true, true, false)),
        [
            ("ip flannel-ipv4".to_owned(), vec!["forward", "postrtg"]),
            ("ip6 flannel-ipv6".to_owned(), vec!["forward", "postrtg"]),
        ]
    );
    assert_eq!(
        names(&tables(&dual, false, true, false)),
        [
            ("ip flannel-ipv4".to_owned(), vec!["forward"]),
            ("ip6 flannel-ipv6".to_owned(), vec!["forward"]),
        ]
    );
    let only_v6 = &dual[1..];
    assert_eq!(
        names(&tables(only_v6, true, false, false)),
        [
            ("ip flannel-ipv4".to_owned(), vec![]),
            ("ip6 flannel-ipv6".to_owned(), vec!["postrtg"]),
        ]
    );
}

#[test]
fn clones_share_what_was_written() {
    let a = Tables::new(tables(&v4(), true, true, false));
    let b = a.clone();
    *a.record() = Some(vec![None, None]);
    assert_eq!(*b.record(), Some(vec![None, None]));
    assert_eq!(b.tables().len(), 2);
}

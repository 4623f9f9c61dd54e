use super::*;
use crate::chains::tests::conf;
use netops::Family;

const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "ip", "name": "cni_hostport", "handle": 1}},
 {"rule": {"family": "ip", "table": "cni_hostport", "chain": "hostports", "handle": 11, "comment": "ctr1", "expr": []}},
 {"rule": {"family": "ip", "table": "cni_hostport", "chain": "hostports", "handle": 12, "comment": "ctr2", "expr": []}},
 {"rule": {"family": "ip", "table": "cni_hostport", "chain": "hostports_all", "handle": 4, "expr": []}},
 {"rule": {"family": "ip", "table": "cni_hostport", "chain": "masquerading", "handle": 13, "comment": "ctr1", "expr": []}},
 {"rule": {"family": "ip", "table": "cni_hostport", "chain": "masquerading", "handle": 14, "comment": "ctr1", "expr": []}}]}"#;

#[test]
fn add_script_for_the_observed_example() {
    let c = conf(&[(8080, 80, "tcp", None), (5353, 53, "udp", Some("10.0.0.5"))]);
    let existing = nft::parse_listing(LISTING).unwrap().rules;
    let script = plan_add(&c, "ctr1", c.container_v4.unwrap(), &existing);
    let tail: Vec<&str> = script
        .lines()
        .skip_while(|l| !l.starts_with("delete"))
        .collect();
    assert_eq!(
        tail,
        [
            "delete rule ip cni_hostport hostports handle 11",
            "delete rule ip cni_hostport masquerading handle 13",
            "delete rule ip cni_hostport masquerading handle 14",
            "add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.244.1.2:80 comment \"ctr1\"",
            "add rule ip cni_hostport hostports ip daddr 10.0.0.5 udp dport 5353 dnat to 10.244.1.2:53 comment \"ctr1\"",
            "add rule ip cni_hostport masquerading ip saddr 10.244.1.2 ip daddr 10.244.1.2 masquerade comment \"ctr1\"",
            "add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.244.1.2 masquerade comment \"ctr1\"",
        ]
    );
    assert!(script.starts_with("add table ip cni_hostport { comment \"CNI portmap plugin\" ; }\n"));
    assert!(script
        .contains("add rule ip cni_hostport prerouting fib daddr type local jump hostports_all\n"));
}

#[test]
fn ipv6_masq_all_and_conditions() {
    let mut c = conf(&[
        (80, 8080, "tcp", Some("fd00::5")),
        (81, 81, "tcp", Some("10.0.0.5")),
    ]);
    c.masq_all = true;
    c.conditions_v6 = vec!["ip6".into(), "saddr".into(), "fd00::/8".into()];
    let rules = container_rules(&c, "fd00:1::2/64".parse().unwrap());
    assert_eq!(
        rules,
        vec![
            (
                "hostports",
                "ip6 daddr fd00::5 tcp dport 80 dnat to [fd00:1::2]:8080".to_owned()
            ),
            (
                "masquerading",
                "ip6 saddr ::/0 ip6 daddr fd00:1::2 masquerade".to_owned()
            ),
        ]
    );
    let script = plan_add(&c, "x", "fd00:1::2/64".parse().unwrap(), &[]);
    assert!(script.contains("add rule ip6 cni_hostport output ip6 saddr fd00::/8 fib daddr type local jump hostports_all\n"), "{script}");
    assert!(!script.contains("delete"));
}

#[test]
fn del_and_check_use_the_comment() {
    let existing = nft::parse_listing(LISTING).unwrap().rules;
    assert_eq!(
        plan_del(Family::V4, "ctr2", &existing),
        "delete rule ip cni_hostport hostports handle 12\n"
    );
    assert_eq!(plan_del(Family::V4, "nobody", &existing), "");
    let mut c = conf(&[(8080, 80, "tcp", None)]);
    check_listing(&c, "ctr1", c.container_v4.unwrap(), &existing).unwrap();
    c.snat = false;
    let err = check_listing(&c, "ctr1", c.container_v4.unwrap(), &existing).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected 0 rules for container ctr1 in chain masquerading"),
        "{err}"
    );
}

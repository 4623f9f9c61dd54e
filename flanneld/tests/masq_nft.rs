//! nftables mode against the real nft and kernel, inside throw-away namespaces: the tables
//! nft lists are upstream's (golden text), a second write is skipped while nothing changed,
//! every kind of drift is repaired, and switching between iptables and nftables mode leaves
//! nothing of the other behind.

use conformance::Netns;
use flanneld::masq::{Rules, Wanted};
use netops::firewall::Backend;

fn in_ns<R>(ns: &Netns, f: impl FnOnce() -> R) -> R {
    netops::netns::run_in(ns.path(), f).expect("enter test namespace")
}

fn wanted(subnet_v4: &str, ip_masq: bool) -> Wanted {
    Wanted {
        networks: vec![
            ("10.244.0.0/16".parse().unwrap(), subnet_v4.parse().unwrap()),
            (
                "fc00::/48".parse().unwrap(),
                "fc00:0:0:1::/64".parse().unwrap(),
            ),
        ],
        ip_masq,
        forward: true,
        random_fully_disabled: false,
    }
}

fn build(ns: &Netns, mode: Backend, w: &Wanted) -> Rules {
    in_ns(ns, || Rules::build(mode, w))
}

fn ensure(ns: &Netns, rules: &Rules) -> usize {
    in_ns(ns, || rules.ensure()).unwrap()
}

fn list(ns: &Netns, family: &str, table: &str) -> String {
    ns.exec_ok(&["nft", "list", "table", family, table])
        .unwrap()
}

fn tables(ns: &Netns) -> String {
    ns.exec_ok(&["nft", "list", "tables"]).unwrap()
}

fn iptables_save(ns: &Netns, family: &str, table: &str) -> String {
    ns.exec_ok(&[&format!("{family}-save"), "-t", table])
        .unwrap()
}

/// What nft prints for our IPv4 table: upstream's tables, chains, hooks, priorities and
/// comments; rules as upstream's except the masked mark test and rule 4.
const GOLDEN_V4: &str = "table ip flannel-ipv4 {
\tcomment \"rules for flannel-ipv4\"
\tchain forward {
\t\tcomment \"chain to accept flannel traffic\"
\t\ttype filter hook forward priority filter; policy accept;
\t\tip saddr 10.244.0.0/16 accept
\t\tip daddr 10.244.0.0/16 accept
\t}

\tchain postrtg {
\t\tcomment \"chain to manage traffic masquerading by flannel\"
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x00004000 == 0x00004000 return
\t\tip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return
\t\tip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return
\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return
\t\tip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
\t}
}
";

const GOLDEN_V6: &str = "table ip6 flannel-ipv6 {
\tcomment \"rules for flannel-ipv6\"
\tchain forward {
\t\tcomment \"chain to accept flannel traffic\"
\t\ttype filter hook forward priority filter; policy accept;
\t\tip6 saddr fc00::/48 accept
\t\tip6 daddr fc00::/48 accept
\t}

\tchain postrtg {
\t\tcomment \"chain to manage traffic masquerading by flannel\"
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x00004000 == 0x00004000 return
\t\tip6 saddr fc00:0:0:1::/64 ip6 daddr fc00::/48 return
\t\tip6 saddr fc00::/48 ip6 daddr fc00:0:0:1::/64 return
\t\tip6 saddr != fc00::/48 ip6 daddr fc00:0:0:1::/64 return
\t\tip6 saddr fc00::/48 ip6 daddr != ff00::/8 masquerade fully-random
\t\tip6 saddr != fc00::/48 ip6 daddr fc00::/48 masquerade fully-random
\t}
}
";

fn assert_golden(ns: &Netns) {
    assert_eq!(list(ns, "ip", "flannel-ipv4"), GOLDEN_V4);
    assert_eq!(list(ns, "ip6", "flannel-ipv6"), GOLDEN_V6);
}

#[test]
fn tables_are_upstreams_and_every_drift_is_repaired() {
    let ns = Netns::new("mnft").unwrap();
    let rules = build(&ns, Backend::Nftables, &wanted("10.244.1.0/24", true));
    assert_eq!(ensure(&ns, &rules), 1, "first run writes");
    assert_golden(&ns);
    assert_eq!(ensure(&ns, &rules), 0, "in place: nothing written");
    assert!(
        !tables(&ns).contains("flannel-probe"),
        "the fully-random probe leaves nothing"
    );

    let drifts: [&[&str]; 5] = [
        &["nft", "flush", "ruleset"],
        &["nft", "delete", "table", "ip6", "flannel-ipv6"],
        &["nft", "flush", "chain", "ip", "flannel-ipv4", "postrtg"],
        &[
            "nft",
            "add",
            "rule",
            "ip",
            "flannel-ipv4",
            "forward",
            "drop",
        ],
        &[
            "nft",
            "insert",
            "rule",
            "ip6",
            "flannel-ipv6",
            "postrtg",
            "accept",
        ],
    ];
    for drift in drifts {
        ns.exec_ok(drift).unwrap();
        assert_eq!(ensure(&ns, &rules), 1, "{drift:?} is noticed");
        assert_golden(&ns);
        assert_eq!(ensure(&ns, &rules), 0, "and then left alone");
    }

    // Clones (the daemon's periodic check runs on one) share what was written.
    assert_eq!(ensure(&ns, &rules.clone()), 0);

    // A new subnet, then masquerading switched off: each run leaves exactly its own rules.
    let moved = build(&ns, Backend::Nftables, &wanted("10.244.7.0/24", true));
    assert_eq!(ensure(&ns, &moved), 1);
    let v4 = list(&ns, "ip", "flannel-ipv4");
    assert_eq!(v4, GOLDEN_V4.replace("10.244.1.0/24", "10.244.7.0/24"));
    let forward_only = build(&ns, Backend::Nftables, &wanted("10.244.7.0/24", false));
    assert_eq!(ensure(&ns, &forward_only), 1);
    let v4 = list(&ns, "ip", "flannel-ipv4");
    assert!(
        v4.contains("chain forward") && !v4.contains("postrtg"),
        "{v4}"
    );
}

#[test]
fn fully_random_can_be_turned_off() {
    let ns = Netns::new("mnftr").unwrap();
    let mut w = wanted("10.244.1.0/24", true);
    w.random_fully_disabled = true;
    ensure(&ns, &build(&ns, Backend::Nftables, &w));
    let v4 = list(&ns, "ip", "flannel-ipv4");
    assert!(!v4.contains("fully-random"), "{v4}");
    assert!(v4.contains("ip daddr != 224.0.0.0/4 masquerade\n"), "{v4}");
}

fn install(ns: &Netns, rules: &Rules) -> Vec<String> {
    in_ns(ns, || {
        rules.ensure()?;
        rules.remove_other_mode()
    })
    .unwrap()
}

fn flannel_iptables_lines(ns: &Netns) -> Vec<String> {
    let mut lines = Vec::new();
    for family in ["iptables", "ip6tables"] {
        for table in ["nat", "filter"] {
            lines.extend(
                iptables_save(ns, family, table)
                    .lines()
                    .filter(|l| l.contains("FLANNEL"))
                    .map(|l| format!("{family} {table}: {l}")),
            );
        }
    }
    lines
}

#[test]
fn switching_iptables_nftables_iptables_leaves_nothing_of_the_other() {
    let ns = Netns::new("mnfts").unwrap();
    let w = wanted("10.244.1.0/24", true);
    let ipt = build(&ns, Backend::Iptables, &w);
    let nft = build(&ns, Backend::Nftables, &w);

    assert_eq!(
        install(&ns, &ipt),
        Vec::<String>::new(),
        "nothing to remove"
    );
    // Per family: nat declaration, jump and six rules; filter declaration, jump, two rules.
    assert_eq!(flannel_iptables_lines(&ns).len(), 24);
    // An older run's duplicate jump must go too, or the chain could not be deleted.
    ns.exec_ok(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-j",
        "FLANNEL-POSTRTG",
    ])
    .unwrap();

    assert_eq!(
        install(&ns, &nft),
        [
            "iptables FLANNEL-POSTRTG",
            "iptables FLANNEL-FWD",
            "ip6tables FLANNEL-POSTRTG",
            "ip6tables FLANNEL-FWD"
        ]
    );
    assert_eq!(flannel_iptables_lines(&ns), Vec::<String>::new());
    assert_golden(&ns);

    assert_eq!(install(&ns, &ipt), ["ip flannel-ipv4", "ip6 flannel-ipv6"]);
    let left = tables(&ns);
    assert!(!left.contains("flannel-ipv"), "{left}");
    assert_eq!(flannel_iptables_lines(&ns).len(), 24);

    // Each mode on its own again: nothing more to remove.
    assert_eq!(install(&ns, &ipt), Vec::<String>::new());
}

//! The iptables rule sets against a real iptables, inside a throw-away namespace: installed
//! exactly as upstream's text, recognised as in place (so the periodic check writes nothing),
//! restored after a flush, and replaced when the subnet changes.

use conformance::Netns;
use flanneld::masq::{forward_rules, masq_rules, RuleSet};

fn in_ns<R>(ns: &Netns, f: impl FnOnce() -> R) -> R {
    netops::netns::run_in(ns.path(), f).expect("enter test namespace")
}

fn save(ns: &Netns, table: &str) -> String {
    ns.exec_ok(&["iptables-save", "-t", table]).unwrap()
}

fn lines_of(text: &str, chain: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("-A {chain} ")))
        .map(str::to_owned)
        .collect()
}

fn masq(subnet: &str) -> RuleSet {
    masq_rules(
        "10.244.0.0/16".parse().unwrap(),
        subnet.parse().unwrap(),
        true,
    )
}

#[test]
fn rules_are_installed_checked_and_restored() {
    let ns = Netns::new("masq").unwrap();
    let set = masq("10.244.1.0/24");
    let fwd = forward_rules("10.244.0.0/16".parse().unwrap());

    assert!(in_ns(&ns, || set.ensure()).unwrap(), "first run installs");
    assert!(in_ns(&ns, || fwd.ensure()).unwrap());
    let nat = save(&ns, "nat");
    assert_eq!(
        lines_of(&nat, "FLANNEL-POSTRTG"),
        [
            "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN",
            "-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN",
            "-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN",
            "-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN",
            "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully",
            "-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully",
        ]
    );
    assert_eq!(
        lines_of(&nat, "POSTROUTING"),
        ["-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG"]
    );
    let filter = save(&ns, "filter");
    assert_eq!(
        lines_of(&filter, "FLANNEL-FWD"),
        [
            "-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
            "-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
        ]
    );
    assert_eq!(
        lines_of(&filter, "FORWARD"),
        ["-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD"]
    );

    // In place: the periodic check writes nothing.
    assert!(!in_ns(&ns, || set.ensure()).unwrap());
    assert!(!in_ns(&ns, || fwd.ensure()).unwrap());

    // Someone flushes our chain, or removes the jump: restored, jump not duplicated.
    ns.exec_ok(&["iptables", "-t", "nat", "-F", "FLANNEL-POSTRTG"])
        .unwrap();
    assert!(in_ns(&ns, || set.ensure()).unwrap());
    assert_eq!(lines_of(&save(&ns, "nat"), "FLANNEL-POSTRTG").len(), 6);
    ns.exec_ok(&[
        "iptables",
        "-D",
        "FORWARD",
        "-m",
        "comment",
        "--comment",
        "flanneld forward",
        "-j",
        "FLANNEL-FWD",
    ])
    .unwrap();
    assert!(in_ns(&ns, || fwd.ensure()).unwrap());
    assert_eq!(lines_of(&save(&ns, "filter"), "FORWARD").len(), 1);

    // A new subnet replaces the old rules instead of adding to them.
    let moved = masq("10.244.7.0/24");
    assert!(in_ns(&ns, || moved.ensure()).unwrap());
    let nat = save(&ns, "nat");
    assert!(!nat.contains("10.244.1.0/24"), "{nat}");
    assert_eq!(lines_of(&nat, "FLANNEL-POSTRTG").len(), 6);
    assert_eq!(lines_of(&nat, "POSTROUTING").len(), 1);
}

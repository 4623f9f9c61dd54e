use super::*;
use netops::firewall::iptables::SavedTable;

use crate::chains::tests::conf;

const EMPTY_NAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n";

/// `iptables-save -t nat` after the observed example, as recorded in the spec.
const OBSERVED: &str = r#"*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-DN-9cccacf967e00a3c04e26 - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-DN-9cccacf967e00a3c04e26 -s 10.244.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.2:80
-A CNI-DN-9cccacf967e00a3c04e26 -s 10.244.1.0/24 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -s 127.0.0.1/32 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.244.1.2:53
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"cbr0\" id: \"ctr1\"" -m multiport --dports 8080 -j CNI-DN-9cccacf967e00a3c04e26
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \"cbr0\" id: \"ctr1\"" -m multiport --dports 5353 -j CNI-DN-9cccacf967e00a3c04e26
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
"#;

fn batch(state: &str) -> Batch {
    Batch::with_state(Family::V4, SavedTable::parse(state, "nat").unwrap()).unwrap()
}

fn example() -> PortMapConf {
    conf(&[(8080, 80, "tcp", None), (5353, 53, "udp", Some("10.0.0.5"))])
}

/// Rules grouped per chain (iptables-save orders chains its own way; order within a chain
/// is what matters).
fn by_chain(t: &SavedTable) -> Vec<(String, Vec<Vec<String>>)> {
    let mut names: Vec<String> = t.rules.iter().map(|r| r.chain.clone()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|c| (c.clone(), t.rules_in(&c).map(|a| a.to_vec()).collect()))
        .collect()
}

#[test]
fn add_on_a_fresh_table_is_one_exact_batch() {
    let c = example();
    let mut b = batch(EMPTY_NAT);
    plan_add(&mut b, &c, "ctr1", c.container_v4.unwrap()).unwrap();
    let dn = "CNI-DN-9cccacf967e00a3c04e26";
    let expected = format!(
        r#"*nat
-N CNI-HOSTPORT-SETMARK
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
-N CNI-HOSTPORT-MASQ
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-N CNI-HOSTPORT-DNAT
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-N {dn}
-A {dn} -s 10.244.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A {dn} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A {dn} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.2:80
-A {dn} -s 10.244.1.0/24 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK
-A {dn} -s 127.0.0.1/32 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK
-A {dn} -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.244.1.2:53
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"cbr0\" id: \"ctr1\"" -m multiport --dports 8080 -j {dn}
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \"cbr0\" id: \"ctr1\"" -m multiport --dports 5353 -j {dn}
COMMIT
"#
    );
    assert_eq!(b.render(), expected);
    let observed = SavedTable::parse(OBSERVED, "nat").unwrap();
    assert_eq!(
        by_chain(b.state()),
        by_chain(&observed),
        "the batch leaves exactly the observed rules"
    );
}

#[test]
fn add_again_rebuilds_only_the_container_chain() {
    let c = example();
    let mut b = batch(OBSERVED);
    plan_add(&mut b, &c, "ctr1", c.container_v4.unwrap()).unwrap();
    let text = b.render();
    assert!(
        !text.contains("CNI-HOSTPORT-SETMARK -m comment"),
        "top-level rules exist already:\n{text}"
    );
    assert!(!text.contains("-I POSTROUTING"), "{text}");
    assert!(text.contains("-X CNI-DN-9cccacf967e00a3c04e26"), "{text}");
    let observed = SavedTable::parse(OBSERVED, "nat").unwrap();
    assert_eq!(by_chain(b.state()), by_chain(&observed));
}

#[test]
fn del_removes_jumps_and_chain_but_keeps_top_level() {
    let mut b = batch(OBSERVED);
    plan_del(&mut b, "cbr0", "ctr1").unwrap();
    let dn = "CNI-DN-9cccacf967e00a3c04e26";
    assert_eq!(
        b.render(),
        format!(
            "*nat\n-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -m multiport --dports 8080 -j {dn}\n\
             -D CNI-HOSTPORT-DNAT -p udp -m comment --comment \"dnat name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -m multiport --dports 5353 -j {dn}\n\
             -F {dn}\n-X {dn}\nCOMMIT\n"
        )
    );
    assert!(b.state().has_chain("CNI-HOSTPORT-DNAT") && b.state().has_chain("CNI-HOSTPORT-MASQ"));
    let mut again = Batch::with_state(Family::V4, b.state().clone()).unwrap();
    plan_del(&mut again, "cbr0", "ctr1").unwrap();
    assert!(again.is_empty(), "second DEL changes nothing");
}

#[test]
fn del_also_removes_legacy_snat_chain() {
    let sn = crate::chains::legacy_snat_chain_name("cbr0", "ctr1");
    let state = EMPTY_NAT.replace(
        "COMMIT",
        &format!(":{sn} - [0:0]\n-A POSTROUTING -j {sn}\n-A {sn} -j MASQUERADE\nCOMMIT"),
    );
    let mut b = batch(&state);
    plan_del(&mut b, "cbr0", "ctr1").unwrap();
    assert_eq!(
        b.render(),
        format!("*nat\n-D POSTROUTING -j {sn}\n-F {sn}\n-X {sn}\nCOMMIT\n")
    );
}

#[test]
fn check_finds_missing_chain_rules_and_jumps() {
    let c = example();
    let ip = c.container_v4.unwrap();
    let observed = SavedTable::parse(OBSERVED, "nat").unwrap();
    check_state(&observed, &c, "ctr1", ip).unwrap();
    assert_eq!(
        check_state(&observed, &c, "ctr2", ip)
            .unwrap_err()
            .to_string(),
        format!(
            "chain {} not found in iptables table nat",
            crate::chains::dnat_chain_name("cbr0", "ctr2")
        )
    );
    let no_dnat = OBSERVED.replace("-A CNI-DN-9cccacf967e00a3c04e26 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.2:80\n", "");
    let err =
        check_state(&SavedTable::parse(&no_dnat, "nat").unwrap(), &c, "ctr1", ip).unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.2:80 in chain CNI-DN-9cccacf967e00a3c04e26 not found in table nat"
    );
    let no_jump = OBSERVED.replace(
        "-A CNI-HOSTPORT-DNAT -p udp",
        "-A CNI-HOSTPORT-DNAT -p sctp",
    );
    let err =
        check_state(&SavedTable::parse(&no_jump, "nat").unwrap(), &c, "ctr1", ip).unwrap_err();
    assert!(
        err.to_string()
            .contains("in chain CNI-HOSTPORT-DNAT not found"),
        "{err}"
    );
}

fn rejected_restore() -> PortmapError {
    use std::os::unix::process::ExitStatusExt;
    PortmapError::Setup(IptablesError::Failed {
        program: "iptables-restore".into(),
        status: std::process::ExitStatus::from_raw(1 << 8),
        stderr: "iptables-restore: line 2 failed: Chain already exists.".into(),
        failed_line: Some("-N CNI-HOSTPORT-SETMARK".into()),
    })
}

#[test]
fn a_restore_that_lost_a_chain_creation_race_is_planned_again() {
    let mut calls = 0;
    let r = retry_lost_races(|| {
        calls += 1;
        if calls == 1 {
            Err(rejected_restore())
        } else {
            Ok(())
        }
    });
    assert!(r.is_ok());
    assert_eq!(calls, 2);
}

#[test]
fn retries_are_bounded_and_only_for_rejected_restores() {
    let mut calls = 0;
    let r = retry_lost_races(|| {
        calls += 1;
        Err(rejected_restore())
    });
    assert!(matches!(
        r,
        Err(PortmapError::Setup(IptablesError::Failed { .. }))
    ));
    assert_eq!(calls, RESTORE_ATTEMPTS);

    // A table that cannot be read is not a race: no second attempt.
    let mut calls = 0;
    let r = retry_lost_races(|| {
        calls += 1;
        Err(PortmapError::OpenIptables(IptablesError::InvalidToken(
            "x".into(),
        )))
    });
    assert!(matches!(r, Err(PortmapError::OpenIptables(_))));
    assert_eq!(calls, 1);
}

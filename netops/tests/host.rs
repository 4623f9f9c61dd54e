//! Root tests: namespace guard, sysctl and iptables inside test namespaces.

mod common;

use std::os::unix::fs::MetadataExt;

use common::TestNetns;
use netops::firewall::iptables::{self, Batch, IptablesError};
use netops::firewall::nft::{self, NftError};
use netops::netns::{run_in, NetnsGuard};
use netops::sysctl;
use netops::Family;

fn current_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

#[test]
fn guard_enters_and_restores_even_on_panic() {
    let ns = TestNetns::new();
    let home = current_netns_inode();
    let target = std::fs::metadata(ns.path()).unwrap().ino();
    {
        let _guard = NetnsGuard::enter_path(ns.path()).unwrap();
        assert_eq!(current_netns_inode(), target);
    }
    assert_eq!(current_netns_inode(), home);

    let panicked = std::panic::catch_unwind(|| {
        run_in(ns.path(), || -> () { panic!("boom inside the namespace") }).unwrap();
    });
    assert!(panicked.is_err());
    assert_eq!(current_netns_inode(), home, "unwinding restored the thread");

    let err = NetnsGuard::enter_path("/var/run/netns/fr-nl-does-not-exist")
        .err()
        .unwrap();
    assert!(err.is_not_found());
}

#[test]
fn sysctl_writes_only_when_different_and_stays_in_the_namespace() {
    let ns = TestNetns::new();
    let host_before = sysctl::get("net/ipv4/ip_forward").unwrap();
    let (first, second, value) = run_in(ns.path(), || {
        sysctl::set("net/ipv4/ip_forward", "0").unwrap();
        let first = sysctl::set("net/ipv4/ip_forward", "1").unwrap();
        let second = sysctl::set("net/ipv4/ip_forward", "1").unwrap();
        (first, second, sysctl::get("net/ipv4/ip_forward").unwrap())
    })
    .unwrap();
    assert!(first && !second);
    assert_eq!(value, "1");
    assert_eq!(
        sysctl::get("net/ipv4/ip_forward").unwrap(),
        host_before,
        "host untouched"
    );
    let err = run_in(ns.path(), || {
        sysctl::set("net/ipv4/conf/nope0/forwarding", "1")
    })
    .unwrap()
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to read sysctl net/ipv4/conf/nope0/forwarding"),
        "{err}"
    );
}

const COMMENT: &str = r#"dnat name: "cbr0" id: "ctr1""#;

fn masq_rule() -> Vec<String> {
    [
        "-s",
        "10.244.1.0/24",
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "ACCEPT",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn iptables_batch_applies_and_reads_back() {
    let ns = TestNetns::new();
    let _guard = NetnsGuard::enter_path(ns.path()).unwrap();
    iptables::probe(Family::V4).unwrap();
    assert!(iptables::usable(Family::V4));

    let jump = ["-s", "10.244.1.2/32", "-j", "CNI-FR-TEST"];
    let mut b = Batch::load(Family::V4, "nat").unwrap();
    b.ensure_chain("CNI-FR-TEST").unwrap();
    b.append_unique("CNI-FR-TEST", &masq_rule()).unwrap();
    b.append_unique(
        "CNI-FR-TEST",
        &["!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"],
    )
    .unwrap();
    b.append_unique("POSTROUTING", &jump).unwrap();
    b.insert_unique(
        "POSTROUTING",
        &[
            "-m",
            "comment",
            "--comment",
            "flanneld masq",
            "-j",
            "RETURN",
        ],
    )
    .unwrap();
    b.apply().unwrap();

    let saved = iptables::save(Family::V4, "nat").unwrap();
    assert!(saved.has_chain("CNI-FR-TEST"));
    assert!(saved.has_rule("CNI-FR-TEST", &masq_rule()), "{saved:?}");
    assert!(saved.has_rule("POSTROUTING", &jump));
    let post: Vec<_> = saved.rules_in("POSTROUTING").collect();
    assert_eq!(post[0][3], "flanneld masq", "insert went to the top");

    // Reapplying the same intent is a no-op batch: no process, no duplicate rules.
    let mut again = Batch::load(Family::V4, "nat").unwrap();
    again
        .ensure_chain("CNI-FR-TEST")
        .unwrap()
        .append_unique("CNI-FR-TEST", &masq_rule())
        .unwrap();
    again.append_unique("POSTROUTING", &jump).unwrap();
    assert!(again.is_empty(), "{}", again.render());

    // create-or-flush empties the chain; delete removes jump then chain.
    let mut flush = Batch::load(Family::V4, "nat").unwrap();
    flush.flush_chain("CNI-FR-TEST").unwrap();
    flush.apply().unwrap();
    assert_eq!(
        iptables::save(Family::V4, "nat")
            .unwrap()
            .rules_in("CNI-FR-TEST")
            .count(),
        0
    );
    let mut del = Batch::load(Family::V4, "nat").unwrap();
    del.delete_rule("POSTROUTING", &jump)
        .unwrap()
        .delete_chain("CNI-FR-TEST")
        .unwrap();
    del.apply().unwrap();
    let after = iptables::save(Family::V4, "nat").unwrap();
    assert!(!after.has_chain("CNI-FR-TEST") && !after.has_rule("POSTROUTING", &jump));
}

#[test]
fn iptables_failure_names_the_failing_line_and_changes_nothing() {
    let ns = TestNetns::new();
    let _guard = NetnsGuard::enter_path(ns.path()).unwrap();
    let mut b = Batch::load(Family::V4, "filter").unwrap();
    b.ensure_chain("FR-OK").unwrap();
    b.append("FORWARD", &["-j", "FR-MISSING"]).unwrap();
    let err = b.apply().unwrap_err();
    assert!(matches!(err, IptablesError::Failed { .. }), "{err}");
    assert!(
        err.to_string().contains("FR-MISSING"),
        "stderr is part of the error: {err}"
    );
    assert!(
        !iptables::save(Family::V4, "filter")
            .unwrap()
            .has_chain("FR-OK"),
        "restore is all or nothing"
    );
}

#[test]
fn ip6tables_batch_applies() {
    let ns = TestNetns::new();
    let _guard = NetnsGuard::enter_path(ns.path()).unwrap();
    let mut b = Batch::load(Family::V6, "nat").unwrap();
    b.ensure_chain("CNI-FR-V6").unwrap();
    b.append(
        "CNI-FR-V6",
        &[
            "!",
            "-d",
            "ff00::/8",
            "-m",
            "comment",
            "--comment",
            COMMENT,
            "-j",
            "MASQUERADE",
        ],
    )
    .unwrap();
    b.apply().unwrap();
    let saved = iptables::save(Family::V6, "nat").unwrap();
    let rules: Vec<_> = saved.rules_in("CNI-FR-V6").collect();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].iter().any(|t| t == COMMENT), "{rules:?}");
}

#[test]
fn nft_scripts_apply_atomically_and_tables_list_back() {
    let ns = TestNetns::new();
    run_in(ns.path(), || {
        nft::probe().unwrap();
        assert_eq!(
            nft::list_table(nft::TableFamily::Inet, "frtest").unwrap(),
            None
        );
        nft::apply(
            "add table inet frtest\n\
             add chain inet frtest c1\n\
             add rule inet frtest c1 drop comment \"mine\"\n\
             add rule inet frtest c1 accept\n",
        )
        .unwrap();
        let table = nft::list_table(nft::TableFamily::Inet, "frtest")
            .unwrap()
            .expect("table exists");
        assert_eq!(table.chains, ["c1"]);
        let comments: Vec<_> = table.rules_in("c1").map(|r| r.comment.clone()).collect();
        assert_eq!(comments, [Some("mine".to_string()), None]);

        // The second command fails, so the first must not take effect either.
        let err = nft::apply(
            "add chain inet frtest c2\n\
             add rule inet frtest nope accept\n",
        )
        .unwrap_err();
        assert!(matches!(err, NftError::Failed { .. }), "{err}");
        assert!(
            err.to_string().contains("No such file or directory"),
            "{err}"
        );
        let table = nft::list_table(nft::TableFamily::Inet, "frtest")
            .unwrap()
            .unwrap();
        assert!(!table.has_chain("c2"), "failed transaction left c2 behind");
        // Same name, other family: still absent.
        assert_eq!(
            nft::list_table(nft::TableFamily::Ip, "frtest").unwrap(),
            None
        );
    })
    .unwrap();
}

#[test]
fn nfquery_sees_nft_tables_and_iptables_nft_chains_without_a_process() {
    use netops::firewall::nfquery::{self, IptablesVariant};
    use netops::firewall::nft::TableFamily;
    let ns = TestNetns::new();
    run_in(ns.path(), || {
        assert!(!nfquery::table_exists(TableFamily::Inet, "nfq").unwrap());
        assert!(!nfquery::chain_exists(TableFamily::Inet, "nfq", "c1").unwrap());
        nft::apply("add table inet nfq\nadd chain inet nfq c1\n").unwrap();
        assert!(nfquery::table_exists(TableFamily::Inet, "nfq").unwrap());
        assert!(
            !nfquery::table_exists(TableFamily::Ip, "nfq").unwrap(),
            "other family"
        );
        assert!(nfquery::chain_exists(TableFamily::Inet, "nfq", "c1").unwrap());
        assert!(!nfquery::chain_exists(TableFamily::Inet, "nfq", "c2").unwrap());

        // iptables-nft chains are nf_tables chains of table `ip nat`.
        if nfquery::iptables_variant("iptables-restore") == IptablesVariant::Nft {
            let mut b = Batch::load(Family::V4, "nat").unwrap();
            b.ensure_chain("CNI-NFQ").unwrap();
            b.apply().unwrap();
            assert!(nfquery::chain_exists(TableFamily::Ip, "nat", "CNI-NFQ").unwrap());
            assert!(!nfquery::chain_exists(TableFamily::Ip6, "nat", "CNI-NFQ").unwrap());
        }
    })
    .unwrap();
}

//! Our bridge over whole attachment lifecycles: traffic between pods, many concurrent ADDs
//! and DELs on one bridge, DEL idempotency (also after the netns is gone), CHECK, STATUS,
//! and the rollback of a failed ADD.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use conformance::support::bridge::*;
use conformance::{Attachment, Netns, Verb};
use serde_json::{json, Value};

const NET: &str = "brlife";

fn masq_plugin() -> Value {
    json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
           "hairpinMode": true, "ipam": ipam_v4()})
}

fn ip_of(result: &Value) -> String {
    let cidr = result["ips"][0]["address"]
        .as_str()
        .expect("ips[0].address");
    cidr.split('/').next().unwrap().to_string()
}

fn pings(from: &Netns, to: &str) -> bool {
    from.exec(&["ping", "-c", "1", "-W", "3", to])
        .status
        .success()
}

#[test]
fn two_pods_on_one_bridge_reach_each_other_and_the_gateway() {
    let side = Side::new(Pair::Ours);
    let conf = side.conflist("1.0.0", NET, &masq_plugin());
    let (a, b) = (side.pod(), side.pod());
    let ra = side.add(&conf, &a, "ctr-a").expect("ADD a");
    let rb = side.add(&conf, &b, "ctr-b").expect("ADD b");
    assert_ne!(ip_of(&ra), ip_of(&rb));
    assert!(pings(&a, &ip_of(&rb)), "a -> b");
    assert!(pings(&b, &ip_of(&ra)), "b -> a");
    assert!(pings(&a, "10.88.0.1"), "a -> gateway");
    assert!(pings(&side.host, &ip_of(&ra)), "host -> a");
    side.del(&conf, &a, "ctr-a").expect("DEL a");
    assert!(pings(&b, "10.88.0.1"), "b unaffected by a's DEL");
    side.del(&conf, &b, "ctr-b").expect("DEL b");
    assert_no_leftovers(&side, NET);
}

#[test]
fn sixty_four_concurrent_adds_then_dels() {
    const N: usize = 64;
    let side = Side::new(Pair::Ours);
    let conf = side.conflist("1.0.0", NET, &masq_plugin());
    let pods: Vec<Netns> = (0..N).map(|_| side.pod()).collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (side, conf) = (&side, &conf);
                s.spawn(move || side.add(conf, pod, &format!("ctr-{i}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("concurrent ADD"))
            .collect()
    });
    let ips: BTreeSet<String> = results.iter().map(ip_of).collect();
    assert_eq!(ips.len(), N, "duplicate IPs handed out");
    assert_eq!(side.reserved(NET).len(), N);
    assert_eq!(side.host.links_of_kind("veth").unwrap().len(), N);
    let nat = side.host.iptables_save("nat").unwrap();
    assert_eq!(nat.matches("-A POSTROUTING").count(), N, "{nat}");
    assert_eq!(
        side.host.addresses_of("cni0").unwrap(),
        vec!["10.88.0.1/24"]
    );

    std::thread::scope(|s| {
        for (i, pod) in pods.iter().enumerate() {
            let (side, conf) = (&side, &conf);
            s.spawn(move || {
                side.del(conf, pod, &format!("ctr-{i}"))
                    .expect("concurrent DEL")
            });
        }
    });
    assert_no_leftovers(&side, NET);
}

#[test]
fn del_is_idempotent() {
    let side = Side::new(Pair::Ours);
    let conf = side.conflist("1.0.0", NET, &masq_plugin());
    let pod = side.pod();
    side.add(&conf, &pod, "ctr-twice").expect("ADD");
    side.del(&conf, &pod, "ctr-twice").expect("first DEL");
    side.del(&conf, &pod, "ctr-twice").expect("second DEL");
    assert_no_leftovers(&side, NET);
    // DEL without any earlier ADD, and with an empty CNI_NETNS.
    side.del(&conf, &pod, "ctr-never")
        .expect("DEL of unknown container");
    let att = Attachment {
        netns: Default::default(),
        ..Attachment::new(&side.host, &pod, "eth0", "ctr-never")
    };
    side.driver
        .run(Verb::Del, &conf, &att)
        .expect("DEL without netns");
}

/// Upstream leaks the masquerade chain when the netns is deleted before DEL (cni.md §7.14);
/// ours finds it by name.
#[test]
fn del_after_netns_is_gone_removes_everything() {
    let mut leaks = Vec::new();
    for pair in [Pair::Reference, Pair::Ours] {
        let side = Side::new(pair);
        let conf = side.conflist("1.0.0", NET, &masq_plugin());
        let pod = side.pod();
        let path = pod.path().to_owned();
        side.add(&conf, &pod, "ctr-gone").expect("ADD");
        drop(pod);
        let att = Attachment {
            netns: path,
            ..Attachment::new(&side.host, &side.pod(), "eth0", "ctr-gone")
        };
        side.driver
            .run(Verb::Del, &conf, &att)
            .expect("DEL after netns deletion");
        side.driver.run(Verb::Del, &conf, &att).expect("and again");
        assert!(side.reserved(NET).is_empty(), "{pair:?}: IP released");
        leaks.push(side.host.iptables_save("nat").unwrap().contains("CNI-"));
        if pair == Pair::Ours {
            // The kernel destroys a deleted namespace's veth pair from a work queue; wait
            // for that before asking whether anything is left.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !side.host.links_of_kind("veth").unwrap().is_empty() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_no_leftovers(&side, NET);
        }
    }
    assert_eq!(
        leaks,
        vec![true, false],
        "reference leaks the chain, ours does not"
    );
}

#[test]
fn check_passes_in_l2_mode_and_notices_damage() {
    let side = Side::new(Pair::Ours);
    let l2 = side.conflist(
        "1.0.0",
        "brl2",
        &json!({"type": "bridge", "bridge": "l2br0"}),
    );
    let pod = side.pod();
    side.add(&l2, &pod, "ctr-l2").expect("ADD");
    side.check(&l2, &pod, "ctr-l2")
        .expect("CHECK of an L2 attachment");
    side.del(&l2, &pod, "ctr-l2").expect("DEL");

    // Upstream's CHECK fails on L2 configs (it calls IPAM CHECK with an empty type).
    let reference = Side::new(Pair::Reference);
    let l2r = reference.conflist(
        "1.0.0",
        "brl2",
        &json!({"type": "bridge", "bridge": "l2br0"}),
    );
    let rpod = reference.pod();
    reference.add(&l2r, &rpod, "ctr-l2").expect("reference ADD");
    assert!(reference.check(&l2r, &rpod, "ctr-l2").is_err());

    let conf = side.conflist("1.0.0", NET, &masq_plugin());
    let pod = side.pod();
    side.add(&conf, &pod, "ctr-chk").expect("ADD");
    side.check(&conf, &pod, "ctr-chk").expect("CHECK");
    pod.exec_ok(&["ip", "route", "del", "10.77.0.0/16"])
        .unwrap();
    let err = side
        .check(&conf, &pod, "ctr-chk")
        .expect_err("route removed");
    assert!(err.msg.starts_with("Expected Route"), "{err:?}");
    pod.exec_ok(&["ip", "link", "del", "eth0"]).unwrap();
    let err = side
        .check(&conf, &pod, "ctr-chk")
        .expect_err("interface removed");
    assert_eq!(err.code, Some(999));
    assert_eq!(err.msg, "Interface name eth0 not found");
    side.del(&conf, &pod, "ctr-chk").expect("DEL");
    assert_no_leftovers(&side, NET);
}

/// A second ADD of the same interface fails without touching the first attachment.
#[test]
fn second_add_of_same_interface_fails_cleanly() {
    let side = Side::new(Pair::Ours);
    let conf = side.conflist("1.0.0", NET, &masq_plugin());
    let pod = side.pod();
    let first = side.add(&conf, &pod, "ctr-dup").expect("ADD");
    let err = side
        .add(&conf, &pod, "ctr-dup2")
        .expect_err("eth0 already exists in the pod");
    assert!(err.msg.contains("already exists"), "{err:?}");
    assert_eq!(side.host.links_of_kind("veth").unwrap().len(), 1);
    assert_eq!(
        pod.addresses_of("eth0").unwrap(),
        vec![first["ips"][0]["address"].as_str().unwrap()]
    );
    assert_eq!(side.reserved(NET).len(), 1);
    side.del(&conf, &pod, "ctr-dup").expect("DEL");
    assert_no_leftovers(&side, NET);
}

/// STATUS (1.1.0) delegates to IPAM; libcni 1.1.2 has no STATUS, so the plugin is run
/// directly.
#[test]
fn status_delegates_to_ipam() {
    let side = Side::new(Pair::Ours);
    let plugins = Pair::Ours.plugins();
    let dir = plugins.path().display().to_string();
    let mut conf: Value =
        serde_json::from_str(&side.conflist("1.1.0", NET, &masq_plugin())).unwrap();
    let mut plugin = conf["plugins"][0].take();
    plugin["cniVersion"] = json!("1.1.0");
    plugin["name"] = json!(NET);
    let env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", dir.as_str())];
    let (exit, stdout) = exec_plugin(&side.host, &plugins, &env, &plugin.to_string());
    assert_eq!((exit, stdout.as_str()), (0, ""));
    plugin["ipam"]["type"] = json!("no-such-ipam");
    let (exit, stdout) = exec_plugin(&side.host, &plugins, &env, &plugin.to_string());
    assert_eq!(exit, 1, "{stdout}");
    assert!(stdout.contains("failed to find plugin"), "{stdout}");
}

/// `disableContainerInterface` (L2 only): the container end stays down and ADD does not wait
/// for the port; with IPAM the config is refused.
#[test]
fn disabled_container_interface() {
    let side = Side::new(Pair::Ours);
    let plugin = json!({"type": "bridge", "bridge": "l2br1", "disableContainerInterface": true});
    let conf = side.conflist("1.0.0", "brdis", &plugin);
    let pod = side.pod();
    side.add(&conf, &pod, "ctr-dis").expect("ADD");
    let eth0 = pod.link("eth0").unwrap().expect("eth0 exists");
    let up = eth0["flags"].as_array().unwrap().iter().any(|f| f == "UP");
    assert!(!up, "{eth0:#}");
    side.del(&conf, &pod, "ctr-dis").expect("DEL");
    assert!(side.host.links_of_kind("veth").unwrap().is_empty());

    let with_ipam = side.conflist(
        "1.0.0",
        "brdis",
        &json!({"type": "bridge", "disableContainerInterface": true, "ipam": ipam_v4()}),
    );
    let err = side
        .add(&with_ipam, &side.pod(), "ctr-dis2")
        .expect_err("IPAM needs the interface");
    assert_eq!(
        err.msg,
        "cannot use IPAM when DisableContainerInterface flag is set"
    );
}

/// `ipMasqBackend: "nftables"` (upstream since v1.5; the reference v1.1.1 has only
/// iptables): one masquerade rule per container IP, removed by DEL; an unknown backend is
/// refused and rolled back.
#[test]
fn nftables_masquerade_backend() {
    let side = Side::new(Pair::Ours);
    let mut plugin = masq_plugin();
    plugin["ipMasqBackend"] = json!("nftables");
    let conf = side.conflist("1.0.0", NET, &plugin);
    let pod = side.pod();
    let res = side.add(&conf, &pod, "ctr-nft").expect("ADD");
    let ruleset = side.host.nft_ruleset().unwrap().to_string();
    assert!(ruleset.contains("cni_plugins_masquerade"), "{ruleset}");
    assert!(ruleset.contains(&ip_of(&res)), "{ruleset}");
    assert!(!side.host.iptables_save("nat").unwrap().contains("CNI-"));
    side.del(&conf, &pod, "ctr-nft").expect("DEL");
    let ruleset = side.host.nft_ruleset().unwrap().to_string();
    assert!(!ruleset.contains(&ip_of(&res)), "{ruleset}");
    assert_no_leftovers(&side, NET);

    plugin["ipMasqBackend"] = json!("pf");
    let conf = side.conflist("1.0.0", NET, &plugin);
    let err = side
        .add(&conf, &side.pod(), "ctr-pf")
        .expect_err("unknown backend");
    assert_eq!(err.msg, "unknown ipmasq backend \"pf\"");
    assert_no_leftovers(&side, NET);
}

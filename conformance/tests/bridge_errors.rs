//! Bad input: every case fails with the reference plugin's error code (and message where
//! it comes from the same source), and ours leaves nothing behind — no veth, no reserved IP,
//! no masquerade rule — even where upstream leaves its veth.

use conformance::support::bridge::*;
use conformance::{Attachment, CniFailure, Verb};
use serde_json::{json, Value};

const NET: &str = "brerr";
const CID: &str = "ctr-err-1";

fn masq_plugin(ipam: Value) -> Value {
    json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "ipam": ipam})
}

/// ADD through libcni on both sides; both must fail with the same code.
fn both_fail(version: &str, plugin: &Value) -> (CniFailure, CniFailure, Side) {
    let reference = Side::new(Pair::Reference);
    let ours = Side::new(Pair::Ours);
    let (r_pod, o_pod) = (reference.pod(), ours.pod());
    let r_err = reference
        .add(&reference.conflist(version, NET, plugin), &r_pod, CID)
        .expect_err("reference ADD must fail");
    let o_err = ours
        .add(&ours.conflist(version, NET, plugin), &o_pod, CID)
        .expect_err("our ADD must fail");
    assert_eq!(
        r_err.code, o_err.code,
        "codes differ:\nreference: {r_err:?}\nours: {o_err:?}"
    );
    assert_no_leftovers(&ours, NET);
    assert!(ours.host.links_of_kind("veth").unwrap().is_empty());
    (r_err, o_err, ours)
}

#[test]
fn ipam_plugin_not_found() {
    let (r, o, _) = both_fail("1.0.0", &masq_plugin(json!({"type": "no-such-ipam"})));
    assert_eq!(
        r.msg.split(" in path").next(),
        o.msg.split(" in path").next()
    );
    assert!(
        o.msg.starts_with("failed to find plugin \"no-such-ipam\""),
        "{o:?}"
    );
}

#[test]
fn invalid_cidr_in_ipam() {
    let ipam = json!({"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/33"}]]});
    let (r, o, _) = both_fail("1.0.0", &masq_plugin(ipam));
    assert_eq!(r.msg, o.msg);
}

#[test]
fn bridge_name_too_long() {
    let plugin = json!({"type": "bridge", "bridge": "averyverylongbridgename0", "ipam": ipam_v4()});
    let (r, o, _) = both_fail("1.0.0", &plugin);
    assert_eq!(r.msg, o.msg);
    assert!(
        o.msg
            .starts_with("failed to create bridge \"averyverylongbridgename0\""),
        "{o:?}"
    );
}

#[test]
fn hairpin_with_promiscuous_mode() {
    let plugin =
        json!({"type": "bridge", "hairpinMode": true, "promiscMode": true, "ipam": ipam_v4()});
    let (r, o, _) = both_fail("1.0.0", &plugin);
    assert_eq!(r.msg, o.msg);
}

#[test]
fn wrong_json_type_in_config() {
    let plugin = json!({"type": "bridge", "mtu": "1500", "ipam": ipam_v4()});
    let (r, o, _) = both_fail("1.0.0", &plugin);
    assert_eq!(r.msg, o.msg);
    assert_eq!(
        o.msg,
        "failed to load netconf: json: cannot unmarshal string into Go struct field NetConf.mtu of type int"
    );
}

#[test]
fn invalid_vlan_id() {
    let (r, o, _) = both_fail(
        "1.0.0",
        &json!({"type": "bridge", "vlan": 5000, "ipam": ipam_v4()}),
    );
    assert_eq!(r.msg, o.msg);
}

/// A /30 has one allocatable address (host-local skips the gateway): the second ADD finds
/// the range exhausted. Upstream leaves the second pod's veth behind; ours removes it.
#[test]
fn exhausted_range() {
    let ipam = json!({"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/30"}]]});
    let plugin = masq_plugin(ipam);
    let mut codes = Vec::new();
    for pair in [Pair::Reference, Pair::Ours] {
        let side = Side::new(pair);
        let conf = side.conflist("1.0.0", NET, &plugin);
        let (first, second) = (side.pod(), side.pod());
        side.add(&conf, &first, "ctr-first").expect("first ADD");
        let err = side
            .add(&conf, &second, "ctr-second")
            .expect_err("range is exhausted");
        assert!(
            err.msg.contains("no IP addresses available"),
            "{pair:?}: {err:?}"
        );
        codes.push((err.code, err.msg));
        if pair == Pair::Ours {
            assert_eq!(
                side.host.links_of_kind("veth").unwrap().len(),
                1,
                "only the first pod's veth"
            );
            assert!(
                second.link("eth0").unwrap().is_none(),
                "second pod's eth0 rolled back"
            );
            let nat = side.host.iptables_save("nat").unwrap();
            assert_eq!(nat.matches("-A POSTROUTING").count(), 1, "{nat}");
            side.del(&conf, &first, "ctr-first").expect("DEL");
            assert_no_leftovers(&side, NET);
        }
    }
    assert_eq!(codes[0], codes[1]);
}

#[test]
fn netns_that_is_a_regular_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut results = Vec::new();
    for pair in [Pair::Reference, Pair::Ours] {
        let side = Side::new(pair);
        let conf = side.conflist("1.0.0", NET, &masq_plugin(ipam_v4()));
        let att = Attachment {
            netns: file.path().to_owned(),
            ..Attachment::new(&side.host, &side.pod(), "eth0", CID)
        };
        let err = side
            .driver
            .run(Verb::Add, &conf, &att)
            .expect_err("not a netns");
        results.push((err.code, err.msg));
        if pair == Pair::Ours {
            assert_no_leftovers(&side, NET);
        }
    }
    assert_eq!(results[0], results[1]);
    assert!(
        results[1].1.starts_with("failed to open netns"),
        "{results:?}"
    );
}

fn env<'a>(plugins: &'a str, netns: &'a str, command: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", CID),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", plugins),
    ]
}

/// Cases libcni would refuse before running a plugin: run the binaries directly.
#[test]
fn process_edge_errors_match() {
    let stdin_ok = |side: &Side| {
        let c: Value =
            serde_json::from_str(&side.conflist("1.0.0", NET, &masq_plugin(ipam_v4()))).unwrap();
        let mut p = c["plugins"][0].clone();
        p["cniVersion"] = json!("1.0.0");
        p["name"] = json!(NET);
        p.to_string()
    };
    let mut outcomes: Vec<Vec<(i32, Option<u64>)>> = Vec::new();
    for pair in [Pair::Reference, Pair::Ours] {
        let side = Side::new(pair);
        let plugins = pair.plugins();
        let dir = plugins.path().display().to_string();
        let pod = side.pod();
        let netns = pod.path().display().to_string();
        let good = stdin_ok(&side);
        let unknown_version = good.replace("\"1.0.0\"", "\"9.9.9\"");
        let mut missing = env(&dir, &netns, "ADD");
        missing.retain(|(k, _)| *k != "CNI_NETNS" && *k != "CNI_IFNAME");
        let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
            (env(&dir, &netns, "ADD"), "{not json".to_string()),
            (env(&dir, &netns, "ADD"), unknown_version),
            (missing, good.clone()),
            (env(&dir, &netns, "FROB"), good.clone()),
        ];
        let mut got = Vec::new();
        for (vars, stdin) in cases {
            let (exit, stdout) = exec_plugin(&side.host, &plugins, &vars, &stdin);
            let code = serde_json::from_str::<Value>(&stdout)
                .ok()
                .and_then(|v| v["code"].as_u64());
            got.push((exit, code));
        }
        if pair == Pair::Ours {
            assert_no_leftovers(&side, NET);
        }
        outcomes.push(got);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(
        outcomes[1]
            .iter()
            .all(|(exit, code)| *exit == 1 && code.is_some()),
        "{outcomes:?}"
    );
}

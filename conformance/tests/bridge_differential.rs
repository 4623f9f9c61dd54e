//! Differential tests: the same conflist through libcni with the reference bridge +
//! host-local in one host namespace and with ours in another; results (normalised for MACs,
//! veth names and netns paths) and kernel state must be identical, before and after DEL.
//!
//! The reference plugins are Debian's v1.1.1. Where it predates a feature (portIsolation,
//! vlanTrunk) or where we deliberately improve on upstream, the test says so and asserts our
//! behaviour explicitly.

use conformance::support::bridge::*;
use serde_json::{json, Value};

const NET: &str = "brdiff";
const CID: &str = "ctr-diff-1";

struct Run {
    side: Side,
    pod: conformance::Netns,
    conf: String,
}

fn start(pair: Pair, version: &str, plugin: &Value) -> Run {
    let side = Side::new(pair);
    let pod = side.pod();
    let conf = side.conflist(version, NET, plugin);
    Run { side, pod, conf }
}

/// ADD on both sides; both must succeed with the same result and the same kernel state.
/// Then CHECK (ours must pass wherever the version allows it) and DEL on both, after which
/// the state must again be identical and ours must hold nothing of the attachment.
fn differential(version: &str, plugin: Value) -> (Value, Value) {
    let reference = start(Pair::Reference, version, &plugin);
    let ours = start(Pair::Ours, version, &plugin);
    let r_res = reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .expect("reference ADD");
    let o_res = ours.side.add(&ours.conf, &ours.pod, CID).expect("our ADD");
    assert_same("result", &normalise(&r_res), &normalise(&o_res));
    assert_same(
        "host state",
        &host_state(&reference.side.host),
        &host_state(&ours.side.host),
    );
    assert_same(
        "pod state",
        &pod_state(&reference.pod),
        &pod_state(&ours.pod),
    );
    assert_eq!(reference.side.reserved(NET), ours.side.reserved(NET));

    if version >= "0.4.0" {
        ours.side
            .check(&ours.conf, &ours.pod, CID)
            .expect("our CHECK passes on what ADD made");
    }

    reference
        .side
        .del(&reference.conf, &reference.pod, CID)
        .expect("reference DEL");
    ours.side.del(&ours.conf, &ours.pod, CID).expect("our DEL");
    assert_same(
        "host state after DEL",
        &host_state(&reference.side.host),
        &host_state(&ours.side.host),
    );
    assert_no_leftovers(&ours.side, NET);
    (r_res, o_res)
}

fn base() -> Value {
    json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipam": ipam_v4()})
}

fn with(mut plugin: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("object") {
        plugin[k] = v.clone();
    }
    plugin
}

#[test]
fn flannel_shape_gateway_masq_hairpin_mtu_v0_3_1() {
    let (_, ours) = differential(
        "0.3.1",
        with(
            base(),
            json!({"ipMasq": true, "hairpinMode": true, "mtu": 1450}),
        ),
    );
    assert_eq!(ours["ips"][0]["version"], "4", "{ours:#}");
}

#[test]
fn every_result_version() {
    for version in ["0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let (_, ours) = differential(version, base());
        assert_eq!(ours["cniVersion"], version);
    }
}

#[test]
fn default_gateway_v1_0_0() {
    let (_, ours) = differential("1.0.0", with(base(), json!({"isDefaultGateway": true})));
    let routes = ours["routes"].as_array().unwrap();
    assert!(
        routes.contains(&json!({"dst": "0.0.0.0/0", "gw": "10.88.0.1"})),
        "{ours:#}"
    );
}

#[test]
fn not_a_gateway_v0_4_0() {
    differential("0.4.0", with(base(), json!({"isGateway": false})));
}

#[test]
fn promiscuous_bridge_v0_4_0() {
    differential("0.4.0", with(base(), json!({"promiscMode": true})));
}

#[test]
fn layer2_only_v1_0_0() {
    let (_, ours) = differential("1.0.0", json!({"type": "bridge", "bridge": "l2br0"}));
    assert!(ours.get("ips").is_none(), "{ours:#}");
}

#[test]
fn dual_stack_with_masquerade_v1_0_0() {
    let ipam =
        json!({"type": "host-local", "ranges": [[{"subnet": SUBNET}], [{"subnet": SUBNET6}]]});
    let (_, ours) = differential(
        "1.0.0",
        json!({"type": "bridge", "bridge": "cni6", "isGateway": true, "isDefaultGateway": true,
               "ipMasq": true, "ipam": ipam}),
    );
    assert_eq!(ours["ips"].as_array().unwrap().len(), 2, "{ours:#}");
}

#[test]
fn duplicate_address_detection_v1_0_0() {
    let ipam = json!({"type": "host-local", "ranges": [[{"subnet": SUBNET6}]]});
    differential(
        "1.0.0",
        json!({"type": "bridge", "bridge": "cni6", "isGateway": true, "enabledad": true, "ipam": ipam}),
    );
}

#[test]
fn config_dns_replaces_ipam_dns_and_mac_from_args() {
    let mac = "0a:58:0a:58:00:99";
    let (_, ours) = differential(
        "1.0.0",
        with(
            base(),
            json!({"dns": {"nameservers": ["10.96.0.10"], "search": ["svc.local"]},
                   "args": {"cni": {"mac": mac}}}),
        ),
    );
    assert_eq!(
        ours["dns"],
        json!({"nameservers": ["10.96.0.10"], "search": ["svc.local"]})
    );
    assert_eq!(ours["interfaces"][2]["mac"], mac);
}

#[test]
fn mac_spoof_check_rules_match_and_are_removed() {
    let plugin = with(base(), json!({"macspoofchk": true}));
    let reference = start(Pair::Reference, "1.0.0", &plugin);
    let ours = start(Pair::Ours, "1.0.0", &plugin);
    reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .expect("reference ADD");
    ours.side.add(&ours.conf, &ours.pod, CID).expect("our ADD");
    let rules = |side: &Side| strip_handles(&normalise(&side.host.nft_ruleset().expect("nft")));
    assert_same("nft ruleset", &rules(&reference.side), &rules(&ours.side));
    assert!(rules(&ours.side)
        .to_string()
        .contains("macspoofchk-ctr-diff-1-eth0"));

    reference
        .side
        .del(&reference.conf, &reference.pod, CID)
        .expect("reference DEL");
    ours.side.del(&ours.conf, &ours.pod, CID).expect("our DEL");
    assert_same(
        "nft ruleset after DEL",
        &rules(&reference.side),
        &rules(&ours.side),
    );
    assert!(!rules(&ours.side).to_string().contains("macspoofchk-"));
}

fn strip_handles(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "handle" && *k != "metainfo")
                .map(|(k, v)| (k.clone(), strip_handles(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|i| i.get("metainfo").is_none())
                .map(strip_handles)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// An existing bridge address in another subnet: an error without `forceAddress` (same
/// message as upstream), replaced with it.
#[test]
fn force_address() {
    let prepare = |run: &Run| {
        run.side
            .host
            .exec_ok(&["ip", "link", "add", "cni0", "type", "bridge"])
            .unwrap();
        run.side
            .host
            .exec_ok(&["ip", "addr", "add", "10.99.0.1/24", "dev", "cni0"])
            .unwrap();
    };
    let reference = start(Pair::Reference, "1.0.0", &base());
    let ours = start(Pair::Ours, "1.0.0", &base());
    prepare(&reference);
    prepare(&ours);
    let r_err = reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .unwrap_err();
    let o_err = ours.side.add(&ours.conf, &ours.pod, CID).unwrap_err();
    assert_eq!((r_err.code, &r_err.msg), (o_err.code, &o_err.msg));
    assert_eq!(
        o_err.msg,
        "failed to set bridge addr: \"cni0\" already has an IP address different from 10.88.0.1/24"
    );
    // Improvement: upstream leaves the veth pair and the IP reserved until a DEL; we roll
    // the failed ADD back completely.
    assert_no_leftovers(&ours.side, NET);
    assert!(!reference
        .side
        .host
        .links_of_kind("veth")
        .unwrap()
        .is_empty());
    reference
        .side
        .del(&reference.conf, &reference.pod, CID)
        .expect("reference DEL");

    let forced = with(base(), json!({"forceAddress": true}));
    let reference = start(Pair::Reference, "1.0.0", &forced);
    let ours = start(Pair::Ours, "1.0.0", &forced);
    prepare(&reference);
    prepare(&ours);
    reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .expect("reference ADD");
    ours.side.add(&ours.conf, &ours.pod, CID).expect("our ADD");
    assert_same(
        "host state",
        &host_state(&reference.side.host),
        &host_state(&ours.side.host),
    );
    assert_eq!(
        ours.side.host.addresses_of("cni0").unwrap(),
        vec!["10.88.0.1/24"]
    );
}

/// This kernel has no bridge VLAN filtering: both fail identically creating the bridge,
/// and neither leaves anything.
#[test]
fn access_vlan_fails_like_upstream_on_this_kernel() {
    let plugin = with(base(), json!({"vlan": 100}));
    let reference = start(Pair::Reference, "1.0.0", &plugin);
    let ours = start(Pair::Ours, "1.0.0", &plugin);
    let r_err = reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .unwrap_err();
    let o_err = ours.side.add(&ours.conf, &ours.pod, CID).unwrap_err();
    assert_eq!((r_err.code, &r_err.msg), (o_err.code, &o_err.msg));
    assert!(
        o_err
            .msg
            .starts_with("failed to create bridge \"cni0\": could not add \"cni0\": "),
        "{o_err:?}"
    );
    assert_same(
        "host state",
        &host_state(&reference.side.host),
        &host_state(&ours.side.host),
    );
    assert_no_leftovers(&ours.side, NET);
}

/// vlanTrunk turns on VLAN filtering too (upstream since v1.2; the reference v1.1.1
/// ignores the key), so on this kernel our ADD fails the way the access-VLAN one does.
#[test]
fn vlan_trunk_needs_vlan_filtering() {
    let plugin = with(base(), json!({"vlanTrunk": [{"minID": 10, "maxID": 12}]}));
    let ours = start(Pair::Ours, "1.0.0", &plugin);
    let err = ours.side.add(&ours.conf, &ours.pod, CID).unwrap_err();
    assert_eq!(err.code, Some(999), "{err:?}");
    assert!(
        err.msg
            .starts_with("failed to create bridge \"cni0\": could not add \"cni0\": "),
        "{err:?}"
    );
    assert_no_leftovers(&ours.side, NET);
    let bad = with(base(), json!({"vlanTrunk": [{"minID": 12, "maxID": 10}]}));
    let ours = start(Pair::Ours, "1.0.0", &bad);
    let err = ours.side.add(&ours.conf, &ours.pod, CID).unwrap_err();
    assert_eq!(err.msg, "minID is greater than maxID in trunk parameter");
}

/// portIsolation postdates the reference v1.1.1 (which ignores it): everything else must
/// match, and our port must be isolated.
#[test]
fn port_isolation() {
    let plugin = with(base(), json!({"portIsolation": true}));
    let reference = start(Pair::Reference, "1.0.0", &plugin);
    let ours = start(Pair::Ours, "1.0.0", &plugin);
    reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .expect("reference ADD");
    ours.side.add(&ours.conf, &ours.pod, CID).expect("our ADD");
    let mut r_state = host_state(&reference.side.host);
    let mut o_state = host_state(&ours.side.host);
    assert_eq!(o_state["links"]["<veth>"]["isolated"], true, "{o_state:#}");
    assert_eq!(r_state["links"]["<veth>"]["isolated"], false);
    r_state["links"]["<veth>"]["isolated"] = json!(null);
    o_state["links"]["<veth>"]["isolated"] = json!(null);
    assert_same("host state apart from isolation", &r_state, &o_state);
}

/// Upstream: `isDefaultGateway` plus an IPAM default route without `gw` installs the same
/// route twice and fails with `file exists` (cni.md §7.12). Ours keeps upstream's result
/// shape and succeeds.
#[test]
fn default_gateway_with_ipam_default_route() {
    let ipam = json!({"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]});
    let plugin =
        json!({"type": "bridge", "bridge": "cni0", "isDefaultGateway": true, "ipam": ipam});
    let reference = start(Pair::Reference, "1.0.0", &plugin);
    let r_err = reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .unwrap_err();
    assert!(r_err.msg.ends_with("file exists"), "{r_err:?}");
    let ours = start(Pair::Ours, "1.0.0", &plugin);
    let res = ours.side.add(&ours.conf, &ours.pod, CID).expect("our ADD");
    assert_eq!(
        res["routes"],
        json!([{"dst": "0.0.0.0/0"}, {"dst": "0.0.0.0/0", "gw": "10.88.0.1"}])
    );
    let default: Vec<Value> = ours
        .pod
        .routes()
        .unwrap()
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0]["gateway"], "10.88.0.1");
    ours.side.check(&ours.conf, &ours.pod, CID).expect("CHECK");
    ours.side.del(&ours.conf, &ours.pod, CID).expect("DEL");
    assert_no_leftovers(&ours.side, NET);
}

/// Our bridge with the reference host-local and the reverse behave like the reference pair.
#[test]
fn mixed_plugin_sets() {
    let plugin = with(base(), json!({"ipMasq": true}));
    let reference = start(Pair::Reference, "1.0.0", &plugin);
    let r_res = reference
        .side
        .add(&reference.conf, &reference.pod, CID)
        .expect("reference ADD");
    for pair in [Pair::OurBridge, Pair::OurIpam] {
        let mixed = start(pair, "1.0.0", &plugin);
        let res = mixed
            .side
            .add(&mixed.conf, &mixed.pod, CID)
            .expect("mixed ADD");
        assert_same(
            &format!("{pair:?} result"),
            &normalise(&r_res),
            &normalise(&res),
        );
        assert_same(
            &format!("{pair:?} host state"),
            &host_state(&reference.side.host),
            &host_state(&mixed.side.host),
        );
        mixed
            .side
            .del(&mixed.conf, &mixed.pod, CID)
            .expect("mixed DEL");
        assert_no_leftovers(&mixed.side, NET);
    }
}

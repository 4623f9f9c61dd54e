//! CHECK on an L2 bridge (issue 19, item 1). A bridge with no address takes the lowest MAC of
//! its ports and moves it whenever a lower one joins, so the bridge MAC in an earlier pod's
//! result goes stale and upstream's CHECK fails. A bridge we create has its own MAC from the
//! start; on a bridge upstream's plugin created, CHECK tells the kernel's move from a MAC
//! someone set.

use conformance::support::bridge::*;
use conformance::Netns;
use serde_json::{json, Value};

const NET: &str = "brl2";
const BRIDGE: &str = "br-l2";
/// Lower than any random locally administered MAC a veth can get.
const LOWEST: &str = "02:00:00:00:00:01";

fn l2_plugin() -> Value {
    json!({"type": "bridge", "bridge": BRIDGE})
}

fn bridge_mac(host: &Netns) -> String {
    let link = host.link(BRIDGE).expect("ip link").expect("bridge exists");
    link["address"].as_str().expect("address").to_owned()
}

/// Another port joins the bridge with the lowest possible MAC, as a second pod's veth would
/// when its random MAC is lower.
fn join_low_port(host: &Netns) {
    for cmd in [
        vec![
            "ip", "link", "add", "lowp0", "type", "veth", "peer", "name", "lowp1",
        ],
        vec!["ip", "link", "set", "lowp0", "address", LOWEST],
        vec!["ip", "link", "set", "lowp0", "master", BRIDGE, "up"],
    ] {
        host.exec_ok(&cmd).expect("low port");
    }
}

/// Our bridge plugin's CHECK of `result`, run directly (the attachment may have been made by
/// the reference plugin, whose libcni cache our driver does not share).
fn our_check(side: &Side, pod: &Netns, cid: &str, result: &Value) -> (i32, String) {
    let mut conf = l2_plugin();
    conf["name"] = json!(NET);
    conf["cniVersion"] = json!("1.0.0");
    conf["prevResult"] = result.clone();
    let ours = Pair::Ours.plugins();
    let path = ours.path().display().to_string();
    let netns = pod.path().display().to_string();
    exec_plugin(
        &side.host,
        &ours,
        &[
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", &path),
        ],
        &conf.to_string(),
    )
}

#[test]
fn a_bridge_we_create_keeps_its_mac_when_ports_come_and_go() {
    let side = Side::new(Pair::Ours);
    let conf = side.conflist("1.0.0", NET, &l2_plugin());
    let pod = side.pod();
    let result = side.add(&conf, &pod, "l2-a").expect("ADD");
    let recorded = result["interfaces"][0]["mac"].as_str().unwrap().to_owned();
    assert_eq!(result["interfaces"][0]["name"], BRIDGE, "{result}");

    join_low_port(&side.host);
    let second = side.pod();
    side.add(&conf, &second, "l2-b").expect("second ADD");
    assert_eq!(bridge_mac(&side.host), recorded, "the bridge MAC stayed");
    side.check(&conf, &pod, "l2-a")
        .expect("CHECK of the first pod passes");

    // A MAC someone set is a real mismatch.
    side.host
        .exec_ok(&["ip", "link", "set", BRIDGE, "address", "02:12:34:56:78:9a"])
        .unwrap();
    let err = side.check(&conf, &pod, "l2-a").expect_err("CHECK fails");
    assert_eq!(
        err.msg,
        format!("Bridge interface {BRIDGE} Mac doesn't match: {recorded}"),
        "{err:?}"
    );
    side.del(&conf, &second, "l2-b").expect("DEL");
    side.del(&conf, &pod, "l2-a").expect("DEL");
}

#[test]
fn check_tells_the_kernels_move_from_a_set_mac_on_upstreams_bridge() {
    let side = Side::new(Pair::Reference);
    let conf = side.conflist("1.0.0", NET, &l2_plugin());
    let pod = side.pod();
    let result = side.add(&conf, &pod, "l2-r").expect("reference ADD");
    let recorded = result["interfaces"][0]["mac"].as_str().unwrap().to_owned();
    assert_eq!(our_check(&side, &pod, "l2-r", &result).0, 0, "fresh CHECK");

    join_low_port(&side.host);
    assert_eq!(
        bridge_mac(&side.host),
        LOWEST,
        "upstream's bridge follows its lowest port"
    );
    let (code, out) = our_check(&side, &pod, "l2-r", &result);
    assert_eq!(code, 0, "the kernel moved the MAC: CHECK passes\n{out}");

    // Set by hand, even to a port's MAC: the kernel no longer manages it, so a MAC other
    // than the recorded one is a mismatch.
    side.host
        .exec_ok(&["ip", "link", "set", BRIDGE, "address", LOWEST])
        .unwrap();
    let (code, out) = our_check(&side, &pod, "l2-r", &result);
    assert_eq!(code, 1, "{out}");
    let err: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        err["msg"],
        format!("Bridge interface {BRIDGE} Mac doesn't match: {recorded}"),
        "{err}"
    );
    side.del(&conf, &pod, "l2-r").expect("reference DEL");
}

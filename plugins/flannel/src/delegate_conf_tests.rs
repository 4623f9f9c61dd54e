use super::*;
use netconf::subnet_env::SubnetEnv;
use serde_json::json;

fn env(text: &str) -> SubnetEnv {
    SubnetEnv::parse(text).unwrap()
}

const V4: &str = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";

fn conf(json: &str) -> FlannelConf {
    FlannelConf::parse(json.as_bytes()).unwrap()
}

fn built(conf_json: &str, env_text: &str) -> String {
    let d = build(&conf(conf_json), &env(env_text)).unwrap();
    String::from_utf8(d.bytes).unwrap()
}

#[test]
fn upstream_golden_ipv4() {
    assert_eq!(
        built(r#"{"name":"cni-flannel","type":"flannel"}"#, V4),
        r#"{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}"#
    );
}

#[test]
fn dual_stack_puts_v4_range_and_routes_first() {
    let text = "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\n\
                FLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
    assert_eq!(
        built(r#"{"name":"cni-flannel","type":"flannel"}"#, text),
        r#"{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}],[{"subnet":"fc00::/64"}]],"routes":[{"dst":"10.1.0.0/16"},{"dst":"fc00::/48"}],"type":"host-local"},"isGateway":true,"mtu":1472,"name":"cni-flannel","type":"bridge"}"#
    );
}

#[test]
fn ipv6_only() {
    let text = "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n";
    assert_eq!(
        built(r#"{"name":"n","type":"flannel"}"#, text),
        r#"{"ipMasq":true,"ipam":{"ranges":[[{"subnet":"fc00::/64"}]],"routes":[{"dst":"fc00::/48"}],"type":"host-local"},"isGateway":true,"mtu":1472,"name":"n","type":"bridge"}"#
    );
}

#[test]
fn two_networks_yield_two_routes() {
    let text = "FLANNEL_NETWORK=10.1.0.0/16,192.168.0.0/16\nFLANNEL_SUBNET=10.1.17.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n";
    let out = built(r#"{"name":"n","type":"flannel"}"#, text);
    assert!(
        out.contains(r#""routes":[{"dst":"10.1.0.0/16"},{"dst":"192.168.0.0/16"}]"#),
        "{out}"
    );
}

#[test]
fn kube_flannel_conflist_entry() {
    let out = built(
        r#"{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true},"name":"cbr0","cniVersion":"0.3.1"}"#,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    assert_eq!(
        out,
        r#"{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}"#
    );
}

#[test]
fn user_ipam_keys_pass_through_and_user_routes_come_first() {
    let out = built(
        r#"{"name":"n","type":"flannel","ipam":{"dataDir":"/tmp/x","zeta":{"b":1,"a":2},"ranges":[[{"subnet":"1.2.3.0/24"}]],
            "routes":[{"dst":"10.9.0.0/16","gw":"10.1.17.1","mtu":1400}]}}"#,
        V4,
    );
    assert_eq!(
        out,
        r#"{"ipMasq":false,"ipam":{"dataDir":"/tmp/x","ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.9.0.0/16","gw":"10.1.17.1","mtu":1400},{"dst":"10.1.0.0/16"}],"type":"host-local","zeta":{"a":2,"b":1}},"isGateway":true,"mtu":1472,"name":"n","type":"bridge"}"#
    );
}

#[test]
fn ipam_type_override_is_kept() {
    let out = built(
        r#"{"name":"n","type":"flannel","ipam":{"type":"my-ipam"}}"#,
        V4,
    );
    assert!(out.contains(r#""type":"my-ipam"}"#), "{out}");
}

#[test]
fn present_keys_win_even_when_falsy() {
    let out = built(
        r#"{"name":"n","delegate":{"ipMasq":null,"mtu":0,"isGateway":false,"type":"bridge"}}"#,
        V4,
    );
    assert_eq!(
        out,
        r#"{"ipMasq":null,"ipam":{"ranges":[[{"subnet":"10.1.17.0/24"}]],"routes":[{"dst":"10.1.0.0/16"}],"type":"host-local"},"isGateway":false,"mtu":0,"name":"n","type":"bridge"}"#
    );
}

#[test]
fn non_bridge_delegate_gets_no_is_gateway() {
    let d = build(&conf(r#"{"name":"n","delegate":{"type":"ptp"}}"#), &env(V4)).unwrap();
    assert_eq!(d.plugin_type, "ptp");
    let text = String::from_utf8(d.bytes).unwrap();
    assert!(!text.contains("isGateway"), "{text}");
}

#[test]
fn runtime_config_is_copied_and_numbers_print_like_go() {
    let out = built(
        r#"{"name":"n","runtimeConfig":{"portMappings":[{"hostPort":8080.0}]},"delegate":{"x":9007199254740993,"y":1.5,"s":"<&>"}}"#,
        V4,
    );
    assert!(
        out.contains(r#""runtimeConfig":{"portMappings":[{"hostPort":8080}]}"#),
        "{out}"
    );
    assert!(
        out.contains(r#""x":9007199254740992"#),
        "float64 rounding: {out}"
    );
    assert!(out.contains(r#""y":1.5"#), "{out}");
    assert!(
        out.contains(r#""s":"\u003c\u0026\u003e""#),
        "Go escapes HTML: {out}"
    );
}

#[test]
fn user_keys_are_kept_verbatim() {
    let out = built(
        r#"{"name":"n","delegate":{"Type":"ptp","HairpinMode":true}}"#,
        V4,
    );
    assert!(
        out.starts_with(r#"{"HairpinMode":true,"Type":"ptp","#),
        "{out}"
    );
    assert!(
        out.ends_with(r#""type":"bridge"}"#),
        "presence test is case-sensitive: {out}"
    );
}

#[test]
fn validation_errors_are_upstreams() {
    let e = |j: &str| build(&conf(j), &env(V4)).unwrap_err().to_string();
    assert_eq!(
        e(r#"{"name":"n","delegate":{"type":5}}"#),
        "'delegate' dictionary, if present, must have (string) 'type' field"
    );
    assert_eq!(
        e(r#"{"name":"n","delegate":{"name":"x"}}"#),
        "'delegate' dictionary must not have 'name' field, it'll be set by flannel"
    );
    assert_eq!(
        e(r#"{"name":"n","delegate":{"ipam":{}}}"#),
        "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"
    );
    assert_eq!(
        e(r#"{"name":"n","ipam":{"routes":[{"dst":"bad"}]}}"#),
        "failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: invalid CIDR address: bad"
    );
}

#[test]
fn saved_configs_are_read_back() {
    let d = build(&conf(r#"{"name":"n"}"#), &env(V4)).unwrap();
    assert_eq!(Delegate::from_saved(d.bytes.clone()).unwrap(), d);
    for (bad, why) in [
        (&b"{\"type\":\"br"[..], "unexpected end of JSON input"),
        (b"", "unexpected end of JSON input"),
        (b"[]", "expected a JSON object"),
        (b"{\"type\":1}", "not a string"),
        (b"{}", "no plugin"),
    ] {
        let err = Delegate::from_saved(bad.to_vec()).unwrap_err().to_string();
        assert!(
            err.starts_with("failed to parse netconf: ") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn extra_keys_are_merged_sorted() {
    let d = Delegate::from_saved(br#"{"type":"bridge","name":"n"}"#.to_vec()).unwrap();
    let out = d.with_keys(&[("prevResult", json!({"cniVersion":"1.0.0"}))]);
    assert_eq!(
        out,
        br#"{"name":"n","prevResult":{"cniVersion":"1.0.0"},"type":"bridge"}"#.to_vec()
    );
}

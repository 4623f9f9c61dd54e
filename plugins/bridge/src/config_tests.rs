use super::*;

fn conf(json: &str) -> NetConf {
    NetConf::parse(json.as_bytes()).expect("valid base config")
}

fn load(json: &str) -> Result<BridgeConf, ConfigError> {
    BridgeConf::load(&conf(json), "")
}

fn with(extra: &str) -> String {
    format!(r#"{{"cniVersion":"1.0.0","name":"net1","type":"bridge"{extra}}}"#)
}

#[test]
fn defaults_match_upstream() {
    let c = load(&with("")).unwrap();
    assert_eq!(c.network, "net1");
    assert_eq!(c.bridge, "cni0");
    assert!(!c.is_gateway && !c.is_default_gateway && !c.force_address && !c.ip_masq);
    assert_eq!(c.ip_masq_backend, None);
    assert_eq!(c.mtu, None);
    assert!(!c.hairpin_mode && !c.promisc_mode);
    assert_eq!(c.vlan, 0);
    assert!(c.trunk.is_empty() && !c.trunk_configured && !c.vlan_filtering());
    assert!(c.preserve_default_vlan);
    assert!(!c.mac_spoof_check && !c.enable_dad && !c.disable_container_interface);
    assert!(!c.port_isolation);
    assert!(!c.is_layer3());
    assert!(c.dns.is_empty());
    assert_eq!(c.mac, None);
}

#[test]
fn keys_match_case_insensitively() {
    let c = load(&with(
        r#","BRIDGE":"br7","isgateway":true,"IPMASQ":true,"Mtu":1400,"HairpinMode":true,
        "VLAN":0,"PortIsolation":true,"EnableDAD":true,"MacSpoofChk":true,
        "ipam":{"type":"host-local"},"DNS":{"NameServers":["10.0.0.10"],"Domain":"x.local"}"#,
    ))
    .unwrap();
    assert_eq!(c.bridge, "br7");
    assert!(c.is_gateway && c.ip_masq && c.hairpin_mode && c.port_isolation);
    assert!(c.enable_dad && c.mac_spoof_check);
    assert_eq!(c.mtu, Some(1400));
    assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
    assert_eq!(c.dns.nameservers, vec!["10.0.0.10".to_string()]);
    assert_eq!(c.dns.domain.as_deref(), Some("x.local"));
}

#[test]
fn default_gateway_implies_gateway_and_empty_bridge_is_default() {
    let c = load(&with(r#","isDefaultGateway":true,"bridge":"""#)).unwrap();
    assert!(c.is_gateway && c.is_default_gateway);
    assert_eq!(c.bridge, "cni0");
}

#[test]
fn non_positive_mtu_keeps_kernel_default() {
    assert_eq!(load(&with(r#","mtu":0"#)).unwrap().mtu, None);
    assert_eq!(load(&with(r#","mtu":-1"#)).unwrap().mtu, None);
}

#[test]
fn wrong_json_kinds_fail_like_go() {
    let cases = [
        (
            r#","portIsolation":"true""#,
            "failed to load netconf: json: cannot unmarshal string into Go struct field NetConf.portIsolation of type bool",
        ),
        (
            r#","mtu":"1500""#,
            "failed to load netconf: json: cannot unmarshal string into Go struct field NetConf.mtu of type int",
        ),
        (
            r#","mtu":1500.5"#,
            "failed to load netconf: json: cannot unmarshal number 1500.5 into Go struct field NetConf.mtu of type int",
        ),
        (
            r#","bridge":5"#,
            "failed to load netconf: json: cannot unmarshal number into Go struct field NetConf.bridge of type string",
        ),
        (
            r#","vlanTrunk":{"id":5}"#,
            "failed to load netconf: json: cannot unmarshal object into Go struct field NetConf.vlanTrunk of type []*main.VlanTrunk",
        ),
        (
            r#","vlanTrunk":[{"id":"5"}]"#,
            "failed to load netconf: json: cannot unmarshal string into Go struct field VlanTrunk.vlanTrunk.id of type int",
        ),
        (
            r#","runtimeConfig":{"mac":1}"#,
            "failed to load netconf: json: cannot unmarshal number into Go struct field .runtimeConfig.mac of type string",
        ),
        (
            r#","args":{"cni":{"mac":true}}"#,
            "failed to load netconf: json: cannot unmarshal bool into Go struct field BridgeArgs.args.cni.mac of type string",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(load(&with(extra)).unwrap_err().to_string(), want, "{extra}");
    }
}

#[test]
fn first_type_error_is_reported() {
    let e = load(&with(r#","hairpinMode":1,"mtu":"x""#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to load netconf: json: cannot unmarshal number into Go struct field NetConf.hairpinMode of type bool"
    );
}

#[test]
fn vlan_range() {
    assert_eq!(load(&with(r#","vlan":4094"#)).unwrap().vlan, 4094);
    for bad in [-1, 4095] {
        let e = load(&with(&format!(r#","vlan":{bad}"#))).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("invalid VLAN ID {bad} (must be between 0 and 4094)")
        );
    }
    let c = load(&with(r#","vlan":100"#)).unwrap();
    assert!(c.vlan_filtering());
}

#[test]
fn trunk_is_expanded_sorted_and_deduplicated() {
    let c = load(&with(
        r#","vlanTrunk":[{"minID":10,"maxID":12},{"id":11},{"id":3},{"minID":4094,"maxID":4094}]"#,
    ))
    .unwrap();
    assert_eq!(c.trunk, vec![3, 10, 11, 12, 4094]);
    assert!(c.vlan_filtering());
}

#[test]
fn empty_trunk_still_turns_on_vlan_filtering() {
    let c = load(&with(r#","vlanTrunk":[]"#)).unwrap();
    assert!(c.trunk.is_empty());
    assert!(c.vlan_filtering());
    // vlan + an empty trunk is not "both at the same time" upstream either.
    assert!(load(&with(r#","vlan":5,"vlanTrunk":[]"#)).is_ok());
}

#[test]
fn trunk_errors() {
    let cases = [
        (
            r#"[{"minID":0,"maxID":5}]"#,
            "incorrect trunk minID parameter",
        ),
        (
            r#"[{"minID":4095,"maxID":5}]"#,
            "incorrect trunk minID parameter",
        ),
        (
            r#"[{"minID":5,"maxID":0}]"#,
            "incorrect trunk maxID parameter",
        ),
        (
            r#"[{"minID":5,"maxID":4095}]"#,
            "incorrect trunk maxID parameter",
        ),
        (
            r#"[{"minID":6,"maxID":5}]"#,
            "minID is greater than maxID in trunk parameter",
        ),
        (
            r#"[{"maxID":5}]"#,
            "minID and maxID should be configured simultaneously, minID is missing",
        ),
        (
            r#"[{"minID":5}]"#,
            "minID and maxID should be configured simultaneously, maxID is missing",
        ),
        (r#"[{"id":0}]"#, "incorrect trunk id parameter"),
        (r#"[{"id":4095}]"#, "incorrect trunk id parameter"),
    ];
    for (trunk, want) in cases {
        let e = load(&with(&format!(r#","vlanTrunk":{trunk}"#))).unwrap_err();
        assert_eq!(e.to_string(), want, "{trunk}");
    }
    let e = load(&with(r#","vlan":5,"vlanTrunk":[{"id":6}]"#)).unwrap_err();
    assert_eq!(e, ConfigError::VlanAndTrunk);
    assert_eq!(
        e.to_string(),
        "cannot set vlan and vlanTrunk at the same time"
    );
}

#[test]
fn add_only_checks() {
    let c = load(&with(r#","hairpinMode":true,"promiscMode":true"#)).unwrap();
    assert_eq!(
        c.validate_for_add().unwrap_err().to_string(),
        "cannot set hairpin mode and promiscuous mode at the same time."
    );
    let c = load(&with(
        r#","disableContainerInterface":true,"ipam":{"type":"host-local"}"#,
    ))
    .unwrap();
    assert_eq!(
        c.validate_for_add().unwrap_err().to_string(),
        "cannot use IPAM when DisableContainerInterface flag is set"
    );
    let c = load(&with(r#","disableContainerInterface":true,"ipam":{}"#)).unwrap();
    assert!(!c.is_layer3());
    assert!(c.validate_for_add().is_ok());
    // The kernel would take "br" from "br\0x".
    let c = load(&with(r#","bridge":"br\u0000x""#)).unwrap();
    assert_eq!(
        c.validate_for_add().unwrap_err().to_string(),
        "invalid bridge name \"br\\0x\": contains a NUL byte"
    );
}

#[test]
fn mac_precedence_runtime_config_then_args_then_env() {
    let all = with(
        r#","runtimeConfig":{"mac":"0a:00:00:00:00:01"},"args":{"cni":{"mac":"0a:00:00:00:00:02"}}"#,
    );
    let env = "IgnoreUnknown=1;MAC=0a:00:00:00:00:03";
    let mac = |json: &str| BridgeConf::load(&conf(json), env).unwrap().mac;
    assert_eq!(mac(&all).as_deref(), Some("0a:00:00:00:00:01"));
    let args_only =
        with(r#","args":{"cni":{"mac":"0a:00:00:00:00:02"}},"runtimeConfig":{"mac":""}"#);
    assert_eq!(mac(&args_only).as_deref(), Some("0a:00:00:00:00:02"));
    assert_eq!(mac(&with("")).as_deref(), Some("0a:00:00:00:00:03"));
    assert_eq!(BridgeConf::load(&conf(&with("")), "").unwrap().mac, None);
}

#[test]
fn cni_args_follow_go_load_args_rules() {
    let e = BridgeConf::load(&conf(&with("")), "K8S_POD_NAME=x").unwrap_err();
    assert_eq!(e.to_string(), r#"ARGS: unknown args ["K8S_POD_NAME=x"]"#);
    // IP is host-local's; bridge only knows MAC.
    assert!(BridgeConf::load(&conf(&with("")), "IP=10.0.0.5").is_err());
    assert!(BridgeConf::load(&conf(&with("")), "IgnoreUnknown=1;IP=10.0.0.5").is_ok());
}

/// Cases where Go's streaming decoder and a key-by-key lookup disagree; each answer is what
/// the reference bridge (or, for `vlanTrunk`, which it predates, Go 1.19's decoder) gives.
#[test]
fn decoding_follows_the_document_like_go() {
    let e = load(&with(r#","mtu":"x","MTU":1500"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to load netconf: json: cannot unmarshal string into Go struct field NetConf.mtu of type int",
        "a later valid duplicate does not hide an earlier mismatch"
    );
    let e = load(&with(r#","dns":{"search":[1],"nameservers":[2]}"#)).unwrap_err();
    assert!(
        e.to_string().ends_with("DNS.dns.search of type string"),
        "{e}"
    );
    let e = load(&with(r#","vlanTrunk":["x"]"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to load netconf: json: cannot unmarshal string into Go struct field NetConf.vlanTrunk of type main.VlanTrunk"
    );
    let c = load(&with(r#","ipMasqBackend":"nftables","IPMASQBACKEND":null"#)).unwrap();
    assert_eq!(c.ip_masq_backend, None, "null resets a *string");
    let c = load(&with(r#","vlanTrunk":[],"VlanTrunk":null"#)).unwrap();
    assert!(!c.trunk_configured, "null resets a slice to nil");
}

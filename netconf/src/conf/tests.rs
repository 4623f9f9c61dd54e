use serde::Deserialize;
use serde_json::json;

use super::*;

#[test]
fn parses_common_keys_case_insensitively() {
    let c = NetConf::parse(
        br#"{"CNIVersion":"0.4.0","Name":"cbr0","TYPE":"bridge","ipam":{"Type":"host-local"},
            "runtimeConfig":{"portMappings":[]},"hairpinMode":true}"#,
    )
    .unwrap();
    assert_eq!(c.cni_version, CniVersion::V0_4_0);
    assert_eq!(c.name, "cbr0");
    assert_eq!(c.plugin_type, "bridge");
    assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
    assert_eq!(c.runtime_config.get("portMappings"), Some(&json!([])));
    assert_eq!(c.raw["hairpinMode"], json!(true));
    assert!(c.prev_result.is_none());

    #[derive(Deserialize)]
    struct Bridge {
        #[serde(default, rename = "hairpinMode")]
        hairpin: bool,
        #[serde(default)]
        bridge: String,
    }
    let b: Bridge = c.decode().unwrap();
    assert!(b.hairpin);
    assert_eq!(b.bridge, "");
}

#[test]
fn missing_version_means_010_and_unknown_is_incompatible() {
    let c = NetConf::parse(br#"{"name":"n"}"#).unwrap();
    assert_eq!(c.cni_version, CniVersion::V0_1_0);
    assert_eq!(c.plugin_type, "");
    assert_eq!(c.ipam_type, None);
    let e = NetConf::parse(br#"{"name":"n","cniVersion":"9.9.9"}"#).unwrap_err();
    assert_eq!((e.code, e.msg.as_str()), (1, "incompatible CNI versions"));
    assert_eq!(decode_version(br#"{"cniVersion":""}"#).unwrap(), "0.1.0");
    assert_eq!(
        decode_version(br#"{"CniVersion":"1.1.0"}"#).unwrap(),
        "1.1.0"
    );
    let e = decode_version(br#"{"cniVersion":1}"#).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (6, "decoding version from network config: json: cannot unmarshal number into Go struct field .cniVersion of type string")
    );
}

#[test]
fn skel_config_errors() {
    let cases: [(&[u8], u32, &str); 7] = [
        (b"", 6, "error unmarshall network config: unexpected end of JSON input"),
        (b"{\"name\":", 6, "error unmarshall network config: unexpected end of JSON input"),
        (
            b"[]",
            6,
            r#"error unmarshall network config: json: cannot unmarshal array into Go value of type struct { Name string "json:\"name\"" }"#,
        ),
        (
            br#"{"name":5}"#,
            6,
            "error unmarshall network config: json: cannot unmarshal number into Go struct field .name of type string",
        ),
        (b"{}", 7, "missing network name"),
        (b"null", 7, "missing network name"),
        (br#"{"name":""}"#, 7, "missing network name"),
    ];
    for (input, code, msg) in cases {
        let e = NetConf::parse(input).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (code, msg),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    let e = validate_network_config(br#"{"name":"bad name"}"#).unwrap_err();
    assert_eq!(
        e,
        CniError::new(7, "invalid characters found in network name").with_details("bad name")
    );
    assert!(validate_network_config(b"{\"name\":\"a\"} x").is_err());
    assert!(validate_network_config(br#"{"NAME":"ok-1.2_3"}"#).is_ok());
}

#[test]
fn structural_errors_in_common_keys() {
    for bad in [
        r#"{"name":"n","type":1}"#,
        r#"{"name":"n","ipam":"host-local"}"#,
        r#"{"name":"n","ipam":{"type":[]}}"#,
        r#"{"name":"n","runtimeConfig":[]}"#,
    ] {
        assert_eq!(NetConf::parse(bad.as_bytes()).unwrap_err().code, 6, "{bad}");
    }
    let c = NetConf::parse(br#"{"name":"n","ipam":{},"runtimeConfig":null,"prevResult":null}"#)
        .unwrap();
    assert_eq!(
        (c.ipam_type, c.runtime_config.len(), c.prev_result),
        (None, 0, None)
    );
}

#[test]
fn prev_result_uses_config_version() {
    let c = NetConf::parse(
        br#"{"cniVersion":"1.0.0","name":"n","prevResult":{"ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1"}]}}"#,
    )
    .unwrap();
    let prev = c.prev_result.unwrap();
    assert_eq!(prev.cni_version, CniVersion::V1_0_0);
    assert_eq!(prev.ips[0].address.to_string(), "10.0.0.2/24");
    let e =
        NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"0.4.0"}}"#)
            .unwrap_err();
    assert_eq!(
        e.msg,
        r#"could not parse prevResult: result type supports [1.0.0 1.1.0] but unmarshalled CNIVersion is "0.4.0""#
    );
}

#[test]
fn conflist_version_selection() {
    let l = NetConfList::parse(
        br#"{"name":"cbr0","cniVersion":"0.3.1","cniVersions":["1.0.0","0.4.0","2.0.0"],
            "plugins":[{"type":"flannel"},{"Type":"portmap","capabilities":{"portMappings":true}}]}"#,
    )
    .unwrap();
    assert_eq!(l.cni_version, "1.0.0");
    assert_eq!(l.version().unwrap(), CniVersion::V1_0_0);
    assert_eq!(l.cni_versions, vec!["1.0.0", "0.4.0", "2.0.0"]);
    assert_eq!(l.plugins.len(), 2);
    let l = NetConfList::parse(
        br#"{"name":"n","cniVersion":"1.1.0","cniVersions":["0.4.0"],"plugins":[{"type":"x"}]}"#,
    )
    .unwrap();
    assert_eq!(l.cni_version, "1.1.0");
    let l = NetConfList::parse(
        br#"{"name":"n","cniVersion":"3.0.0","cniVersions":["2.0.0"],"plugins":[{"type":"x"}]}"#,
    )
    .unwrap();
    assert_eq!(
        l.cni_version, "3.0.0",
        "nothing acceptable: cniVersion stays"
    );
    assert!(l.version().is_err());
    let l = NetConfList::parse(br#"{"name":"n"}"#).unwrap();
    assert_eq!((l.cni_version.as_str(), l.plugins.len()), ("", 0));
}

#[test]
fn conflist_flags_and_errors() {
    let l = NetConfList::parse(
        br#"{"name":"n","disableCheck":"TRUE","disableGC":true,"loadOnlyInlinedPlugins":false,"plugins":[{"type":"x"}]}"#,
    )
    .unwrap();
    assert!(l.disable_check && l.disable_gc && !l.load_only_inlined_plugins);
    let cases: [(&str, &str); 12] = [
        (r#"{}"#, "error parsing configuration list: no name"),
        (r#"{"name":1}"#, "error parsing configuration list: invalid name type float64"),
        (r#"{"name":"n","cniVersion":[]}"#, "error parsing configuration list: invalid cniVersion type []interface {}"),
        (r#"{"name":"n","cniVersions":"1.0.0"}"#, "error parsing configuration list: invalid type for cniVersions: string"),
        (r#"{"name":"n","cniVersions":[1]}"#, "error parsing configuration list: invalid type for cniVersions index 0: float64"),
        (
            r#"{"name":"n","cniVersions":["x"]}"#,
            r#"error parsing configuration list: invalid cniVersions entry x at index 0: failed to convert major version part "x": strconv.Atoi: parsing "x": invalid syntax"#,
        ),
        (r#"{"name":"n","disableCheck":"yes"}"#, r#"error parsing configuration list: invalid value "yes" for disableCheck"#),
        (r#"{"name":"n","disableGC":1}"#, "error parsing configuration list: invalid type float64 for disableGC"),
        (
            r#"{"name":"n","loadOnlyInlinedPlugins":true}"#,
            "error parsing configuration list: `loadOnlyInlinedPlugins` is true, and no 'plugins' key",
        ),
        (r#"{"name":"n","plugins":{}}"#, "error parsing configuration list: invalid 'plugins' type map[string]interface {}"),
        (r#"{"name":"n","plugins":[]}"#, "error parsing configuration list: no plugins in list"),
        (r#"{"name":"n","plugins":[{"type":"a"},{"name":"x"}]}"#, "failed to parse plugin config 1: error parsing configuration: missing 'type'"),
    ];
    for (input, msg) in cases {
        assert_eq!(
            NetConfList::parse(input.as_bytes()).unwrap_err().msg,
            msg,
            "{input}"
        );
    }
    assert_eq!(NetConfList::parse(b"").unwrap_err().code, 6);
}

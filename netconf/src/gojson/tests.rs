use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::*;

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Backend {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "VNI")]
    vni: u32,
    #[serde(rename = "DirectRouting")]
    direct_routing: bool,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Config {
    #[serde(rename = "Network")]
    network: String,
    #[serde(rename = "Backend")]
    backend: Option<Backend>,
    #[serde(rename = "hairpinMode")]
    hairpin_mode: bool,
    routes: Vec<RouteLike>,
    labels: BTreeMap<String, Backend>,
    mode: Option<Mode>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
struct RouteLike {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
enum Mode {
    Separate,
    Auto,
    Custom { port: u16 },
}

#[test]
fn keys_match_case_insensitively_at_every_depth() {
    let c: Config = from_slice(
        br#"{"NETWORK":"10.0.0.0/8","backend":{"type":"VXLAN","vni":4,"Directrouting":true},
            "hairpinmode":true,"ROUTES":[{"DST":"0.0.0.0/0","Gw":"10.0.0.1"}],
            "Labels":{"MixedKey":{"TYPE":"udp"}},"unknown":[1,2]}"#,
    )
    .unwrap();
    assert_eq!(c.network, "10.0.0.0/8");
    assert_eq!(
        c.backend,
        Some(Backend {
            kind: "VXLAN".into(),
            vni: 4,
            direct_routing: true
        })
    );
    assert!(c.hairpin_mode);
    assert_eq!(
        c.routes,
        vec![RouteLike {
            dst: "0.0.0.0/0".into(),
            gw: Some("10.0.0.1".into())
        }]
    );
    let (k, v) = c.labels.iter().next().unwrap();
    assert_eq!(k, "MixedKey", "map keys stay verbatim");
    assert_eq!(v.kind, "udp");
}

#[test]
fn later_keys_overwrite_earlier_folded_ones() {
    #[derive(Deserialize)]
    struct Two {
        #[serde(default)]
        name: String,
        #[serde(default, rename = "Name")]
        upper: String,
    }
    let t: Two = from_slice(br#"{"NAME":"a","Name":"b","name":"c"}"#).unwrap();
    assert_eq!(
        (t.name.as_str(), t.upper.as_str()),
        ("c", "b"),
        "NAME folds to the first declared field, name overwrites it"
    );
    let c: Config = from_slice(br#"{"network":"a","Network":"b","NETWORK":"c"}"#).unwrap();
    assert_eq!(c.network, "c");
}

#[test]
fn null_keeps_the_default() {
    #[derive(Deserialize)]
    struct D {
        #[serde(default = "seven")]
        n: u32,
        o: Option<String>,
    }
    fn seven() -> u32 {
        7
    }
    let d: D = from_slice(br#"{"N":null,"o":null}"#).unwrap();
    assert_eq!((d.n, d.o), (7, None));
}

#[test]
fn enums_fold_variant_names() {
    let c: Config = from_value(json!({"Mode": "AUTO"})).unwrap();
    assert_eq!(c.mode, Some(Mode::Auto));
    let c: Config = from_value(json!({"mode": {"custom": {"PORT": 9}}})).unwrap();
    assert_eq!(c.mode, Some(Mode::Custom { port: 9 }));
    assert!(from_value::<Config>(json!({"mode": "nope"})).is_err());
    let c: Config = from_value(json!({"mode": "Separate"})).unwrap();
    assert_eq!(c.mode, Some(Mode::Separate));
}

#[test]
fn type_errors_are_reported() {
    assert!(from_slice::<Config>(br#"{"hairpinMode":"yes"}"#).is_err());
    assert!(from_slice::<Config>(br#"{"routes":{}}"#).is_err());
    assert!(from_slice::<Config>(br#"[1]"#).is_err());
    assert!(from_slice::<Config>(b"{").is_err());
}

#[test]
fn raw_values_keep_their_shape() {
    #[derive(Deserialize)]
    struct R {
        #[serde(default)]
        raw: serde_json::Value,
    }
    let r: R = from_slice(br#"{"RAW":{"B":[1,{"c":null}],"a":"x"}}"#).unwrap();
    assert_eq!(r.raw, json!({"B":[1,{"c":null}],"a":"x"}));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(from_slice::<serde_json::Value>(deep.as_bytes()).is_err());
}

#[test]
fn folded_lookup() {
    let m = json!({"CNIVersion":"a","cniversion":"b","CNIVERSION":null});
    let m = m.as_object().unwrap();
    assert_eq!(get_folded(m, "cniVersion"), Some(&json!("b")));
    assert_eq!(get_folded(m, "CNIVersion"), Some(&json!("b")));
    assert_eq!(get_folded(m, "name"), None);
    assert!(eq_fold("Kelvin", "KELVIN"));
    assert!(!eq_fold("a", "b"));
}

use serde_json::json;

use super::*;
use crate::version::CniVersion::*;

fn sample() -> CniResult {
    let mut r = CniResult::new(V1_1_0);
    r.interfaces = vec![
        Interface {
            name: "cni0".into(),
            mac: Some("aa:bb:cc:dd:ee:ff".into()),
            ..Interface::default()
        },
        Interface {
            name: "eth0".into(),
            mac: Some("0a:58:0a:f4:01:02".into()),
            mtu: Some(1450),
            sandbox: Some("/var/run/netns/x".into()),
            socket_path: None,
            pci_id: Some("".into()),
        },
    ];
    r.ips = vec![IpConfig {
        address: "10.244.1.2/24".parse().unwrap(),
        gateway: Some("10.244.1.1".parse().unwrap()),
        interface: Some(1),
    }];
    r.routes = vec![
        Route::new(
            "0.0.0.0/0".parse().unwrap(),
            Some("10.244.1.1".parse().unwrap()),
        ),
        Route {
            mtu: Some(1400),
            table: Some(0),
            scope: Some(0),
            advmss: Some(0),
            ..Route::new("10.244.0.0/16".parse().unwrap(), None)
        },
    ];
    r.dns = Dns {
        nameservers: vec!["10.96.0.10".into()],
        search: vec!["svc.local".into()],
        ..Dns::default()
    };
    r
}

const V110: &str = r#"{
    "cniVersion": "1.1.0",
    "dns": {
        "nameservers": [
            "10.96.0.10"
        ],
        "search": [
            "svc.local"
        ]
    },
    "interfaces": [
        {
            "mac": "aa:bb:cc:dd:ee:ff",
            "name": "cni0"
        },
        {
            "mac": "0a:58:0a:f4:01:02",
            "mtu": 1450,
            "name": "eth0",
            "sandbox": "/var/run/netns/x"
        }
    ],
    "ips": [
        {
            "address": "10.244.1.2/24",
            "gateway": "10.244.1.1",
            "interface": 1
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0",
            "gw": "10.244.1.1"
        },
        {
            "dst": "10.244.0.0/16",
            "mtu": 1400,
            "scope": 0,
            "table": 0
        }
    ]
}"#;

const V040: &str = r#"{
    "cniVersion": "0.4.0",
    "interfaces": [
        {
            "name": "cni0",
            "mac": "aa:bb:cc:dd:ee:ff"
        },
        {
            "name": "eth0",
            "mac": "0a:58:0a:f4:01:02",
            "sandbox": "/var/run/netns/x"
        }
    ],
    "ips": [
        {
            "version": "4",
            "interface": 1,
            "address": "10.244.1.2/24",
            "gateway": "10.244.1.1"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0",
            "gw": "10.244.1.1"
        },
        {
            "dst": "10.244.0.0/16",
            "mtu": 1400,
            "table": 0,
            "scope": 0
        }
    ],
    "dns": {
        "nameservers": [
            "10.96.0.10"
        ],
        "search": [
            "svc.local"
        ]
    }
}"#;

const V020: &str = r#"{
    "cniVersion": "0.2.0",
    "ip4": {
        "ip": "10.244.1.2/24",
        "gateway": "10.244.1.1",
        "routes": [
            {
                "dst": "0.0.0.0/0",
                "gw": "10.244.1.1"
            },
            {
                "dst": "10.244.0.0/16"
            }
        ]
    },
    "dns": {
        "nameservers": [
            "10.96.0.10"
        ],
        "search": [
            "svc.local"
        ]
    }
}"#;

#[test]
fn prints_each_family_byte_exact() {
    let r = sample();
    assert_eq!(r.to_json(V1_1_0).unwrap(), V110);
    assert_eq!(r.to_json(V1_0_0).unwrap(), V110.replace("1.1.0", "1.0.0"));
    assert_eq!(r.to_json(V0_4_0).unwrap(), V040);
    assert_eq!(r.to_json(V0_3_1).unwrap(), V040.replace("0.4.0", "0.3.1"));
    assert_eq!(r.to_json(V0_2_0).unwrap(), V020);
    assert_eq!(r.to_json(V0_1_0).unwrap(), V020.replace("0.2.0", "0.1.0"));
}

#[test]
fn minimal_results_omit_or_keep_dns_per_family() {
    let mut r = CniResult::new(V1_1_0);
    r.ips.push(IpConfig {
        address: "fd00::5/64".parse().unwrap(),
        gateway: None,
        interface: None,
    });
    assert_eq!(
        r.to_json(V1_0_0).unwrap(),
        "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"fd00::5/64\"\n        }\n    ]\n}"
    );
    assert_eq!(
        r.to_json(V0_3_0).unwrap(),
        "{\n    \"cniVersion\": \"0.3.0\",\n    \"ips\": [\n        {\n            \"version\": \"6\",\n            \"address\": \"fd00::5/64\"\n        }\n    ],\n    \"dns\": {}\n}"
    );
    assert_eq!(
        r.to_json(V0_2_0).unwrap(),
        "{\n    \"cniVersion\": \"0.2.0\",\n    \"ip6\": {\n        \"ip\": \"fd00::5/64\"\n    },\n    \"dns\": {}\n}"
    );
    let empty = CniResult::new(V1_1_0);
    assert_eq!(
        empty.to_json(V1_1_0).unwrap(),
        "{\n    \"cniVersion\": \"1.1.0\"\n}"
    );
    assert_eq!(
        empty.to_json(V0_4_0).unwrap(),
        "{\n    \"cniVersion\": \"0.4.0\",\n    \"dns\": {}\n}"
    );
}

#[test]
fn down_conversion_to_02_needs_an_address_unless_already_02() {
    for from in [V0_3_0, V0_3_1, V0_4_0, V1_0_0, V1_1_0] {
        for to in [V0_1_0, V0_2_0] {
            let e = CniResult::new(from).to_json(to).unwrap_err();
            assert_eq!(
                (e.code, e.msg.as_str()),
                (999, "cannot convert: no valid IP addresses"),
                "{from}->{to}"
            );
        }
    }
    for from in [V0_1_0, V0_2_0] {
        for to in [V0_1_0, V0_2_0] {
            let out = CniResult::new(from).to_json(to).unwrap();
            assert_eq!(
                out,
                format!("{{\n    \"cniVersion\": \"{to}\",\n    \"dns\": {{}}\n}}")
            );
        }
    }
}

#[test]
fn only_the_first_address_per_family_survives_in_02() {
    let mut r = CniResult::new(V1_0_0);
    for a in ["10.0.0.2/24", "10.0.1.2/24", "fd00::2/64", "fd00::3/64"] {
        r.ips.push(IpConfig {
            address: a.parse().unwrap(),
            gateway: None,
            interface: Some(0),
        });
    }
    r.routes.push(Route::new(
        "::/0".parse().unwrap(),
        Some("fd00::1".parse().unwrap()),
    ));
    let v = r.to_value(V0_2_0).unwrap();
    assert_eq!(v["ip4"], json!({"ip": "10.0.0.2/24"}));
    assert_eq!(
        v["ip6"],
        json!({"ip": "fd00::2/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]})
    );
}

/// Every (from, to) pair: parse in `from`, print in `to`, parse back; what survives is
/// what libcni's converters keep.
#[test]
fn conversion_matrix_round_trips() {
    let full = sample();
    // `advmss: Some(0)` prints as nothing (Go omitempty), so it reads back as None.
    let mut expected_routes = full.routes.clone();
    expected_routes[1].advmss = None;
    for from in CniVersion::ALL {
        let src = CniResult::parse(full.to_json(from).unwrap().as_bytes(), V0_1_0).unwrap();
        assert_eq!(src.cni_version, from);
        for to in CniVersion::ALL {
            let printed = src.to_json(to).unwrap();
            let back = CniResult::parse(printed.as_bytes(), V0_1_0).unwrap();
            assert_eq!(back.cni_version, to, "{from}->{to}");
            assert_eq!(back.dns, full.dns, "{from}->{to}");
            assert_eq!(back.ips.len(), 1);
            assert_eq!(
                back.ips[0].address, full.ips[0].address,
                "host bits kept {from}->{to}"
            );
            let lost_02 = from.family() == ResultFamily::V02 || to.family() == ResultFamily::V02;
            let only_v1 = from.family() == ResultFamily::V1 && to.family() == ResultFamily::V1;
            assert_eq!(back.interfaces.is_empty(), lost_02, "{from}->{to}");
            if !lost_02 {
                assert_eq!(back.ips[0].interface, Some(1));
                assert_eq!(
                    back.routes, expected_routes,
                    "route extras survive {from}->{to}"
                );
                assert_eq!(back.interfaces[1].mtu.is_some(), only_v1, "{from}->{to}");
            } else {
                assert_eq!(back.ips[0].interface, None);
                assert_eq!(back.routes.len(), 2);
                assert_eq!(back.routes[1].mtu, None, "{from}->{to}");
            }
        }
    }
}

#[test]
fn parse_uses_fallback_and_rejects_unknown_versions() {
    let r = CniResult::parse(br#"{"ips":[{"address":"10.1.2.3/16"}]}"#, V0_4_0).unwrap();
    assert_eq!(r.cni_version, V0_4_0);
    let r = CniResult::parse(br#"{"cniVersion":"","ip4":{"ip":"10.1.2.3/16"}}"#, V0_2_0).unwrap();
    assert_eq!(r.cni_version, V0_2_0);
    assert_eq!(r.ips[0].address.to_string(), "10.1.2.3/16");
    let e = CniResult::parse(br#"{"cniVersion":"7.0.0"}"#, V1_0_0).unwrap_err();
    assert_eq!(e.msg, r#"unsupported CNI result version "7.0.0""#);
    assert_eq!(
        CniResult::parse(b"null", V1_1_0).unwrap(),
        CniResult::new(V1_1_0)
    );
    assert!(CniResult::parse(b"[]", V1_1_0)
        .unwrap_err()
        .msg
        .contains("cannot unmarshal array"));
    assert!(CniResult::parse(b"{", V1_1_0)
        .unwrap_err()
        .msg
        .starts_with("failed to unmarshal raw result: "));
}

#[test]
fn parse_reports_bad_fields() {
    for bad in [
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3"}]}"#,
        r#"{"cniVersion":"1.0.0","ips":[{"gateway":"10.1.2.3"}]}"#,
        r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/8","gateway":"x"}]}"#,
        r#"{"cniVersion":"1.0.0","routes":[{"gw":"10.0.0.1"}]}"#,
        r#"{"cniVersion":"1.0.0","routes":[{"dst":"0.0.0.0/0","mtu":-1}]}"#,
        r#"{"cniVersion":"1.0.0","interfaces":{}}"#,
        r#"{"cniVersion":"0.4.0","ips":[{"address":"10.1.2.3/8","interface":-1}]}"#,
        r#"{"cniVersion":"0.2.0","ip4":{"gateway":"10.1.2.3"}}"#,
    ] {
        let e = CniResult::parse(bad.as_bytes(), V1_0_0).unwrap_err();
        assert_eq!(e.code, codes::INTERNAL, "{bad}");
    }
}

#[test]
fn parse_is_case_insensitive_and_ignores_family_foreign_fields() {
    let r = CniResult::parse(
        br#"{"CNIVERSION":"ignored","cniVersion":"0.4.0","Interfaces":[{"Name":"eth0","MTU":9000,"pciID":"x"}],
            "IPs":[{"Version":"4","Address":"10.0.0.2/8","Interface":0}],"DNS":{"Domain":"d"}}"#,
        V1_0_0,
    )
    .unwrap();
    assert_eq!(
        r.interfaces,
        vec![Interface {
            name: "eth0".into(),
            ..Interface::default()
        }]
    );
    assert_eq!(r.ips[0].interface, Some(0));
    assert_eq!(r.dns.domain.as_deref(), Some("d"));
    let r = CniResult::parse(br#"{"cniVersion":"1.1.0","interfaces":[{"name":"e","mtu":9000,"socketPath":"/s","pciID":"p"}]}"#, V1_0_0).unwrap();
    assert_eq!(r.interfaces[0].mtu, Some(9000));
    assert_eq!(r.interfaces[0].socket_path.as_deref(), Some("/s"));
    assert_eq!(r.interfaces[0].pci_id.as_deref(), Some("p"));
}

#[test]
fn prev_result_follows_the_config_family() {
    let prev = json!({"ips":[{"address":"10.0.0.2/24"}]});
    let r = CniResult::parse_prev_result(&prev, V0_4_0).unwrap();
    assert_eq!(r.cni_version, V0_4_0);
    let r = CniResult::parse_prev_result(&json!({"cniVersion":"0.3.1","ips":[]}), V0_4_0).unwrap();
    assert_eq!(r.cni_version, V0_3_1);
    let e = CniResult::parse_prev_result(&json!({"cniVersion":"0.3.1"}), V1_0_0).unwrap_err();
    assert_eq!(
        e.msg,
        r#"could not parse prevResult: result type supports [1.0.0 1.1.0] but unmarshalled CNIVersion is "0.3.1""#
    );
    let e = CniResult::parse_prev_result(&json!({"cniVersion":"1.0.0"}), V0_2_0).unwrap_err();
    assert_eq!(
        e.msg,
        r#"could not parse prevResult: result type supports [ 0.1.0 0.2.0] but unmarshalled CNIVersion is "1.0.0""#
    );
    // An explicit empty lower-case key beats the injected "CNIVersion" (sorted after it).
    let e = CniResult::parse_prev_result(&json!({"cniVersion":""}), V1_0_0).unwrap_err();
    assert!(
        e.msg.ends_with(r#"unmarshalled CNIVersion is """#),
        "{}",
        e.msg
    );
    let r = CniResult::parse_prev_result(&json!({"cniVersion":""}), V0_2_0).unwrap();
    assert_eq!(r.cni_version, V0_1_0);
    let r = CniResult::parse_prev_result(&json!({"CNIVersion":"1.0.0"}), V1_1_0).unwrap();
    assert_eq!(r.cni_version, V1_0_0);
    assert!(CniResult::parse_prev_result(&json!([1]), V1_1_0).is_err());
    assert!(CniResult::parse_prev_result(&json!({"cniVersion": 1}), V1_1_0).is_err());
    let e = CniResult::parse_prev_result(&json!({"ips":[{"address":"bad"}]}), V1_1_0).unwrap_err();
    assert_eq!(
        e.msg,
        "could not parse prevResult: invalid CIDR address: bad"
    );
}

#[test]
fn go_escaping_applies_to_result_strings() {
    let mut r = CniResult::new(V1_1_0);
    r.interfaces.push(Interface {
        name: "a<b>&c".into(),
        ..Interface::default()
    });
    assert!(r
        .to_json(V1_1_0)
        .unwrap()
        .contains(r#""name": "a\u003cb\u003e\u0026c""#));
}

use serde_json::json;

use super::*;

fn checked(json: &str) -> Result<NetworkConfig, FlannelConfigError> {
    let mut c = NetworkConfig::parse(json.as_bytes())?;
    c.check()?;
    Ok(c)
}

#[test]
fn kube_flannel_default_config() {
    let c =
        checked(r#"{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"vxlan"}}"#)
            .unwrap();
    assert!(c.enable_ipv4 && !c.enable_ipv6 && !c.enable_nftables);
    assert_eq!(c.subnet_len, 24);
    assert_eq!(c.subnet_min, Some("10.244.1.0".parse().unwrap()));
    assert_eq!(c.subnet_max, Some("10.244.255.0".parse().unwrap()));
    assert_eq!(c.backend_type, "vxlan");
    assert_eq!(
        c.backend_config().unwrap(),
        BackendConfig::Vxlan(VxlanOptions::default())
    );
}

#[test]
fn go_json_semantics() {
    let c = NetworkConfig::parse(
        br#"{"network":"10.1.2.3/16","enableipv6":true,"IPV6NETWORK":"fd00:1:2::5/56","backend":{"type":"VXLAN","vni":42,"Directrouting":true,"port":4789,"mtu":1400,"gbp":true,"learning":true,"disabletxchecksumoffload":true},"Unknown":1}"#,
    )
    .unwrap();
    assert_eq!(
        c.network,
        Some("10.1.0.0/16".parse().unwrap()),
        "host bits masked"
    );
    assert_eq!(c.ipv6_network, Some("fd00:1:2::/56".parse().unwrap()));
    assert!(c.enable_ipv4, "EnableIPv4 defaults to true");
    assert_eq!(c.backend_type, "vxlan", "type lower-cased");
    assert_eq!(
        c.backend_config().unwrap(),
        BackendConfig::Vxlan(VxlanOptions {
            vni: 42,
            port: 4789,
            mtu: 1400,
            gbp: true,
            learning: true,
            direct_routing: true,
            disable_tx_checksum_offload: true,
        })
    );
    let c = NetworkConfig::parse(br#"{"EnableIPv4":false}"#).unwrap();
    assert!(!c.enable_ipv4);
}

#[test]
fn backend_type_rules() {
    let c = NetworkConfig::parse(br#"{"Network":"10.0.0.0/8"}"#).unwrap();
    assert_eq!(
        (c.backend_type.as_str(), c.backend.is_none()),
        ("udp", true),
        "absent Backend means udp"
    );
    assert_eq!(
        c.backend_config().unwrap(),
        BackendConfig::Udp(UdpOptions { port: 8285 })
    );
    let c = NetworkConfig::parse(br#"{"Backend":{"Type":"udp","Port":9000}}"#).unwrap();
    assert_eq!(
        c.backend_config().unwrap(),
        BackendConfig::Udp(UdpOptions { port: 9000 })
    );
    let c = NetworkConfig::parse(br#"{"Backend":{"Type":"host-gw"}}"#).unwrap();
    assert_eq!(c.backend_config().unwrap(), BackendConfig::HostGw);
    let c = NetworkConfig::parse(br#"{"Backend":{"Type":"WireGuard","PSK":"x"}}"#).unwrap();
    assert_eq!(
        c.backend_config().unwrap(),
        BackendConfig::Other {
            kind: "wireguard".into(),
            raw: json!({"Type":"WireGuard","PSK":"x"})
        }
    );
    for (input, ty) in [
        (r#"{"Backend":{}}"#, ""),
        (r#"{"Backend":null}"#, ""),
        (r#"{"Backend":{"Type":"aws-vpc"}}"#, "aws-vpc"),
    ] {
        let c = NetworkConfig::parse(input.as_bytes()).unwrap();
        let e = c.backend_config().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("unknown backend type: {ty}"),
            "{input}"
        );
    }
    let e = NetworkConfig::parse(br#"{"Backend":"vxlan"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "error decoding Backend property of config: json: cannot unmarshal string into Go value of type struct { Type string }"
    );
    let c = NetworkConfig::parse(br#"{"Backend":{"Type":"vxlan","VNI":"x"}}"#).unwrap();
    assert!(c
        .backend_config()
        .unwrap_err()
        .to_string()
        .starts_with("error decoding VXLAN backend config: "));
}

#[test]
fn address_decoding_errors() {
    let cases: [(&str, &str); 5] = [
        (r#"{"Network":"fd00::/64"}"#, "invalid IPv4 CIDR format"),
        (
            r#"{"IPv6Network":"10.0.0.0/8"}"#,
            "invalid IPv6 CIDR format",
        ),
        (
            r#"{"Network":"10.0.0.0"}"#,
            "invalid CIDR address: 10.0.0.0",
        ),
        (r#"{"SubnetMin":"10.0.0"}"#, "invalid IP address: 10.0.0"),
        (
            r#"{"IPv6SubnetMax":"10.0.0.1"}"#,
            "invalid IP address: 10.0.0.1",
        ),
    ];
    for (input, msg) in cases {
        assert_eq!(
            NetworkConfig::parse(input.as_bytes())
                .unwrap_err()
                .to_string(),
            msg,
            "{input}"
        );
    }
    assert!(matches!(
        NetworkConfig::parse(b"[]"),
        Err(FlannelConfigError::Decode(_))
    ));
    assert!(matches!(
        NetworkConfig::parse(br#"{"SubnetLen":-1}"#),
        Err(FlannelConfigError::Decode(_))
    ));
    assert!(matches!(
        NetworkConfig::parse(b"{"),
        Err(FlannelConfigError::Decode(_))
    ));
}

#[test]
fn ipv4_defaults() {
    let c = checked(r#"{"Network":"10.0.0.0/26"}"#).unwrap();
    assert_eq!(
        (
            c.subnet_len,
            c.subnet_min.unwrap().to_string(),
            c.subnet_max.unwrap().to_string()
        ),
        (28, "10.0.0.16".into(), "10.0.0.48".into())
    );
    let c = checked(r#"{"Network":"10.0.0.0/22"}"#).unwrap();
    assert_eq!(c.subnet_len, 24);
    let c = checked(r#"{"Network":"10.0.0.0/23"}"#).unwrap();
    assert_eq!(c.subnet_len, 25);
    let c = checked(r#"{"Network":"10.0.0.0/28"}"#).unwrap();
    assert_eq!(
        (c.subnet_len, c.subnet_max.unwrap().to_string()),
        (30, "10.0.0.12".into())
    );
    let c = checked(r#"{"Network":"255.0.0.0/8","SubnetLen":16}"#).unwrap();
    assert_eq!(
        c.subnet_max.unwrap().to_string(),
        "255.255.0.0",
        "Next() wraps like Go's uint32"
    );
    let c = checked(
        r#"{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.1.0.0","SubnetMax":"10.2.0.0"}"#,
    )
    .unwrap();
    assert_eq!(c.subnet_min.unwrap().to_string(), "10.1.0.0");
    let c = checked(r#"{"Network":"10.0.0.0/16","SubnetMin":"0.0.0.0"}"#).unwrap();
    assert_eq!(
        c.subnet_min.unwrap().to_string(),
        "10.0.1.0",
        "0.0.0.0 means unset"
    );
}

#[test]
fn ipv4_rules() {
    let cases: [(&str, &str); 9] = [
        (
            r#"{}"#,
            "please define a correct Network parameter in the flannel config",
        ),
        (
            r#"{"Network":"0.0.0.0/0"}"#,
            "please define a correct Network parameter in the flannel config",
        ),
        (
            r#"{"Network":"10.0.0.0/8","SubnetLen":31}"#,
            "SubnetLen must be less than /31",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetLen":17}"#,
            "network must be able to accommodate at least four subnets",
        ),
        (
            r#"{"Network":"10.0.0.0/29"}"#,
            "network is too small. Minimum useful network prefix is /28",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}"#,
            "SubnetMin is not in the range of the Network",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMax":"11.0.0.0"}"#,
            "SubnetMax is not in the range of the Network",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.1"}"#,
            "SubnetMin is not on a SubnetLen boundary: 10.0.1.1",
        ),
        (
            r#"{"Network":"10.0.0.0/16","SubnetMax":"10.0.200.128"}"#,
            "SubnetMax is not on a SubnetLen boundary: 10.0.200.128",
        ),
    ];
    for (input, msg) in cases {
        assert_eq!(checked(input).unwrap_err().to_string(), msg, "{input}");
    }
    assert!(
        checked(r#"{"EnableIPv4":false}"#).is_ok(),
        "nothing to check without a family"
    );
    assert!(checked(r#"{"Network":"10.0.0.0/16","SubnetLen":18}"#).is_ok());
    assert!(checked(r#"{"Network":"10.0.0.0/16","SubnetLen":30}"#).is_ok());
}

#[test]
fn ipv6_defaults_and_rules() {
    let c = checked(r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:cafe:42::/56"}"#)
        .unwrap();
    assert_eq!(c.ipv6_subnet_len, 64);
    assert_eq!(c.ipv6_subnet_min.unwrap().to_string(), "2001:cafe:42:1::");
    assert_eq!(c.ipv6_subnet_max.unwrap().to_string(), "2001:cafe:42:ff::");
    let c =
        checked(r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/120"}"#).unwrap();
    assert_eq!(
        (c.ipv6_subnet_len, c.ipv6_subnet_min.unwrap().to_string()),
        (122, "fd00::40".into())
    );
    let c = checked(r#"{"EnableIPv6":true,"Network":"10.0.0.0/16","IPv6Network":"fd00::/62"}"#)
        .unwrap();
    assert_eq!(c.ipv6_subnet_len, 64);
    let cases: [(&str, &str); 8] = [
        (
            r#"{"IPv6Network":"::/0"}"#,
            "please define a correct IPv6Network parameter in the flannel config",
        ),
        (
            r#"{"IPv6Network":"fd00::/48","IPv6SubnetLen":127}"#,
            "SubnetLen must be less than /127",
        ),
        (
            r#"{"IPv6Network":"fd00::/48","IPv6SubnetLen":49}"#,
            "network must be able to accommodate at least four subnets",
        ),
        (
            r#"{"IPv6Network":"fd00::/125"}"#,
            "IPv6Network is too small. Minimum useful network prefix is /124",
        ),
        (
            r#"{"IPv6Network":"fd00::/48","IPv6SubnetMin":"fd01::"}"#,
            "IPv6SubnetMin is not in the range of the IPv6Network",
        ),
        (
            r#"{"IPv6Network":"fd00::/48","IPv6SubnetMax":"fd01::"}"#,
            "IPv6SubnetMax is not in the range of the IPv6Network",
        ),
        (
            r#"{"IPv6Network":"fd00::/48","IPv6SubnetMin":"fd00:0:0:1::1"}"#,
            "IPv6SubnetMin is not on a SubnetLen boundary: fd00:0:0:1::1",
        ),
        (
            r#"{"IPv6Network":"fd00::/48","IPv6SubnetMax":"fd00:0:0:2::8"}"#,
            "IPv6SubnetMax is not on a SubnetLen boundary: fd00:0:0:2::8",
        ),
    ];
    for (input, msg) in cases {
        let json = input.replacen('{', r#"{"EnableIPv4":false,"EnableIPv6":true,"#, 1);
        assert_eq!(checked(&json).unwrap_err().to_string(), msg, "{json}");
    }
}

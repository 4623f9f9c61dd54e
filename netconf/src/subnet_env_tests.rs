use super::*;

const FLANNELD: &str = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

#[test]
fn parses_and_renders_flanneld_output_byte_for_byte() {
    let env = SubnetEnv::parse(FLANNELD).unwrap();
    assert_eq!(
        env.networks,
        vec!["10.244.0.0/16".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(env.subnet.unwrap().to_string(), "10.244.2.1/24");
    assert_eq!(env.subnet_network().unwrap().to_string(), "10.244.2.0/24");
    assert_eq!(
        env.ipv6_subnet_network().unwrap().to_string(),
        "2001:cafe:42::/64"
    );
    assert_eq!((env.mtu, env.ipmasq), (Some(1450), Some(true)));
    assert_eq!(env.render(), FLANNELD);
    assert!(env.ensure_complete("/run/flannel/subnet.env").is_ok());
}

#[test]
fn renders_only_present_families() {
    let env = SubnetEnv {
        networks: vec!["10.244.0.0/16".parse().unwrap()],
        subnet: Some("10.244.7.1/24".parse().unwrap()),
        mtu: Some(1500),
        ipmasq: Some(false),
        ..SubnetEnv::default()
    };
    assert_eq!(
        env.render(),
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"
    );
}

#[test]
fn lenient_where_the_plugin_is_lenient() {
    let env = SubnetEnv::parse(
        "\n# comment\nOTHER=x\nFLANNEL_MTU =9\nFLANNEL_NETWORK=10.1.2.3/16,10.1.0.0/16,10.2.0.0/16\r\nFLANNEL_IPMASQ=True\nFLANNEL_MTU=1400\nFLANNEL_MTU=1450",
    )
    .unwrap();
    assert_eq!(
        env.networks,
        vec![
            "10.1.0.0/16".parse::<Ipv4Net>().unwrap(),
            "10.2.0.0/16".parse().unwrap()
        ],
        "masked and deduplicated"
    );
    assert_eq!(
        env.ipmasq,
        Some(false),
        "only the exact string true is true"
    );
    assert_eq!(env.mtu, Some(1450), "later keys overwrite");
    assert_eq!(SubnetEnv::parse("").unwrap(), SubnetEnv::default());
}

#[test]
fn reports_bad_lines_with_their_number() {
    let cases: [(&str, &str); 8] = [
        ("FLANNEL_MTU=1450\nFLANNEL_SUBNET", "line 2: FLANNEL_SUBNET has no '=' and no value"),
        ("FLANNEL_SUBNET=10.0.0.1/24,10.0.1.1/24", "line 1: FLANNEL_SUBNET: \"10.0.0.1/24,10.0.1.1/24\" is not a CIDR (a single CIDR is expected, not a list)"),
        ("FLANNEL_SUBNET=", "line 1: FLANNEL_SUBNET: \"\" is not a CIDR (empty)"),
        ("\n\nFLANNEL_NETWORK=10.0.0.0/8,fd00::/8", "line 3: FLANNEL_NETWORK: \"fd00::/8\" is not a CIDR (expected an IPv4 CIDR)"),
        ("FLANNEL_IPV6_SUBNET=10.0.0.1/24", "line 1: FLANNEL_IPV6_SUBNET: \"10.0.0.1/24\" is not a CIDR (expected an IPv6 CIDR)"),
        ("FLANNEL_NETWORK=10.0.0.0", "line 1: FLANNEL_NETWORK: \"10.0.0.0\" is not a CIDR (malformed address or prefix)"),
        ("FLANNEL_MTU=-1", "line 1: FLANNEL_MTU: \"-1\" is not a decimal number in 0..=4294967295"),
        ("FLANNEL_MTU=4294967296", "line 1: FLANNEL_MTU: \"4294967296\" is not a decimal number in 0..=4294967295"),
    ];
    for (input, msg) in cases {
        assert_eq!(
            SubnetEnv::parse(input).unwrap_err().to_string(),
            msg,
            "{input:?}"
        );
    }
    assert!(SubnetEnv::parse("FLANNEL_MTU=+5").is_err());
}

#[test]
fn missing_keys_in_upstream_order() {
    let e = SubnetEnv::default()
        .ensure_complete("/run/flannel/subnet.env")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/run/flannel/subnet.env is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ"
    );
    let v6_only = SubnetEnv::parse("FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:1::1/64\nFLANNEL_IPMASQ=false").unwrap();
    assert_eq!(v6_only.missing(), vec!["FLANNEL_MTU"]);
}

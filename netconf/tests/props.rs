//! Property tests. Every test is named `prop_*`; the number of cases per test follows
//! proptest's `PROPTEST_CASES` environment variable, so a fuzz campaign can scale them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netconf::args::parse_cni_args;
use netconf::flannel::NetworkConfig;
use netconf::gojson;
use netconf::subnet_env::SubnetEnv;
use netconf::{
    CniEnv, CniError, CniResult, CniVersion, Dns, Interface, IpConfig, NetConf, NetConfList, Route,
};
use proptest::prelude::*;
use serde_json::Value;

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

/// IPv6 addresses Go prints as IPv6 (IPv4-mapped ones print as IPv4).
fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>()
        .prop_map(Ipv6Addr::from)
        .prop_filter("not v4-mapped", |a| a.to_ipv4_mapped().is_none())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![v4().prop_map(IpAddr::V4), v6().prop_map(IpAddr::V6)]
}

fn cidr() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (v4(), 0u8..=32).prop_map(|(a, p)| IpNet::V4(Ipv4Net::new(a, p).unwrap())),
        (v6(), 0u8..=128).prop_map(|(a, p)| IpNet::V6(Ipv6Net::new(a, p).unwrap())),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:/._-]{1,12}",
        "\\PC{1,8}",
        "[<>&\"\\\\\u{2028}\u{1}]{1,4}"
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn interface() -> impl Strategy<Value = Interface> {
    (
        text(),
        opt_text(),
        proptest::option::of(1u32..),
        opt_text(),
        opt_text(),
        opt_text(),
    )
        .prop_map(|(name, mac, mtu, sandbox, socket_path, pci_id)| Interface {
            name,
            mac,
            mtu,
            sandbox,
            socket_path,
            pci_id,
        })
}

fn route() -> impl Strategy<Value = Route> {
    (
        cidr(),
        proptest::option::of(ip()),
        proptest::option::of(1u32..),
        proptest::option::of(1u32..),
        proptest::option::of(1u32..),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u8>()),
    )
        .prop_map(|(dst, gw, mtu, advmss, priority, table, scope)| Route {
            dst,
            gw,
            mtu,
            advmss,
            priority,
            table,
            scope,
        })
}

fn result() -> impl Strategy<Value = CniResult> {
    (
        proptest::collection::vec(interface(), 0..3),
        proptest::collection::vec(
            (
                cidr(),
                proptest::option::of(ip()),
                proptest::option::of(0usize..4),
            ),
            0..4,
        ),
        proptest::collection::vec(route(), 0..4),
        (
            proptest::collection::vec(text(), 0..3),
            opt_text(),
            proptest::collection::vec(text(), 0..2),
        ),
    )
        .prop_map(|(interfaces, ips, routes, (nameservers, domain, search))| {
            let mut r = CniResult::new(CniVersion::V1_1_0);
            r.interfaces = interfaces;
            r.ips = ips
                .into_iter()
                .map(|(address, gateway, interface)| IpConfig {
                    address,
                    gateway,
                    interface,
                })
                .collect();
            r.routes = routes;
            r.dns = Dns {
                nameservers,
                domain,
                search,
                options: Vec::new(),
            };
            r
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC*".prop_map(Value::from),
        "[<>&\u{2028}\u{2029}\u{0}-\u{1f}\"\\\\]*".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::vec(("\\PC{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn prop_parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = NetConf::parse(&bytes);
        let _ = NetConfList::parse(&bytes);
        let _ = CniResult::parse(&bytes, CniVersion::V1_0_0);
        let _ = CniError::from_json(&bytes);
        let _ = NetworkConfig::parse(&bytes).map(|mut c| { let _ = c.check(); let _ = c.backend_config(); });
        let _ = gojson::from_slice::<Value>(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = SubnetEnv::parse(&text);
        let _ = parse_cni_args(&text);
        let _ = netconf::version::parse_loose(&text);
    }

    #[test]
    fn prop_parsers_never_panic_on_json(v in json_value(), version in 0usize..7) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = NetConf::parse(&bytes);
        let _ = NetConfList::parse(&bytes);
        let _ = CniResult::parse(&bytes, CniVersion::ALL[version]);
        let _ = CniResult::parse_prev_result(&v, CniVersion::ALL[version]);
        let _ = NetworkConfig::parse(&bytes).map(|mut c| { let _ = c.check(); let _ = c.backend_config(); });
    }

    #[test]
    fn prop_net_conf_shaped_inputs_never_panic(
        name in "\\PC{0,10}", ver in prop_oneof![Just(String::new()), "[0-9.]{0,6}", Just("1.1.0".to_owned())],
        prev in json_value(),
    ) {
        let conf = serde_json::json!({"cniVersion": ver, "name": name, "type": "bridge", "prevResult": prev});
        let _ = NetConf::parse(&serde_json::to_vec(&conf).unwrap());
    }

    #[test]
    fn prop_env_never_panics(cmd in "\\PC{0,8}", id in "\\PC{0,20}", ifname in "\\PC{0,20}", path in "\\PC{0,20}") {
        let vars = [("CNI_COMMAND", cmd), ("CNI_CONTAINERID", id), ("CNI_IFNAME", ifname), ("CNI_PATH", path)];
        let _ = CniEnv::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()));
    }

    #[test]
    fn prop_result_round_trips_in_v1(r in result(), v1 in prop_oneof![Just(CniVersion::V1_0_0), Just(CniVersion::V1_1_0)]) {
        let printed = r.to_json(v1).unwrap();
        let back = CniResult::parse(printed.as_bytes(), CniVersion::V0_1_0).unwrap();
        prop_assert_eq!(back, r.clone().with_version(v1));
    }

    #[test]
    fn prop_result_round_trips_in_v04(r in result(), v in prop_oneof![Just(CniVersion::V0_3_0), Just(CniVersion::V0_3_1), Just(CniVersion::V0_4_0)]) {
        let printed = r.to_json(v).unwrap();
        let back = CniResult::parse(printed.as_bytes(), CniVersion::V0_1_0).unwrap();
        let mut expected = r.clone().with_version(v);
        for i in &mut expected.interfaces {
            *i = Interface { name: i.name.clone(), mac: i.mac.clone(), sandbox: i.sandbox.clone(), ..Interface::default() };
        }
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn prop_result_v02_keeps_first_address_per_family(r in result(), v in prop_oneof![Just(CniVersion::V0_1_0), Just(CniVersion::V0_2_0)]) {
        match r.to_json(v) {
            Err(e) => prop_assert!(r.ips.is_empty() && e.msg == "cannot convert: no valid IP addresses"),
            Ok(printed) => {
                let back = CniResult::parse(printed.as_bytes(), CniVersion::V0_1_0).unwrap();
                let first = |want_v4: bool| r.ips.iter().find(|ip| ip.address.addr().is_ipv4() == want_v4).map(|ip| ip.address);
                let expected: Vec<IpNet> = [first(true), first(false)].into_iter().flatten().collect();
                prop_assert_eq!(back.ips.iter().map(|ip| ip.address).collect::<Vec<_>>(), expected);
                prop_assert!(back.interfaces.is_empty());
                prop_assert_eq!(back.dns, r.dns.clone());
            }
        }
    }

    #[test]
    fn prop_go_encoding_is_valid_json(v in json_value()) {
        for sorted in [false, true] {
            let pretty = gojson::encode::to_string_pretty(&v, sorted);
            prop_assert_eq!(serde_json::from_str::<Value>(&pretty).unwrap(), v.clone());
            let compact = gojson::encode::to_string_compact(&v, sorted);
            prop_assert_eq!(serde_json::from_str::<Value>(&compact).unwrap(), v.clone());
            let html_safe = !compact.contains(['<', '>', '&', '\u{2028}', '\u{2029}']);
            prop_assert!(html_safe, "Go escapes HTML-sensitive characters: {}", compact);
        }
    }

    #[test]
    fn prop_error_json_round_trips(code in any::<u32>(), msg in "\\PC*", details in proptest::option::of("\\PC+")) {
        let e = CniError { code, msg, details };
        prop_assert_eq!(CniError::from_json(e.to_json().as_bytes()).unwrap(), e);
    }

    #[test]
    fn prop_subnet_env_round_trips(
        nets in proptest::collection::vec((v4(), 0u8..=32), 0..4),
        subnet in proptest::option::of((v4(), 0u8..=32)),
        nets6 in proptest::collection::vec((v6(), 0u8..=128), 0..3),
        subnet6 in proptest::option::of((v6(), 0u8..=128)),
        mtu in proptest::option::of(any::<u32>()),
        ipmasq in proptest::option::of(any::<bool>()),
    ) {
        let mut env = SubnetEnv {
            subnet: subnet.map(|(a, p)| Ipv4Net::new(a, p).unwrap()),
            ipv6_subnet: subnet6.map(|(a, p)| Ipv6Net::new(a, p).unwrap()),
            mtu,
            ipmasq,
            ..SubnetEnv::default()
        };
        for n in nets.into_iter().map(|(a, p)| Ipv4Net::new(a, p).unwrap().trunc()) {
            if !env.networks.contains(&n) { env.networks.push(n); }
        }
        for n in nets6.into_iter().map(|(a, p)| Ipv6Net::new(a, p).unwrap().trunc()) {
            if !env.ipv6_networks.contains(&n) { env.ipv6_networks.push(n); }
        }
        let rendered = env.render();
        prop_assert_eq!(SubnetEnv::parse(&rendered).unwrap(), env.clone());
        prop_assert_eq!(SubnetEnv::parse(&rendered).unwrap().render(), rendered);
    }

    #[test]
    fn prop_cni_args_round_trip(pairs in proptest::collection::vec(("[^;=]*", "[^;=]*"), 1..5)) {
        let joined = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        prop_assert_eq!(parse_cni_args(&joined).unwrap(), pairs);
    }
}

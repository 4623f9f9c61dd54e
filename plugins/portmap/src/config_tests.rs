use super::*;
use netops::firewall::Backend;
use serde_json::json;

fn netconf(v: serde_json::Value) -> NetConf {
    NetConf::parse(v.to_string().as_bytes()).unwrap()
}

fn base() -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0", "name": "cbr0", "type": "portmap",
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "10.0.0.5"}
        ]},
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
            "ips": [
                {"address": "10.99.0.1/24", "interface": 0},
                {"address": "10.244.1.2/24", "interface": 2, "gateway": "10.244.1.1"},
                {"address": "10.244.1.3/24", "interface": 2},
                {"address": "fd00::2/64", "interface": 2}
            ]
        }
    })
}

#[test]
fn defaults_and_mappings() {
    let c = PortMapConf::parse(&netconf(base()), "eth0").unwrap();
    assert!(c.snat && !c.masq_all);
    assert_eq!(c.mark_masq_bit, 13);
    assert_eq!(c.mark(), "0x2000/0x2000");
    assert_eq!(c.mappings.len(), 2);
    assert_eq!(c.mappings[1].protocol, "udp");
    assert_eq!(c.mappings[1].host_ip, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(
        c.container_v4,
        Some("10.244.1.2/24".parse().unwrap()),
        "first sandbox address, host-side skipped"
    );
    assert_eq!(c.container_v6, Some("fd00::2/64".parse().unwrap()));
}

#[test]
fn other_interfaces_are_not_the_container() {
    let c = PortMapConf::parse(&netconf(base()), "net1").unwrap();
    assert_eq!(c.container_v4, None);
    let mut v = base();
    v["prevResult"]["ips"] =
        json!([{"address": "10.1.0.9/16"}, {"address": "10.1.0.8/16", "interface": 7}]);
    let c = PortMapConf::parse(&netconf(v), "net1").unwrap();
    assert_eq!(
        c.container_v4,
        Some("10.1.0.9/16".parse().unwrap()),
        "no interface index = the container's"
    );
}

#[test]
fn invalid_values_are_upstream_errors() {
    let err = |patch: serde_json::Value| {
        let mut v = base();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        PortMapConf::parse(&netconf(v), "eth0")
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(json!({"markMasqBit": 32})),
        "failed to parse config: MasqMarkBit must be between 0 and 31"
    );
    assert_eq!(
        err(json!({"markMasqBit": -1})),
        "failed to parse config: MasqMarkBit must be between 0 and 31"
    );
    assert_eq!(
        err(json!({"markMasqBit": 3, "externalSetMarkChain": "X"})),
        "failed to parse config: Cannot specify externalSetMarkChain and markMasqBit"
    );
    assert_eq!(
        err(
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 0, "protocol": "tcp"}]}})
        ),
        "failed to parse config: Invalid container port number: 0"
    );
    assert_eq!(
        err(
            json!({"runtimeConfig": {"portMappings": [{"hostPort": -5, "containerPort": 80, "protocol": "tcp"}]}})
        ),
        "failed to parse config: Invalid host port number: -5"
    );
    assert_eq!(
        err(
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}]}})
        ),
        "failed to parse config: Invalid host port number: 70000"
    );
    // Spliced into nft scripts: a protocol carrying syntax would inject rules.
    assert_eq!(
        err(
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "tcp dport 1 accept\nflush ruleset"}]}})
        ),
        "failed to parse config: Invalid protocol: \"tcp dport 1 accept\\nflush ruleset\""
    );
    assert_eq!(
        err(json!({"snat": "yes"})),
        "failed to parse config: failed to parse network configuration: json: cannot unmarshal string into Go struct field PortMapConf.snat of type bool"
    );
    assert_eq!(
        err(
            json!({"runtimeConfig": {"portMappings": [{"hostPort": "80", "containerPort": 80}]}})
        ),
        "failed to parse config: failed to parse network configuration: json: cannot unmarshal string into Go struct field PortMapEntry.runtimeConfig.portMappings.hostPort of type int"
    );
    assert_eq!(
        err(json!({"conditionsV4": "-s 1.2.3.4"})),
        "failed to parse config: failed to parse network configuration: json: cannot unmarshal string into Go struct field PortMapConf.conditionsV4 of type []string"
    );
}

#[test]
fn backend_selection_follows_ensure_backend() {
    let parse = |patch: serde_json::Value| {
        let mut v = base();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        PortMapConf::parse(&netconf(v), "eth0").unwrap()
    };
    let both = |_: Backend| true;
    let only_nft = |b: Backend| b == Backend::Nftables;
    assert_eq!(
        parse(json!({})).resolve_backend(both).unwrap(),
        Backend::Iptables
    );
    assert_eq!(
        parse(json!({})).resolve_backend(only_nft).unwrap(),
        Backend::Nftables
    );
    assert_eq!(
        parse(json!({"backend": "nftables"}))
            .resolve_backend(both)
            .unwrap(),
        Backend::Nftables
    );
    assert_eq!(
        parse(json!({"backend": "ebpf"}))
            .resolve_backend(both)
            .unwrap_err()
            .to_string(),
        "unrecognized backend \"ebpf\""
    );
    assert_eq!(
        parse(json!({"backend": "nftables", "externalSetMarkChain": "KUBE-MARK", "conditionsV4": ["-s", "1.2.3.4"]}))
            .resolve_backend(both)
            .unwrap_err()
            .to_string(),
        "nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain conditionsV4]"
    );
    assert_eq!(
        parse(json!({"conditionsV6": ["ip6", "saddr", "::1"]})).resolve_backend(both).unwrap_err().to_string(),
        "iptables backend was requested but configuration contains nftables-specific options [conditionsV6]"
    );
    // Conditions never pick the backend, they only rule out the other one.
    assert!(parse(json!({"conditionsV4": ["!", "-s", "1.2.3.4"]}))
        .resolve_backend(only_nft)
        .is_err());
}

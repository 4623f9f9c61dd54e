//! portmap's NAT rules in real namespaces: the exact rules upstream was observed to leave,
//! parity with the reference portmap for many option combinations, DEL/CHECK behaviour,
//! and the nftables backend carrying traffic.

use std::path::Path;

use conformance::support::flannel::*;
use conformance::{Driver, Impl, Netns};
use serde_json::{json, Value};

/// bridge (ipMasq, as in the observation) + host-local, then portmap with `extra` keys.
fn conflist(version: &str, ipam_dir: &Path, dual_stack: bool, extra: &Value) -> String {
    let mut ranges = vec![json!([{"subnet": SUBNET}])];
    if dual_stack {
        ranges.push(json!([{"subnet": "fd00:244:1::/64"}]));
    }
    let mut portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    for (k, v) in extra.as_object().unwrap() {
        portmap[k] = v.clone();
    }
    json!({
        "cniVersion": version,
        "name": "cbr0",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "dataDir": ipam_dir, "ranges": ranges, "routes": [{"dst": "0.0.0.0/0"}]}},
            portmap
        ]
    })
    .to_string()
}

fn with_portmap(which: Impl) -> Driver {
    driver(&[
        ("bridge", Impl::Reference),
        ("host-local", Impl::Reference),
        ("portmap", which),
    ])
}

fn observed_mappings() -> Value {
    json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "10.0.0.5"}
    ]})
}

fn portmap_lines(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter(|l| l.starts_with("-A") && (l.contains("CNI-HOSTPORT") || l.contains("CNI-DN-")))
        .map(str::to_owned)
        .collect()
}

/// cni.md §5.2: what the reference portmap leaves for the observed example.
const OBSERVED: &str = r#"-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-DN-9cccacf967e00a3c04e26 -s 10.244.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.2:80
-A CNI-DN-9cccacf967e00a3c04e26 -s 10.244.1.0/24 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -s 127.0.0.1/32 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-9cccacf967e00a3c04e26 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.244.1.2:53
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"cbr0\" id: \"ctr1\"" -m multiport --dports 8080 -j CNI-DN-9cccacf967e00a3c04e26
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \"cbr0\" id: \"ctr1\"" -m multiport --dports 5353 -j CNI-DN-9cccacf967e00a3c04e26
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000"#;

#[test]
fn observed_example_leaves_exactly_the_recorded_rules() {
    let ipam = tempfile::tempdir().unwrap();
    let driver = with_portmap(Impl::Ours);
    let host = ns("pmhost");
    let pod = ns("pmpod");
    let conf = conflist("0.3.1", ipam.path(), false, &json!({}));
    let caps = observed_mappings();
    let result = driver
        .add(&conf, &host, &pod, "eth0", "ctr1", Some(&caps))
        .unwrap();
    assert_eq!(first_ip(&result), "10.244.1.2/24");
    assert_eq!(
        portmap_lines(&host.iptables_save("nat").unwrap()),
        OBSERVED.lines().collect::<Vec<_>>()
    );
    assert_eq!(
        host.sysctl("net.ipv4.conf.cni0.route_localnet").unwrap(),
        "1"
    );

    driver
        .del(&conf, &host, &pod, "eth0", "ctr1", Some(&caps))
        .unwrap();
    let left = portmap_lines(&host.iptables_save("nat").unwrap());
    assert!(left.iter().all(|l| !l.contains("CNI-DN-")), "{left:#?}");
    assert_eq!(
        left.len(),
        5,
        "top-level chains and jumps stay, as upstream: {left:#?}"
    );
}

/// ADD with the same config under our portmap and the reference one, each on its own host:
/// iptables-save (v4 and v6 nat) must be identical, before and after DEL.
fn same_rules_as_reference(extra: Value, caps: Value, dual_stack: bool) {
    same_rules_as_reference_after(extra, caps, dual_stack, "true");
}

/// As [`same_rules_as_reference`], with `prep` (a shell snippet) run on each host first.
fn same_rules_as_reference_after(extra: Value, caps: Value, dual_stack: bool, prep: &str) {
    let mut saves = Vec::new();
    for which in [Impl::Reference, Impl::Ours] {
        let ipam = tempfile::tempdir().unwrap();
        let driver = with_portmap(which);
        let host = ns("pmhost");
        let pod = ns("pmpod");
        let conf = conflist("1.0.0", ipam.path(), dual_stack, &extra);
        assert!(host.sh(prep).status.success(), "{prep}");
        driver
            .add(&conf, &host, &pod, "eth0", "ctr-parity", Some(&caps))
            .unwrap_or_else(|e| panic!("{which} portmap: {e:?}"));
        let added = (nat_rules(&host), host.ip6tables_save("nat").unwrap());
        driver
            .del(&conf, &host, &pod, "eth0", "ctr-parity", Some(&caps))
            .unwrap();
        saves.push((added, nat_rules(&host)));
    }
    let strip6 = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("-A") || l.starts_with(":CNI"))
            .map(|l| l.split(" [").next().unwrap().to_owned())
            .collect()
    };
    let (theirs, ours) = (&saves[0], &saves[1]);
    assert!(
        ours.0 .0.iter().any(|l| l.starts_with("-A CNI-DN-")),
        "{:#?}",
        ours.0 .0
    );
    if dual_stack {
        assert!(
            strip6(&ours.0 .1)
                .iter()
                .any(|l| l.starts_with("-A CNI-DN-")),
            "{}",
            ours.0 .1
        );
    }
    assert_eq!(ours.0 .0, theirs.0 .0, "IPv4 nat after ADD");
    assert_eq!(
        strip6(&ours.0 .1),
        strip6(&theirs.0 .1),
        "IPv6 nat after ADD"
    );
    assert_eq!(ours.1, theirs.1, "IPv4 nat after DEL");
}

#[test]
fn parity_default_options_many_ports() {
    let mut maps: Vec<Value> = (0..17)
        .map(|i| json!({"hostPort": 9000 + i, "containerPort": 80 + i, "protocol": "tcp"}))
        .collect();
    maps.push(
        json!({"hostPort": 8053, "containerPort": 53, "protocol": "udp", "hostIP": "0.0.0.0"}),
    );
    maps.push(
        json!({"hostPort": 8443, "containerPort": 443, "protocol": "tcp", "hostIP": "192.0.2.7"}),
    );
    same_rules_as_reference(json!({}), json!({"portMappings": maps}), false);
}

#[test]
fn parity_snat_off_and_custom_mark_bit() {
    same_rules_as_reference(json!({"snat": false}), observed_mappings(), false);
    same_rules_as_reference(json!({"markMasqBit": 5}), observed_mappings(), false);
}

#[test]
fn parity_external_mark_chain_and_conditions() {
    // kube-proxy owns this chain; portmap only jumps to it.
    same_rules_as_reference_after(
        json!({"externalSetMarkChain": "KUBE-MARK-MASQ", "conditionsV4": ["!", "-s", "192.0.2.0/24"]}),
        observed_mappings(),
        false,
        "iptables -t nat -N KUBE-MARK-MASQ",
    );
}

#[test]
fn parity_dual_stack() {
    let caps = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8081, "containerPort": 81, "protocol": "tcp", "hostIP": "fd00::5"}
    ]});
    same_rules_as_reference(json!({}), caps, true);
}

#[test]
fn del_needs_port_mappings_and_repeats_cleanly() {
    let ipam = tempfile::tempdir().unwrap();
    let driver = with_portmap(Impl::Ours);
    let host = ns("pmhost");
    let pod = ns("pmpod");
    let conf = conflist("1.0.0", ipam.path(), false, &json!({}));
    let caps = observed_mappings();
    driver
        .add(&conf, &host, &pod, "eth0", "ctr1", Some(&caps))
        .unwrap();
    driver
        .check(&conf, &host, &pod, "eth0", "ctr1", Some(&caps))
        .unwrap();
    // Without the capability the DEL config has no mappings: upstream leaves the rules.
    driver
        .del(&conf, &host, &pod, "eth0", "ctr1", None)
        .unwrap();
    assert_eq!(dn_chain_lines(&host).len(), 9, "{:#?}", nat_rules(&host));
    driver
        .add(&conf, &host, &pod, "eth0", "ctr1", Some(&caps))
        .unwrap();
    assert_eq!(
        dn_chain_lines(&host).len(),
        9,
        "re-ADD rebuilds instead of duplicating"
    );
    driver
        .del(&conf, &host, &pod, "eth0", "ctr1", Some(&caps))
        .unwrap();
    assert!(dn_chain_lines(&host).is_empty());
    driver
        .del(&conf, &host, &pod, "eth0", "ctr1", Some(&caps))
        .unwrap();
}

#[test]
fn portmap_alone_must_be_chained() {
    let driver = driver(&[("portmap", Impl::Ours)]);
    let host = ns("pmhost");
    let pod = ns("pmpod");
    let conf = json!({"cniVersion": "1.0.0", "name": "solo", "plugins": [{"type": "portmap", "capabilities": {"portMappings": true}}]}).to_string();
    let err = driver
        .add(
            &conf,
            &host,
            &pod,
            "eth0",
            "ctr1",
            Some(&observed_mappings()),
        )
        .unwrap_err();
    assert_eq!(err.msg, "must be called as chained plugin", "{err:?}");
    let conf = conf.replace(
        r#""type":"portmap""#,
        r#""type":"portmap","backend":"ebpf""#,
    );
    let err = driver
        .add(&conf, &host, &pod, "eth0", "ctr1", None)
        .unwrap_err();
    assert_eq!(err.msg, "unrecognized backend \"ebpf\"", "{err:?}");
}

fn nft_rules_for(host: &Netns, container_id: &str) -> Vec<String> {
    let ruleset = host.nft_ruleset().unwrap();
    ruleset["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("rule"))
        .filter(|r| r["table"] == "cni_hostport" && r["comment"] == container_id)
        .map(|r| {
            format!(
                "{} {}",
                r["family"].as_str().unwrap(),
                r["chain"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn nftables_backend_forwards_and_cleans_up() {
    let ipam = tempfile::tempdir().unwrap();
    let driver = with_portmap(Impl::Ours);
    let host = ns("pmhost");
    let pods = [ns("pmpod"), ns("pmpod")];
    let conf = conflist("1.0.0", ipam.path(), false, &json!({"backend": "nftables"}));
    let caps = port_mappings();
    driver
        .add(&conf, &host, &pods[0], "eth0", "ctr-nft", Some(&caps))
        .unwrap();
    driver
        .add(&conf, &host, &pods[1], "eth0", "ctr-other", None)
        .unwrap();
    assert_eq!(
        nft_rules_for(&host, "ctr-nft"),
        [
            "ip hostports",
            "ip hostports",
            "ip masquerading",
            "ip masquerading"
        ],
        "two DNAT rules, hairpin and localhost masquerade"
    );
    assert!(
        dn_chain_lines(&host).is_empty(),
        "no iptables rules with the nftables backend"
    );
    driver
        .check(&conf, &host, &pods[0], "eth0", "ctr-nft", Some(&caps))
        .unwrap();

    let _l = listen(&pods[0], "nft-pod");
    assert_eq!(tcp_get(&host, GATEWAY, 8080), "nft-pod");
    assert_eq!(tcp_get(&host, "127.0.0.1", 8080), "nft-pod");
    assert_eq!(tcp_get(&pods[1], GATEWAY, 8080), "nft-pod");
    assert_eq!(tcp_get(&pods[0], GATEWAY, 8080), "nft-pod", "hairpin");
    assert_eq!(udp_get(&pods[1], GATEWAY, 5353), "nft-pod");

    // DEL without the capability leaves portmap's rules (upstream); the next ADD replaces
    // them instead of adding duplicates.
    driver
        .del(&conf, &host, &pods[0], "eth0", "ctr-nft", None)
        .unwrap();
    assert_eq!(nft_rules_for(&host, "ctr-nft").len(), 4);
    driver
        .add(&conf, &host, &pods[0], "eth0", "ctr-nft", Some(&caps))
        .unwrap();
    assert_eq!(nft_rules_for(&host, "ctr-nft").len(), 4);

    driver
        .del(&conf, &host, &pods[0], "eth0", "ctr-nft", Some(&caps))
        .unwrap();
    assert!(nft_rules_for(&host, "ctr-nft").is_empty());
    let err = driver
        .check(&conf, &host, &pods[1], "eth0", "ctr-other", Some(&caps))
        .unwrap_err();
    assert!(
        err.msg
            .contains("expected 2 rules for container ctr-other in chain hostports"),
        "{err:?}"
    );
    driver
        .del(&conf, &host, &pods[1], "eth0", "ctr-other", None)
        .unwrap();
}

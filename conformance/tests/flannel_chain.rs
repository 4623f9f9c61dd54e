//! The kube-flannel conflist (flannel → bridge + host-local, then portmap) on one node,
//! through libcni, with our plugins, the reference ones, and mixes of both.

use conformance::support::flannel::*;
use conformance::{Impl, Netns};
use serde_json::Value;

/// What one run of the node scenario observed, for comparing implementations.
#[derive(Debug, PartialEq)]
struct Observed {
    results: Vec<Value>,
    pod_routes: Vec<Vec<(String, String)>>,
    nat: Vec<String>,
}

fn routes_of(pod: &Netns) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = pod
        .routes()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dst"].as_str().unwrap_or("").to_owned(),
                r["gateway"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    r.sort();
    r
}

fn hairpin_of(host: &Netns, veth: &str) -> Value {
    host.link(veth).unwrap().expect("host veth")["linkinfo"]["info_slave_data"]["hairpin"].clone()
}

/// Two pods on a flannel node: addresses, routes, MTU, hairpin, pod-to-pod traffic, a TCP
/// and a UDP host port reached from the host (node IP and 127.0.0.1), from the other pod and
/// from the pod itself (hairpin); then DEL leaves nothing behind.
fn kube_flannel_node(choices: &[(&str, Impl)], version: &str) -> Observed {
    let node = Node::new();
    let driver = driver(choices);
    let host = ns("fhost");
    let pods = [ns("fpod"), ns("fpod")];
    let conf = node.conflist(version);
    let caps = port_mappings();

    let r_a = driver
        .add(&conf, &host, &pods[0], "eth0", "ctr-a", Some(&caps))
        .unwrap();
    let r_b = driver
        .add(&conf, &host, &pods[1], "eth0", "ctr-b", None)
        .unwrap();
    let ip_a = first_ip(&r_a);
    let ip_b = first_ip(&r_b);
    for (r, ip) in [(&r_a, &ip_a), (&r_b, &ip_b)] {
        assert_eq!(r["cniVersion"], version, "{r:#}");
        assert!(
            ip.starts_with("10.244.1.") && ip.ends_with("/24"),
            "{ip} not in {SUBNET}"
        );
        assert_eq!(r["ips"][0]["gateway"], GATEWAY, "{r:#}");
    }
    assert_ne!(ip_a, ip_b);
    assert_eq!(node.reserved_ips().len(), 2);

    let expected_save = format!(
        r#"{{"cniVersion":"{version}","hairpinMode":true,"ipMasq":false,"ipam":{{"dataDir":"{}","ranges":[[{{"subnet":"10.244.1.0/24"}}]],"routes":[{{"dst":"10.244.0.0/16"}}],"type":"host-local"}},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}}"#,
        node.ipam_dir().display()
    );
    assert_eq!(
        node.saved_config("ctr-a").as_deref(),
        Some(expected_save.as_str())
    );

    for pod in &pods {
        let routes = routes_of(pod);
        assert!(
            routes.contains(&("default".into(), GATEWAY.into())),
            "{routes:?}"
        );
        assert!(
            routes.contains(&(NETWORK.into(), GATEWAY.into())),
            "{routes:?}"
        );
        assert_eq!(pod.link("eth0").unwrap().unwrap()["mtu"], 1450);
    }
    let veths = host.links_of_kind("veth").unwrap();
    assert_eq!(veths.len(), 2);
    for v in &veths {
        assert_eq!(hairpin_of(&host, v), Value::Bool(true), "hairpin on {v}");
    }

    let addr = |cidr: &str| cidr.split('/').next().unwrap().to_owned();
    assert!(pings(&pods[0], &addr(&ip_b)), "pod a cannot ping pod b");
    assert!(pings(&pods[1], &addr(&ip_a)), "pod b cannot ping pod a");

    let _listeners = listen(&pods[0], "pod-a");
    assert_eq!(
        tcp_get(&host, GATEWAY, 8080),
        "pod-a",
        "host → node IP host port"
    );
    assert_eq!(
        tcp_get(&host, "127.0.0.1", 8080),
        "pod-a",
        "host → localhost host port"
    );
    assert_eq!(
        tcp_get(&pods[1], GATEWAY, 8080),
        "pod-a",
        "other pod → host port"
    );
    assert_eq!(
        tcp_get(&pods[0], GATEWAY, 8080),
        "pod-a",
        "hairpin: pod → its own host port"
    );
    assert_eq!(udp_get(&pods[1], GATEWAY, 5353), "pod-a", "UDP host port");
    assert_eq!(
        host.sysctl("net.ipv4.conf.cni0.route_localnet").unwrap(),
        "1"
    );
    let nat = nat_rules(&host);
    assert_eq!(
        dn_chain_lines(&host)
            .iter()
            .filter(|l| l.starts_with("-A CNI-DN-"))
            .count(),
        6,
        "{nat:#?}"
    );

    let observed = Observed {
        results: vec![normalized(&r_a), normalized(&r_b)],
        pod_routes: pods.iter().map(routes_of).collect(),
        nat,
    };

    driver
        .del(&conf, &host, &pods[0], "eth0", "ctr-a", Some(&caps))
        .unwrap();
    driver
        .del(&conf, &host, &pods[1], "eth0", "ctr-b", None)
        .unwrap();
    assert!(
        host.links_of_kind("veth").unwrap().is_empty(),
        "veths left behind"
    );
    assert!(
        node.reserved_ips().is_empty(),
        "IPs left reserved: {:?}",
        node.reserved_ips()
    );
    assert_eq!(node.saved_config("ctr-a"), None);
    assert_eq!(node.saved_config("ctr-b"), None);
    assert!(dn_chain_lines(&host).is_empty(), "{:#?}", nat_rules(&host));
    // A repeated DEL (runtimes retry) succeeds with nothing left to do.
    driver
        .del(&conf, &host, &pods[0], "eth0", "ctr-a", Some(&caps))
        .unwrap();
    observed
}

#[test]
fn kube_flannel_conflist_verbatim_on_our_plugins() {
    kube_flannel_node(&all(Impl::Ours), "0.3.1");
}

#[test]
fn kube_flannel_conflist_at_1_0_0_on_our_plugins() {
    kube_flannel_node(&all(Impl::Ours), "1.0.0");
}

/// Our flannel with the reference bridge, host-local and portmap versus our whole chain:
/// same results, same pod routes, same NAT rules.
#[test]
fn our_chain_matches_the_reference_chain() {
    let reference = [
        ("flannel", Impl::Ours),
        ("bridge", Impl::Reference),
        ("host-local", Impl::Reference),
        ("portmap", Impl::Reference),
    ];
    let theirs = kube_flannel_node(&reference, "0.3.1");
    let ours = kube_flannel_node(&all(Impl::Ours), "0.3.1");
    assert_eq!(ours, theirs);
}

#[test]
fn our_flannel_and_portmap_with_the_reference_bridge() {
    kube_flannel_node(
        &[
            ("flannel", Impl::Ours),
            ("bridge", Impl::Reference),
            ("host-local", Impl::Reference),
            ("portmap", Impl::Ours),
        ],
        "0.3.1",
    );
}

#[test]
fn our_bridge_under_the_reference_portmap() {
    kube_flannel_node(
        &[
            ("flannel", Impl::Ours),
            ("bridge", Impl::Ours),
            ("host-local", Impl::Ours),
            ("portmap", Impl::Reference),
        ],
        "0.3.1",
    );
}

/// CHECK (needs a ≥ 0.4.0 list) passes on a healthy pod and reports a missing NAT rule.
#[test]
fn check_passes_then_sees_a_missing_portmap_rule() {
    let node = Node::new();
    let driver = driver(&all(Impl::Ours));
    let host = ns("fhost");
    let pod = ns("fpod");
    let conf = node.conflist("1.0.0");
    let caps = port_mappings();
    driver
        .add(&conf, &host, &pod, "eth0", "ctr-c", Some(&caps))
        .unwrap();
    driver
        .check(&conf, &host, &pod, "eth0", "ctr-c", Some(&caps))
        .unwrap();

    let dnat = nat_rules(&host)
        .into_iter()
        .find(|l| l.starts_with("-A CNI-DN-") && l.contains("--dport 8080 -j DNAT"))
        .expect("tcp DNAT rule");
    let delete = dnat.replacen("-A ", "-D ", 1);
    let mut args = vec!["iptables", "-t", "nat"];
    args.extend(delete.split(' '));
    host.exec_ok(&args).unwrap();
    let err = driver
        .check(&conf, &host, &pod, "eth0", "ctr-c", Some(&caps))
        .unwrap_err();
    assert!(
        err.msg.contains("--dport 8080 -j DNAT") && err.msg.contains("not found in table nat"),
        "{err:?}"
    );

    driver
        .del(&conf, &host, &pod, "eth0", "ctr-c", Some(&caps))
        .unwrap();
}

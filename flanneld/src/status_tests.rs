use std::time::Duration;

use serde_json::json;

use super::*;
use crate::state::Phase;
use crate::subnet::LeaseAttrs;

fn lease(subnet: &str, public_ip: [u8; 4], backend: &str) -> Lease {
    Lease {
        enable_ipv4: true,
        enable_ipv6: false,
        subnet: subnet.parse().unwrap(),
        ipv6_subnet: None,
        attrs: LeaseAttrs {
            public_ip: public_ip.into(),
            public_ipv6: None,
            backend_type: backend.into(),
            backend_data: None,
            backend_v6_data: None,
        },
        expiration: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        created: 0,
    }
}

fn route(dst: &str, gw: Option<&str>, oif: u32) -> RouteSpec {
    let mut r = RouteSpec::new(dst.parse().unwrap()).dev(oif);
    r.gw = gw.map(|g| g.parse().unwrap());
    r
}

#[test]
fn route_presence_follows_each_backends_shape() {
    let peer = lease("10.244.3.0/24", [192, 168, 0, 3], "vxlan");
    let vtep = KernelRoutes {
        routes: vec![route("10.244.3.0/24", Some("10.244.3.0"), 5)],
        udp_device: None,
        wireguard_device: None,
    };
    assert!(vtep.has_route("vxlan", &peer));
    assert!(
        !vtep.has_route("host-gw", &peer),
        "host-gw needs the public IP"
    );
    let direct = KernelRoutes {
        routes: vec![route("10.244.3.0/24", Some("192.168.0.3"), 2)],
        udp_device: None,
        wireguard_device: None,
    };
    assert!(direct.has_route("vxlan", &peer), "vxlan DirectRouting");
    assert!(direct.has_route("host-gw", &peer));
    let mut hole = route("10.244.3.0/24", None, 0).blackhole();
    hole.oif = None;
    let blackholed = KernelRoutes {
        routes: vec![hole],
        udp_device: None,
        wireguard_device: None,
    };
    assert!(!blackholed.has_route("host-gw", &peer));
    assert!(!KernelRoutes::default().has_route("vxlan", &peer));

    let udp = KernelRoutes {
        routes: vec![route("10.244.0.0/16", None, 9)],
        udp_device: Some(9),
        wireguard_device: None,
    };
    assert!(udp.has_route("", &peer));
    let gone = KernelRoutes {
        routes: vec![route("10.244.0.0/16", None, 4)],
        udp_device: Some(9),
        wireguard_device: None,
    };
    assert!(!gone.has_route("", &peer), "a route through another device");
}

#[test]
fn duplicates_group_every_lease_by_public_ip() {
    let own = lease("10.244.1.0/24", [10, 0, 2, 15], "vxlan");
    let peers = [
        lease("10.244.9.0/24", [10, 0, 2, 15], "vxlan"),
        lease("10.244.3.0/24", [192, 168, 0, 3], "vxlan"),
        lease("10.244.4.0/24", [10, 0, 2, 15], "vxlan"),
    ]
    .map(std::sync::Arc::new);
    let dups = duplicate_public_ips(Some(&own), &peers);
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].public_ip, Ipv4Addr::new(10, 0, 2, 15));
    let subnets: Vec<String> = dups[0].subnets.iter().map(|s| s.to_string()).collect();
    assert_eq!(subnets, ["10.244.1.0/24", "10.244.4.0/24", "10.244.9.0/24"]);
    let msg = duplicate_message(&dups[0]);
    assert!(
        msg.starts_with(
            "leases 10.244.1.0/24, 10.244.4.0/24, 10.244.9.0/24 all announce public IP 10.0.2.15"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("--iface") && msg.contains("--public-ip"),
        "{msg}"
    );
    assert!(duplicate_public_ips(Some(&own), &peers[1..2]).is_empty());
}

#[test]
fn report_json_for_a_ready_node() {
    let own = lease("10.244.1.0/24", [192, 168, 0, 1], "vxlan");
    let status = Status {
        phase: Phase::Ready,
        lease: Some(own),
        peers: vec![
            lease("10.244.4.0/24", [192, 168, 0, 4], "vxlan").into(),
            lease("10.244.3.0/24", [192, 168, 0, 3], "vxlan").into(),
        ],
        last_error: Some((
            UNIX_EPOCH + Duration::from_secs(1_700_000_100),
            "renewing lease: etcd: timed out".into(),
        )),
        duplicates: Vec::new(),
        datapath: None,
        netpol: None,
    };
    let kernel = KernelRoutes {
        routes: vec![route("10.244.3.0/24", Some("10.244.3.0"), 5)],
        udp_device: None,
        wireguard_device: None,
    };
    let counts = Counts {
        drift_repairs: 2,
        lease_renewals: 5,
        lease_errors: 1,
    };
    let r = report(&status, counts, Ok(&kernel), None);
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "ready": true,
            "lease": {"subnet": "10.244.1.0/24", "public_ip": "192.168.0.1", "backend": "vxlan",
                      "expires": "2023-11-14T22:13:20Z", "expires_unix": 1_700_000_000u64},
            "last_error": {"time": "2023-11-14T22:15:00Z", "message": "renewing lease: etcd: timed out"},
            "peers": [
                {"subnet": "10.244.3.0/24", "public_ip": "192.168.0.3", "backend": "vxlan", "route": true},
                {"subnet": "10.244.4.0/24", "public_ip": "192.168.0.4", "backend": "vxlan", "route": false}
            ],
            "drift_repairs": 2,
            "lease_renewals": 5,
            "lease_errors": 1,
            "duplicate_public_ips": []
        })
    );
    let back: StatusReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r, "flannelctl reads what the daemon writes");
}

#[test]
fn network_policy_section_when_enforcing() {
    use flannel_status::{NetpolReport, PodPolicies};
    let status = Status {
        netpol: Some(NetpolReport {
            synced: true,
            policies: 1,
            pods: 2,
            rules: 9,
            set_elements: 3,
            last_sync: Some("2026-11-24T17:00:00Z".into()),
            resource_version: Some(77),
            failed_policies: vec![],
            local_pods: vec![PodPolicies {
                pod: "x/a".into(),
                ips: vec!["10.244.1.2".parse().unwrap()],
                ingress: vec!["x/deny".into()],
                egress: vec![],
            }],
            last_error: None,
        }),
        ..Status::default()
    };
    let r = report(&status, Counts::default(), Err("x".into()), None);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["network_policy"],
        json!({"synced": true, "policies": 1, "pods": 2, "rules": 9, "set_elements": 3,
               "last_sync": "2026-11-24T17:00:00Z", "resource_version": 77, "failed_policies": [],
               "local_pods": [{"pod": "x/a", "ips": ["10.244.1.2"], "ingress": ["x/deny"], "egress": []}]})
    );
    let back: StatusReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn report_json_while_waiting_and_without_a_kernel_view() {
    let status = Status {
        phase: Phase::WaitingForConfig(Some(
            "flannel config not found in etcd store. Did you create your config using etcdv3 API?"
                .into(),
        )),
        ..Status::default()
    };
    let r = report(
        &status,
        Counts::default(),
        Err("permission denied".into()),
        None,
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["ready"], json!(false));
    assert_eq!(
        v["reason"],
        json!("waiting for network config: flannel config not found in etcd store. Did you create your config using etcdv3 API?")
    );
    assert_eq!(v["lease"], json!(null));
    assert_eq!(v["route_check_error"], json!("permission denied"));

    let dup = Status {
        peers: vec![lease("10.244.3.0/24", [10, 0, 2, 15], "").into()],
        duplicates: vec![DuplicatePublicIp {
            public_ip: Ipv4Addr::new(10, 0, 2, 15),
            subnets: vec![
                "10.244.1.0/24".parse().unwrap(),
                "10.244.3.0/24".parse().unwrap(),
            ],
        }],
        ..Status::default()
    };
    let v = serde_json::to_value(report(&dup, Counts::default(), Err("x".into()), None)).unwrap();
    assert_eq!(
        v["duplicate_public_ips"],
        json!([{"public_ip": "10.0.2.15", "subnets": ["10.244.1.0/24", "10.244.3.0/24"]}])
    );
    assert_eq!(v["peers"][0]["route"], json!(null), "unknown, not absent");
    assert_eq!(v["peers"][0]["backend"], json!("udp"));
}

#[test]
fn wireguard_peers_route_through_the_device_and_are_reported() {
    use crate::metrics::wireguard::{DeviceStats, Implementation, PeerStats};
    let peer = lease("10.244.3.0/24", [192, 168, 0, 3], "wireguard");
    let kernel = KernelRoutes {
        routes: vec![route("10.244.0.0/16", None, 12)],
        udp_device: None,
        wireguard_device: Some(12),
    };
    assert!(kernel.has_route("wireguard", &peer));
    assert!(!KernelRoutes {
        wireguard_device: Some(13),
        ..kernel.clone()
    }
    .has_route("wireguard", &peer));

    let snap = WireguardSnapshot {
        implementation: Implementation::Userspace,
        devices: vec![DeviceStats {
            name: "flannel-wg".into(),
            listen_port: 51820,
            public_key: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".into(),
            peers: vec![PeerStats {
                public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
                allowed_ips: vec!["10.244.3.0/24".parse().unwrap()],
                endpoint: Some("192.168.0.3:51820".parse().unwrap()),
                last_handshake: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_100)),
                handshakes: 2,
                rx_bytes: 100,
                tx_bytes: 200,
            }],
        }],
        datapath: None,
        skipped_leases: 1,
        error: None,
    };
    let status = Status {
        phase: Phase::Ready,
        lease: Some(lease("10.244.1.0/24", [192, 168, 0, 1], "wireguard")),
        peers: vec![peer.into()],
        ..Default::default()
    };
    let r = report(&status, Counts::default(), Ok(&kernel), Some(&snap));
    assert_eq!(r.peers[0].route, Some(true));
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["wireguard"],
        json!({
            "implementation": "userspace",
            "devices": [{
                "name": "flannel-wg",
                "listen_port": 51820,
                "public_key": "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
                "peers": [{
                    "public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
                    "endpoint": "192.168.0.3:51820",
                    "allowed_ips": ["10.244.3.0/24"],
                    "last_handshake": "2023-11-14T22:15:00Z",
                    "last_handshake_unix": 1700000100,
                    "handshakes": 2,
                    "rx_bytes": 100,
                    "tx_bytes": 200
                }]
            }],
            "skipped_leases": 1
        })
    );
    let back: StatusReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

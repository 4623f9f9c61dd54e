use std::time::UNIX_EPOCH;

use serde_json::json;

use super::*;
use crate::subnet::{BackendData, LeaseAttrs};

const K1: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const K2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const OWN: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

fn key(k: &str) -> WgKey {
    WgKey::parse(k).unwrap()
}

fn data(k: &str, port: u16) -> Option<BackendData> {
    Some(BackendData::from(json!({"PublicKey": k, "Port": port})))
}

fn lease(n: u8, k: &str, v6: bool) -> Lease {
    Lease {
        enable_ipv4: true,
        enable_ipv6: v6,
        subnet: format!("10.244.{n}.0/24").parse().unwrap(),
        ipv6_subnet: v6.then(|| format!("fc00:0:0:{n}::/64").parse().unwrap()),
        attrs: LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 168, 1, n),
            public_ipv6: v6.then(|| format!("fd00::{n}").parse().unwrap()),
            backend_type: "wireguard".into(),
            backend_data: data(k, 51820),
            backend_v6_data: v6.then(|| data(k, 51821)).flatten(),
        },
        expiration: Some(UNIX_EPOCH),
        created: 0,
    }
}

fn local(mode: WireguardMode, ipv6: bool) -> Local {
    Local {
        mode,
        ipv4: true,
        ipv6,
        port: 51820,
        port_v6: 51821,
        psk: None,
        keepalive: 25,
        public_key: key(OWN),
        ext_v4: Some(Ipv4Addr::new(192, 168, 1, 100)),
        ext_v6: ipv6.then(|| "fd00::100".parse().unwrap()),
    }
}

#[test]
fn separate_mode_builds_one_peer_per_family_as_upstream() {
    let plan = local(WireguardMode::Separate, true).plan(&[lease(2, K1, true)]);
    assert!(plan.skipped.is_empty());
    assert_eq!(plan.per_device.len(), 2);
    assert_eq!(
        plan.per_device[0],
        vec![PeerConfig {
            public_key: key(K1),
            endpoint: Some("192.168.1.2:51820".parse().unwrap()),
            allowed_ips: vec!["10.244.2.0/24".parse().unwrap()],
            psk: None,
            keepalive: 25,
        }]
    );
    assert_eq!(
        plan.per_device[1][0].endpoint,
        Some("[fd00::2]:51821".parse().unwrap())
    );
    assert_eq!(
        plan.per_device[1][0].allowed_ips,
        vec!["fc00:0:0:2::/64".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        devices(WireguardMode::Separate, true, true, 51820, 51821)
            .iter()
            .map(|d| (d.name, d.port))
            .collect::<Vec<_>>(),
        [("flannel-wg", 51820), ("flannel-wg-v6", 51821)]
    );
}

#[test]
fn single_device_modes_carry_both_subnets_and_pick_the_endpoint() {
    for (mode, want) in [
        (WireguardMode::Ipv4, "192.168.1.2:51820"),
        (WireguardMode::Ipv6, "[fd00::2]:51821"),
        // Both addresses private: auto prefers IPv4 (upstream's selectMode).
        (WireguardMode::Auto, "192.168.1.2:51820"),
    ] {
        let plan = local(mode, true).plan(&[lease(2, K1, true)]);
        assert_eq!(plan.per_device.len(), 1, "{mode:?}");
        let p = &plan.per_device[0][0];
        assert_eq!(p.endpoint, Some(want.parse().unwrap()), "{mode:?}");
        assert_eq!(p.allowed_ips.len(), 2, "{mode:?}");
    }
    // A public IPv6 on both sides and a private IPv4 peer: auto goes IPv6.
    let mut l = lease(2, K1, true);
    l.attrs.public_ipv6 = Some("2001:db8::2".parse().unwrap());
    let mut me = local(WireguardMode::Auto, true);
    me.ext_v6 = Some("2001:db8::100".parse().unwrap());
    let plan = me.plan(&[l]);
    assert_eq!(
        plan.per_device[0][0].endpoint,
        Some("[2001:db8::2]:51821".parse().unwrap())
    );
    assert!(private_v6("fd12::1".parse().unwrap()));
    assert!(!private_v6("2001:db8::1".parse().unwrap()));
    assert!(private_v4(Ipv4Addr::new(172, 31, 0, 1)));
    assert!(!private_v4(Ipv4Addr::new(172, 32, 0, 1)));
}

#[test]
fn a_malformed_key_skips_that_lease_only() {
    let mut bad = lease(3, K2, false);
    bad.attrs.backend_data = Some(BackendData::from(
        json!({"PublicKey": "garbage", "Port": 1}),
    ));
    let mut missing = lease(4, K2, false);
    missing.attrs.backend_data = None;
    let plan = local(WireguardMode::Separate, false).plan(&[lease(2, K1, false), bad, missing]);
    assert_eq!(plan.per_device[0].len(), 1);
    assert_eq!(plan.per_device[0][0].public_key, key(K1));
    assert_eq!(plan.skipped.len(), 2, "{:?}", plan.skipped);
    assert_eq!(plan.skipped[0].key.0, "10.244.3.0/24".parse().unwrap());
    assert_eq!(plan.skipped[0].label, "peer 10.244.3.0/24 (192.168.1.3)");
    assert!(
        plan.skipped[0].why.contains("malformed PublicKey"),
        "{:?}",
        plan.skipped
    );
    assert!(
        plan.skipped[1].why.contains("missing"),
        "{:?}",
        plan.skipped
    );
}

#[test]
fn port_zero_means_our_own_port_and_others_are_ignored() {
    let mut old = lease(2, K1, false);
    old.attrs.backend_data = Some(BackendData::from(json!({"PublicKey": K1})));
    let mut vx = lease(5, K2, false);
    vx.attrs.backend_type = "vxlan".into();
    let me = local(WireguardMode::Separate, false);
    let plan = me.plan(&[old, vx, lease(6, OWN, false)]);
    assert_eq!(
        plan.per_device[0].len(),
        1,
        "vxlan and own-key leases are no peers"
    );
    assert_eq!(
        plan.per_device[0][0].endpoint,
        Some("192.168.1.2:51820".parse().unwrap())
    );
    assert_eq!(plan.skipped.len(), 1, "the own-key lease is reported");
    assert!(
        plan.skipped[0].why.contains("WIREGUARD_KEY_FILE"),
        "{}",
        plan.skipped[0].why
    );
}

#[test]
fn two_leases_of_one_key_make_one_peer_with_both_subnets() {
    let mut moved = lease(7, K1, false);
    moved.attrs.public_ip = Ipv4Addr::new(192, 168, 1, 2);
    let plan = local(WireguardMode::Separate, false).plan(&[lease(2, K1, false), moved]);
    assert_eq!(plan.per_device[0].len(), 1);
    assert_eq!(
        plan.per_device[0][0].allowed_ips,
        vec![
            "10.244.2.0/24".parse::<IpNet>().unwrap(),
            "10.244.7.0/24".parse().unwrap()
        ]
    );
}

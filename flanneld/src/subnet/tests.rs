use std::net::Ipv4Addr;

use serde_json::json;

use super::*;

fn v4(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

#[test]
fn keys_format_and_parse_round_trip() {
    assert_eq!(subnet_key(v4("10.244.1.0/24"), None), "10.244.1.0-24");
    assert_eq!(
        subnet_key(v4("10.244.1.0/24"), Some(v6("fc00::/64"))),
        "10.244.1.0-24&fc00::-64"
    );
    for key in [
        "10.5.52.0-24",
        "10.244.1.0-24&fc00::-64",
        "10.0.0.16-28&2001:cafe:42:1::-64",
    ] {
        let (a, b) = parse_subnet_key(key).unwrap();
        assert_eq!(subnet_key(a, b), key);
    }
    assert_eq!(
        parse_subnet_key("/coreos.com/network/subnets/10.5.52.0-24"),
        Some((v4("10.5.52.0/24"), None))
    );
}

#[test]
fn bad_keys_are_rejected() {
    for key in [
        "",
        "config",
        "10.1.0.0",
        "10.1.0.0-",
        "10.1.0.0-x",
        "10.1.0.0-32",
        "10.1.0.0-24&fc00::",
        "10.1.0.0-24&fc00::-128",
        "10.1.0.0-24&FC00::-64",
        "300.1.0.0-24",
        "10.1.0.0-+24",
    ] {
        assert_eq!(parse_subnet_key(key), None, "{key:?}");
    }
}

fn vxlan_attrs() -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Ipv4Addr::new(192, 168, 64, 3),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: Some(json!({"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}).into()),
        backend_v6_data: None,
    }
}

#[test]
fn attrs_encode_byte_exact() {
    assert_eq!(
        vxlan_attrs().to_json(),
        r#"{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#
    );
    let udp = LeaseAttrs {
        public_ip: Ipv4Addr::new(10, 0, 0, 1),
        public_ipv6: Some("fc00::1".parse().unwrap()),
        backend_type: String::new(),
        backend_data: None,
        backend_v6_data: Some(json!({"PublicKey": "a<b"}).into()),
    };
    assert_eq!(
        udp.to_json(),
        r#"{"PublicIP":"10.0.0.1","PublicIPv6":"fc00::1","BackendV6Data":{"PublicKey":"a\u003cb"}}"#
    );
}

#[test]
fn attrs_decode_like_go() {
    let mixed = br#"{"publicip":"192.168.64.3","PUBLICIPV6":null,"backendType":"vxlan",
        "backenddata":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"Unknown":7}"#;
    assert_eq!(LeaseAttrs::from_json(mixed).unwrap(), vxlan_attrs());
    let round = LeaseAttrs::from_json(vxlan_attrs().to_json().as_bytes()).unwrap();
    assert_eq!(round, vxlan_attrs());
    let empty = LeaseAttrs::from_json(b"{}").unwrap();
    assert_eq!(empty.public_ip, Ipv4Addr::UNSPECIFIED);
    assert!(LeaseAttrs::from_json(br#"{"PublicIP":"nope"}"#).is_err());
    assert!(LeaseAttrs::from_json(br#"{"PublicIP":"10.0.0.1","PublicIPv6":"10.0.0.1"}"#).is_err());
    assert!(LeaseAttrs::from_json(b"[]").is_err());
}

fn lease(subnet: &str, ip: [u8; 4]) -> Lease {
    Lease {
        enable_ipv4: true,
        enable_ipv6: false,
        subnet: v4(subnet),
        ipv6_subnet: None,
        attrs: LeaseAttrs {
            public_ip: ip.into(),
            ..vxlan_attrs()
        },
        expiration: Some(std::time::UNIX_EPOCH),
        created: 0,
    }
}

#[test]
fn peer_set_excludes_own_lease_and_diffs_snapshots() {
    use peers::{Change, PeerSet};
    let mut set = PeerSet::new(Some(lease("10.244.1.0/24", [1, 1, 1, 1])));
    let events = set.reset(vec![
        lease("10.244.1.0/24", [1, 1, 1, 1]),
        lease("10.244.2.0/24", [2, 2, 2, 2]),
    ]);
    assert_eq!(
        events,
        vec![Event::added(lease("10.244.2.0/24", [2, 2, 2, 2]))]
    );

    // A renewal (same attributes) is not an event; a changed record is.
    assert!(set
        .update(vec![Change::Put(lease("10.244.2.0/24", [2, 2, 2, 2]))])
        .is_empty());
    let moved = lease("10.244.2.0/24", [2, 2, 2, 9]);
    assert_eq!(
        set.update(vec![Change::Put(moved.clone())]),
        vec![Event::added(moved.clone())]
    );

    // Deletes hand back the stored lease, with its attributes.
    let del = Change::Delete {
        subnet: v4("10.244.2.0/24"),
        ipv6_subnet: None,
    };
    assert_eq!(
        set.update(vec![del.clone()]),
        vec![Event::removed(moved.clone())]
    );
    assert!(
        set.update(vec![del]).is_empty(),
        "unknown deletes are ignored"
    );
    assert!(set
        .update(vec![Change::Delete {
            subnet: v4("10.244.1.0/24"),
            ipv6_subnet: None
        }])
        .is_empty());

    // A snapshot after a compaction removes what vanished meanwhile and adds what appeared.
    set.update(vec![Change::Put(lease("10.244.3.0/24", [3, 3, 3, 3]))]);
    let events = set.reset(vec![lease("10.244.4.0/24", [4, 4, 4, 4])]);
    assert_eq!(
        events,
        vec![
            Event::removed(lease("10.244.3.0/24", [3, 3, 3, 3])),
            Event::added(lease("10.244.4.0/24", [4, 4, 4, 4]))
        ]
    );
    assert_eq!(set.all(), vec![lease("10.244.4.0/24", [4, 4, 4, 4]).into()]);

    // Taking over a slot that was a peer's removes the peer.
    assert_eq!(
        set.set_own(lease("10.244.4.0/24", [1, 1, 1, 1])),
        vec![Event::removed(lease("10.244.4.0/24", [4, 4, 4, 4]))]
    );
    assert!(set.is_empty());
}

#[test]
fn peer_set_holds_one_shared_copy_of_each_lease() {
    use peers::{Change, PeerSet};
    use std::sync::Arc;
    let mut set = PeerSet::new(None);
    let events = set.reset(vec![lease("10.244.2.0/24", [2, 2, 2, 2])]);
    let [Event::Added(added)] = &events[..] else {
        panic!("{events:?}")
    };
    // The event, the set and (through `all`) the backend and status share one allocation.
    assert!(Arc::ptr_eq(added, &set.all()[0]));

    // Renewals, by watch or by a fresh snapshot, keep that allocation and raise no event.
    let mut renewed = lease("10.244.2.0/24", [2, 2, 2, 2]);
    renewed.expiration = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(60));
    assert!(set.update(vec![Change::Put(renewed.clone())]).is_empty());
    assert!(set.reset(vec![renewed]).is_empty());
    assert!(Arc::ptr_eq(added, &set.all()[0]));

    // A changed record replaces it.
    let moved = lease("10.244.2.0/24", [9, 9, 9, 9]);
    assert_eq!(
        set.update(vec![Change::Put(moved.clone())]),
        vec![Event::added(moved.clone())]
    );
    assert!(!Arc::ptr_eq(added, &set.all()[0]));
    assert_eq!(*set.all()[0], moved);
}

fn dual(subnet: &str, subnet6: &str, ip: [u8; 4], created: u64) -> Lease {
    Lease {
        enable_ipv6: true,
        ipv6_subnet: Some(v6(subnet6)),
        created,
        ..lease(subnet, ip)
    }
}

/// (public IP, IPv4 on, IPv6 on) of each event's lease, Added as `+`, Removed as `-`.
fn shown(events: &[Event]) -> Vec<(char, Ipv4Addr, bool, bool)> {
    events
        .iter()
        .map(|e| match e {
            Event::Added(l) => ('+', l.attrs.public_ip, l.enable_ipv4, l.enable_ipv6),
            Event::Removed(l) => ('-', l.attrs.public_ip, l.enable_ipv4, l.enable_ipv6),
        })
        .collect()
}

const A: [u8; 4] = [192, 168, 1, 1];
const B: [u8; 4] = [192, 168, 1, 2];

#[test]
fn the_older_record_keeps_a_shared_ipv4_subnet_on_every_node() {
    use peers::{Change, PeerSet};
    let own = dual("10.244.1.0/24", "fc00::1:0/112", [9, 9, 9, 9], 1);
    let older = dual("10.244.53.0/24", "fc00::2b:0/112", A, 5);
    let newer = dual("10.244.53.0/24", "fc00::40:0/112", B, 9);
    // Whatever order the watch brings them in, the backend routes 10.244.53.0/24 to A and
    // only the IPv6 subnet to B.
    for order in [[&older, &newer], [&newer, &older]] {
        let mut set = PeerSet::new(Some(own.clone()));
        let mut events = set.reset(vec![order[0].clone()]);
        events.extend(set.update(vec![Change::Put(order[1].clone())]));
        let mut now: Vec<_> = set
            .all()
            .iter()
            .map(|l| (l.attrs.public_ip, l.enable_ipv4, l.enable_ipv6))
            .collect();
        now.sort();
        assert_eq!(now, vec![(A.into(), true, true), (B.into(), false, true)]);
        assert!(
            shown(&events).contains(&('+', B.into(), false, true)),
            "{events:?}"
        );
        let conflicts = set.conflicts();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].subnet.to_string(), "10.244.53.0/24");
        let keys: Vec<_> = conflicts[0]
            .holders
            .iter()
            .map(|h| h.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "10.244.53.0-24&fc00::2b:0-112",
                "10.244.53.0-24&fc00::40:0-112"
            ]
        );
        assert!(!conflicts[0].lost_by_own());

        // The older record goes: the newer one gets its IPv4 subnet back.
        let events = set.update(vec![Change::Delete {
            subnet: older.subnet,
            ipv6_subnet: older.ipv6_subnet,
        }]);
        assert_eq!(
            shown(&events),
            vec![('-', A.into(), true, true), ('+', B.into(), true, true)]
        );
        assert!(set.conflicts().is_empty());
    }
}

#[test]
fn a_shared_ipv6_subnet_stays_with_the_older_record() {
    use peers::PeerSet;
    let mut set = PeerSet::new(None);
    let events = set.reset(vec![
        dual("10.0.1.0/24", "fc00::5:0/112", A, 3),
        dual("10.0.2.0/24", "fc00::5:0/112", B, 2),
    ]);
    let mut got = shown(&events);
    got.sort();
    assert_eq!(
        got,
        vec![('+', A.into(), true, false), ('+', B.into(), true, true)]
    );
    let c = set.conflicts();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].holders[0].public_ip, Ipv4Addr::from(B));
}

#[test]
fn our_own_subnet_is_never_routed_to_a_peer_and_an_older_peer_wins_the_conflict() {
    use peers::{Change, PeerSet};
    let peer = dual("10.244.53.0/24", "fc00::2b:0/112", A, 5);
    let mut set = PeerSet::new(Some(lease("10.244.1.0/24", [9, 9, 9, 9])));
    assert_eq!(
        shown(&set.reset(vec![peer.clone()])),
        vec![('+', A.into(), true, true)]
    );
    // We move onto the peer's IPv4 subnet (a race lost to a node that only compared keys):
    // the peer keeps its IPv6 subnet routed, never our own subnet.
    let mut own = dual("10.244.53.0/24", "fc00::99:0/112", [9, 9, 9, 9], 0);
    assert_eq!(
        shown(&set.set_own(own.clone())),
        vec![('+', A.into(), false, true)]
    );
    // Until the watch shows our record's revision we cannot tell who was first.
    assert!(!set.conflicts()[0].lost_by_own());
    set.set_own_created(7);
    own.created = 7;
    let c = set.conflicts();
    assert!(c[0].lost_by_own(), "{c:?}");
    assert!(c[0].holders[1].own);
    // A peer writing an unrelated change does not disturb the decision.
    assert!(set.update(vec![Change::Put(peer.clone())]).is_empty());
    // Back on a subnet of our own, the peer is routed in full again.
    let events = set.set_own(dual("10.244.60.0/24", "fc00::60:0/112", [9, 9, 9, 9], 11));
    assert_eq!(shown(&events), vec![('+', A.into(), true, true)]);
    assert!(set.conflicts().is_empty());
}

#[test]
fn ipv6_only_leases_share_no_ipv4_subnet() {
    use peers::PeerSet;
    let only6 = |s6: &str, ip, created| Lease {
        subnet: Ipv4Net::default(),
        ..dual("0.0.0.0/0", s6, ip, created)
    };
    let mut set = PeerSet::new(None);
    let events = set.reset(vec![
        only6("fc00::1:0/112", A, 1),
        only6("fc00::2:0/112", B, 2),
    ]);
    assert_eq!(events.len(), 2);
    assert!(set.all().iter().all(|l| l.enable_ipv4 && l.enable_ipv6));
    assert!(set.conflicts().is_empty());
}

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::datapath::{CounterSnapshot, DropReason};
use super::*;
use crate::subnet::store::failures::{count_etcd_error, store_error, store_errors, StoreKind};
use crate::subnet::LeaseAttrs;

fn lease(backend: &str) -> Lease {
    Lease {
        enable_ipv4: true,
        enable_ipv6: false,
        subnet: "10.244.2.0/24".parse().unwrap(),
        ipv6_subnet: None,
        attrs: LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 168, 1, 1),
            public_ipv6: None,
            backend_type: backend.into(),
            backend_data: None,
            backend_v6_data: None,
        },
        expiration: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        created: 0,
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn state_gauges_follow_the_view() {
    let m = Metrics::new();
    let text = m.encode(&ScrapeView {
        lease: Some(lease("vxlan")),
        peers: 3,
        routes_programmed: Some(2),
    });
    let l = lines(&text);
    for want in [
        "# TYPE flannel_lease_info gauge",
        r#"flannel_lease_info{subnet="10.244.2.0/24",public_ip="192.168.1.1",backend="vxlan"} 1"#,
        "flannel_lease_expiry_timestamp_seconds 1700000000.0",
        "flannel_peers 3",
        "flannel_routes_programmed 2",
        "# TYPE flannel_lease_renewals counter",
        "flannel_lease_renewals_total 0",
        "flannel_lease_errors_total 0",
    ] {
        assert!(l.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"), "{text}");

    // The lease moved (re-acquired elsewhere) and the kernel could not be read.
    let mut moved = lease("");
    moved.subnet = "10.244.7.0/24".parse().unwrap();
    let text = m.encode(&ScrapeView {
        lease: Some(moved),
        peers: 0,
        routes_programmed: None,
    });
    assert!(!text.contains(r#"subnet="10.244.2.0/24""#), "{text}");
    assert!(
        text.contains(
            r#"flannel_lease_info{subnet="10.244.7.0/24",public_ip="192.168.1.1",backend="udp"} 1"#
        ),
        "{text}"
    );
    assert!(lines(&text).contains(&"flannel_routes_programmed -1"));
}

#[test]
fn counters_and_histogram_accumulate() {
    let m = Metrics::new();
    m.lease_renewed();
    m.lease_renewed();
    m.lease_failed();
    m.repaired(Repair::Backend, 2);
    m.repaired(Repair::Iptables, 1);
    m.repaired(Repair::SubnetFile, 0);
    m.route_programmed(Instant::now() - Duration::from_millis(3));
    assert_eq!(m.repairs_total(), 3);
    let text = m.encode(&ScrapeView::default());
    let l = lines(&text);
    for want in [
        "flannel_lease_renewals_total 2",
        "flannel_lease_errors_total 1",
        r#"flannel_reconcile_repairs_total{kind="backend"} 2"#,
        r#"flannel_reconcile_repairs_total{kind="iptables"} 1"#,
        r#"flannel_reconcile_repairs_total{kind="subnet_file"} 0"#,
        r#"flannel_reconcile_repairs_total{kind="blackhole_route"} 0"#,
        "# TYPE flannel_route_program_seconds histogram",
        "flannel_route_program_seconds_count 1",
        // 3 ms lands above the 2 ms bucket and within the 4 ms one.
        r#"flannel_route_program_seconds_bucket{le="0.002"} 0"#,
        r#"flannel_route_program_seconds_bucket{le="0.004"} 1"#,
        r#"flannel_route_program_seconds_bucket{le="+Inf"} 1"#,
        "flannel_peers 0",
        "# HELP flannel_peers Other nodes' leases this node follows.",
    ] {
        assert!(l.contains(&want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("flannel_lease_info{"),
        "no lease, no info series"
    );
}

#[test]
fn store_errors_count_failures_not_answers() {
    let before = store_errors(StoreKind::Etcd);
    count_etcd_error(&crate::subnet::store::SubnetError::OutOfSubnets);
    count_etcd_error(&crate::subnet::store::SubnetError::Timeout(
        Duration::from_secs(5),
    ));
    // Other tests may count too; ours added exactly one or the total moved by more.
    assert!(store_errors(StoreKind::Etcd) > before);
    store_error(StoreKind::Kube);
    let text = Metrics::new().encode(&ScrapeView::default());
    let kube = lines(&text)
        .into_iter()
        .find(|l| l.starts_with(r#"flannel_store_errors_total{store="kube"} "#))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!kube.ends_with(" 0"), "{kube}");
}

#[test]
fn udp_datapath_counters_are_exposed_once_registered() {
    let m = Metrics::new();
    assert!(!m.encode(&ScrapeView::default()).contains("flannel_udp"));
    let mut snap = CounterSnapshot {
        packets_in: 5,
        bytes_in: 700,
        packets_out: 9,
        bytes_out: 1300,
        icmp_unreachable: 1,
        ..Default::default()
    };
    snap.drops[DropReason::ALL
        .iter()
        .position(|r| *r == DropReason::NoRoute)
        .unwrap()] = 4;
    m.add_datapath(DatapathSource::Udp(Arc::new(move || snap)));
    let text = m.encode(&ScrapeView::default());
    let l = lines(&text);
    for want in [
        "# TYPE flannel_udp_packets counter",
        r#"flannel_udp_packets_total{direction="in"} 5"#,
        r#"flannel_udp_packets_total{direction="out"} 9"#,
        r#"flannel_udp_bytes_total{direction="out"} 1300"#,
        r#"flannel_udp_dropped_packets_total{reason="no_route"} 4"#,
        r#"flannel_udp_dropped_packets_total{reason="ttl_expired"} 0"#,
        "flannel_udp_icmp_unreachable_sent_total 1",
    ] {
        assert!(l.contains(&want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn drop_reasons_index_their_counters_and_each_backend_has_its_slice() {
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "{r}: ALL is in declaration order");
    }
    assert!(DropReason::UDP.contains(&DropReason::TtlExpired));
    assert!(!DropReason::UDP.contains(&DropReason::Replayed));
    assert!(DropReason::WIREGUARD.contains(&DropReason::Replayed));
    assert!(DropReason::WIREGUARD.contains(&DropReason::NoRoute));
    assert!(!DropReason::WIREGUARD.contains(&DropReason::TtlExpired));
    assert_eq!(
        DropReason::UDP.len() + DropReason::WIREGUARD.len(),
        17 + 7,
        "7 shared"
    );
}

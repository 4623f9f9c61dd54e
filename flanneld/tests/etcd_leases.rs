//! The etcd subnet manager against a real etcd (3.4) on loopback: lease records as upstream
//! writes them, acquisition preferences, creation races, and the watch across restarts and
//! compaction.

use std::net::Ipv4Addr;
use std::time::Duration;

use conformance::{Etcd, EtcdOptions};
use flanneld::subnet::acquire::{acquire_lease, AcquireRequest};
use flanneld::subnet::etcd::v3::{watch_subnets, watch_subnets_from, Registry};
use flanneld::subnet::peers::Change;
use flanneld::subnet::store::{EtcdConfig, LeaseStore, SubnetError, WatchMsg};
use flanneld::subnet::{Lease, LeaseAttrs};
use ipnet::Ipv4Net;
use netconf::flannel::NetworkConfig;
use serde_json::json;
use tokio::sync::{mpsc, watch};

const PREFIX: &str = "/coreos.com/network";

fn etcd() -> Etcd {
    Etcd::start(EtcdOptions::loopback()).expect("etcd starts")
}

async fn registry(etcd: &Etcd, ttl: Duration) -> Registry {
    let cfg = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: PREFIX.into(),
        ..EtcdConfig::default()
    };
    Registry::connect(&cfg, ttl).await.expect("client")
}

fn config(json: &str) -> NetworkConfig {
    let mut c = NetworkConfig::parse(json.as_bytes()).unwrap();
    c.check().unwrap();
    c
}

fn attrs(last: u8) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Ipv4Addr::new(192, 168, 1, last),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: Some(
            json!({"VNI": 1, "VtepMAC": format!("02:00:00:00:00:{last:02x}")}).into(),
        ),
        backend_v6_data: None,
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

async fn acquire(
    reg: &Registry,
    cfg: &NetworkConfig,
    attrs: &LeaseAttrs,
    previous: Option<Ipv4Net>,
) -> Result<Lease, SubnetError> {
    acquire_lease(
        reg,
        &AcquireRequest {
            config: cfg,
            attrs,
            previous: previous.map(|p| (p, None)),
        },
    )
    .await
}

fn lease_id_of(etcd: &Etcd, key: &str) -> i64 {
    let out = etcd.etcdctl(&["get", "-w", "json", "--", key]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["kvs"][0]["lease"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "current_thread")]
async fn lease_records_are_upstreams_and_reused_by_public_ip() {
    let etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let cfg = config(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}"#);

    let lease = acquire(&reg, &cfg, &attrs(3), None).await.unwrap();
    assert!(cfg.subnet_min.unwrap() <= lease.subnet.addr() && lease.subnet.prefix_len() == 24);
    let key = format!("{PREFIX}/subnets/{}-24", lease.subnet.addr());
    assert_eq!(
        etcd.get(&key).unwrap().unwrap(),
        r#"{"PublicIP":"192.168.1.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:03"}}"#
    );
    let first_lease_id = lease_id_of(&etcd, &key);
    assert_ne!(first_lease_id, 0, "records live on an etcd lease");
    let ttl = etcd
        .etcdctl(&["lease", "timetolive", &format!("{first_lease_id:x}")])
        .unwrap();
    assert!(ttl.contains("granted with TTL(3600s)"), "{ttl}");

    // Same PublicIP again (a restart): same subnet, attributes updated, fresh etcd lease.
    let mut changed = attrs(3);
    changed.backend_data = Some(json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:aa"}).into());
    let again = acquire(&reg, &cfg, &changed, None).await.unwrap();
    assert_eq!(again.subnet, lease.subnet);
    assert!(etcd
        .get(&key)
        .unwrap()
        .unwrap()
        .contains("02:00:00:00:00:aa"));
    assert_ne!(lease_id_of(&etcd, &key), first_lease_id);

    // Renewal keeps the key on a new lease; a renewal of a record that changed is refused.
    let before = lease_id_of(&etcd, &key);
    reg.renew_subnet(again.subnet, None, &changed)
        .await
        .unwrap();
    assert_ne!(lease_id_of(&etcd, &key), before);
    assert!(matches!(
        reg.renew_subnet(again.subnet, None, &attrs(3)).await,
        Err(SubnetError::LeaseLost)
    ));

    // A record of ours that no longer fits the config is deleted and replaced.
    let moved = config(r#"{"Network":"10.6.0.0/16"}"#);
    let fresh = acquire(&reg, &moved, &changed, None).await.unwrap();
    assert!(net("10.6.0.0/16").contains(&fresh.subnet));
    assert_eq!(etcd.get(&key).unwrap(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn previous_subnet_is_reused_only_when_free_and_compatible() {
    let etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let cfg = config(r#"{"Network":"10.7.0.0/16"}"#);

    let l = acquire(&reg, &cfg, &attrs(1), Some(net("10.7.42.0/24")))
        .await
        .unwrap();
    assert_eq!(l.subnet, net("10.7.42.0/24"));

    // Held by node 1: node 2 with the same previous subnet gets another one.
    let l2 = acquire(&reg, &cfg, &attrs(2), Some(net("10.7.42.0/24")))
        .await
        .unwrap();
    assert_ne!(l2.subnet, net("10.7.42.0/24"));

    // Off the grid or outside the network: ignored.
    let l3 = acquire(&reg, &cfg, &attrs(3), Some(net("10.8.1.0/24")))
        .await
        .unwrap();
    assert!(net("10.7.0.0/16").contains(&l3.subnet));
    let l4 = acquire(&reg, &cfg, &attrs(4), Some(net("10.7.0.0/24")))
        .await
        .unwrap();
    assert_ne!(
        l4.subnet,
        net("10.7.0.0/24"),
        "the network's first subnet is never handed out"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn exhausted_pool_is_out_of_subnets() {
    let etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let cfg = config(r#"{"Network":"10.9.0.0/26"}"#); // three /28 subnets
    for n in 1..=3 {
        acquire(&reg, &cfg, &attrs(n), None).await.unwrap();
    }
    let err = acquire(&reg, &cfg, &attrs(4), None).await.unwrap_err();
    assert_eq!(err.to_string(), "out of subnets");
}

/// Four nodes racing for a pool of four subnets (of each family), `rounds` times, from an
/// empty keyspace each time: every node gets a lease and no two share a subnet of either
/// family.
async fn race(cfg: &str, rounds: usize) {
    let etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let cfg = config(cfg);
    for round in 0..rounds {
        for dir in ["subnets/", "claims/"] {
            etcd.etcdctl(&["del", "--prefix", &format!("{PREFIX}/{dir}")])
                .unwrap();
        }
        let tasks: Vec<_> = (1..=4u8)
            .map(|n| {
                let (reg, cfg) = (reg.clone(), cfg.clone());
                tokio::spawn(async move { acquire(&reg, &cfg, &attrs(n), None).await })
            })
            .collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for t in tasks {
            let lease = t
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            v4.push(lease.subnet);
            v6.extend(lease.ipv6_subnet);
        }
        let leases = reg.list_subnets().await.unwrap().0;
        assert_eq!(leases.len(), 4, "round {round}: {leases:?}");
        v4.sort();
        v4.dedup();
        v6.sort();
        v6.dedup();
        assert_eq!(
            v4.len(),
            4,
            "round {round}: two nodes got the same subnet: {leases:?}"
        );
        assert!(matches!(v6.len(), 0 | 4), "round {round}: {leases:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_nodes_never_share_a_subnet() {
    // Four subnets for four nodes: every round forces collisions on the random pick.
    race(
        r#"{"Network":"10.10.0.0/27","SubnetLen":29,"SubnetMin":"10.10.0.0"}"#,
        50,
    )
    .await;
}

/// Dual-stack nodes: upstream's create checks only the whole key, so two nodes could win one
/// IPv4 subnet with different IPv6 ones (the field report: `10.244.53.0-24&fc00:10:0:2b::-64`
/// and `10.244.53.0-24&fc00:10:0:40::-64`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_dual_stack_nodes_never_share_a_subnet_of_either_family() {
    let cfg = r#"{"Network":"10.10.0.0/27","SubnetLen":29,"SubnetMin":"10.10.0.0",
        "EnableIPv6":true,"IPv6Network":"fc00::/123","IPv6SubnetLen":125,"IPv6SubnetMin":"fc00::"}"#;
    race(cfg, 50).await;
}

async fn next(rx: &mut mpsc::Receiver<WatchMsg>) -> WatchMsg {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("watch message in time")
        .expect("watch alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_changes_and_expiry_and_resumes_after_a_restart() {
    let mut etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let short = registry(&etcd, Duration::from_secs(2)).await;
    let cfg = config(r#"{"Network":"10.11.0.0/16"}"#);
    let first = acquire(&reg, &cfg, &attrs(1), None).await.unwrap();

    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(watch_subnets(reg.clone(), tx, stop_rx));
    match next(&mut rx).await {
        WatchMsg::Snapshot(leases) => assert_eq!(
            leases,
            vec![Lease {
                expiration: leases[0].expiration,
                created: leases[0].created,
                ..first.clone()
            }]
        ),
        other => panic!("{other:?}"),
    }

    // A record on a 2 s lease: added, then removed by expiry.
    let brief = acquire(&short, &cfg, &attrs(2), None).await.unwrap();
    match next(&mut rx).await {
        WatchMsg::Changes(c) => assert!(
            matches!(&c[..], [Change::Put(l)] if l.subnet == brief.subnet && l.attrs == attrs(2))
        ),
        other => panic!("{other:?}"),
    }
    match next(&mut rx).await {
        WatchMsg::Changes(c) => assert_eq!(
            c,
            vec![Change::Delete {
                subnet: brief.subnet,
                ipv6_subnet: None
            }]
        ),
        other => panic!("{other:?}"),
    }

    // etcd dies and comes back; a change made right after is still delivered, once.
    etcd.kill().unwrap();
    etcd.restart().unwrap();
    let third = acquire(&reg, &cfg, &attrs(3), None).await.unwrap();
    match next(&mut rx).await {
        WatchMsg::Changes(c) => {
            assert!(matches!(&c[..], [Change::Put(l)] if l.subnet == third.subnet))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "nothing is delivered twice after the reconnect"
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("watch stops")
        .unwrap();
}

fn revision(etcd: &Etcd) -> i64 {
    let status = etcd.etcdctl(&["endpoint", "status", "-w", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    v[0]["Status"]["header"]["revision"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_a_compacted_revision_takes_a_new_snapshot() {
    let etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let cfg = config(r#"{"Network":"10.12.0.0/16"}"#);
    let gone = acquire(&reg, &cfg, &attrs(1), None).await.unwrap();
    let seen = revision(&etcd);
    // Changes the watcher never saw, then history compacted past them.
    reg.delete_subnet(gone.subnet, None).await.unwrap();
    let kept = acquire(&reg, &cfg, &attrs(2), None).await.unwrap();
    etcd.etcdctl(&["compact", &revision(&etcd).to_string()])
        .unwrap();

    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(watch_subnets_from(reg.clone(), Some(seen + 1), tx, stop_rx));
    match next(&mut rx).await {
        WatchMsg::Snapshot(leases) => {
            assert_eq!(
                leases.iter().map(|l| l.subnet).collect::<Vec<_>>(),
                vec![kept.subnet]
            );
        }
        other => panic!("expected a snapshot after compaction, got {other:?}"),
    }
    // And the watch goes on from the snapshot.
    let later = acquire(&reg, &cfg, &attrs(3), None).await.unwrap();
    match next(&mut rx).await {
        WatchMsg::Changes(c) => {
            assert!(matches!(&c[..], [Change::Put(l)] if l.subnet == later.subnet))
        }
        other => panic!("{other:?}"),
    }
    // Resuming from a revision that is still available replays exactly what followed it.
    let (tx2, mut rx2) = mpsc::channel(16);
    let (stop2_tx, stop2_rx) = watch::channel(false);
    let rev_before = revision(&etcd);
    reg.delete_subnet(later.subnet, None).await.unwrap();
    let task2 = tokio::spawn(watch_subnets_from(
        reg.clone(),
        Some(rev_before + 1),
        tx2,
        stop2_rx,
    ));
    match next(&mut rx2).await {
        WatchMsg::Changes(c) => assert_eq!(
            c,
            vec![Change::Delete {
                subnet: later.subnet,
                ipv6_subnet: None
            }]
        ),
        other => panic!("{other:?}"),
    }
    stop_tx.send(true).unwrap();
    stop2_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("watch stops")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), task2)
        .await
        .expect("watch stops")
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn config_lookup_reports_upstreams_message() {
    let etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let err = reg.get_network_config().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "flannel config not found in etcd store. Did you create your config using etcdv3 API?"
    );
    etcd.put(&format!("{PREFIX}/config"), r#"{"Network":"10.1.0.0/16"}"#)
        .unwrap();
    assert_eq!(
        reg.get_network_config().await.unwrap(),
        r#"{"Network":"10.1.0.0/16"}"#
    );
}

#[tokio::test(flavor = "current_thread")]
async fn listing_reads_many_records_and_skips_unreadable_ones() {
    let etcd = etcd();
    let reg = registry(&etcd, Duration::from_secs(3600)).await;
    let dir = format!("{PREFIX}/subnets");
    // Records written by other tools: no lease (a reservation), odd key case, bad JSON.
    etcd.put(
        &format!("{dir}/10.13.200.0-24"),
        r#"{"publicip":"192.168.9.9","backendtype":"host-gw"}"#,
    )
    .unwrap();
    etcd.put(&format!("{dir}/not-a-subnet"), "{}").unwrap();
    etcd.put(&format!("{dir}/10.13.201.0-24"), "not json")
        .unwrap();
    let cfg = config(r#"{"Network":"10.13.0.0/16"}"#);
    for n in 1..=150u8 {
        let mut a = attrs(n);
        a.public_ip = Ipv4Addr::new(172, 16, 0, n);
        reg.create_subnet(format!("10.13.{n}.0/24").parse().unwrap(), None, &a, None)
            .await
            .unwrap();
    }
    let (leases, rev) = reg.list_subnets().await.unwrap();
    assert!(rev > 150);
    assert_eq!(leases.len(), 151);
    let reservation = leases
        .iter()
        .find(|l| l.subnet == net("10.13.200.0/24"))
        .unwrap();
    assert_eq!(reservation.attrs.public_ip, Ipv4Addr::new(192, 168, 9, 9));
    assert_eq!(reservation.attrs.backend_type, "host-gw");
    let sample = leases
        .iter()
        .find(|l| l.subnet == net("10.13.77.0/24"))
        .unwrap();
    assert_eq!(sample.attrs.public_ip, Ipv4Addr::new(172, 16, 0, 77));
    // The unreadable records do not stop acquisition either.
    let l = acquire(&reg, &cfg, &attrs(200), None).await.unwrap();
    assert!(!leases.iter().any(|x| x.subnet == l.subnet));
}

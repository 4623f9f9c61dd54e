//! The etcd v2 keyspace against a real etcd 3.4 started with `--enable-v2`, config written
//! the way flannel <= v0.17 users did (`ETCDCTL_API=2 etcdctl set`): API selection, lease
//! records in the old format, create-only races, renewal, and the watch through changes,
//! expiries and a cleared event index.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use conformance::{Etcd, EtcdOptions, TestCa};
use std::sync::Arc;

use flanneld::subnet::acquire::{acquire_lease, AcquireRequest};
use flanneld::subnet::etcd::v2::{watch_subnets, V2Registry};
use flanneld::subnet::etcd::{EtcdApi, StoreError, StoreSelector};
use flanneld::subnet::peers::Change;
use flanneld::subnet::store::{EtcdConfig, LeaseStore, SubnetError, SubnetStore, WatchMsg};
use flanneld::subnet::{Lease, LeaseAttrs};
use netconf::flannel::NetworkConfig;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

const PREFIX: &str = "/coreos.com/network";
const CONFIG: &str = r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}"#;

fn etcd_v2() -> Etcd {
    Etcd::start(EtcdOptions::loopback().enable_v2(true)).expect("etcd starts")
}

/// `ETCDCTL_API=2 etcdctl` against `etcd`; returns stdout.
fn etcdctl2(etcd: &Etcd, args: &[&str]) -> String {
    etcd.etcdctl_v2(args)
        .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
}

/// The v2 node of `key` as etcd reports it (value, ttl, indexes).
fn node(etcd: &Etcd, key: &str) -> Value {
    let out = etcdctl2(etcd, &["-o", "json", "get", key]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.get("node").cloned().unwrap_or(v)
}

fn cfg_for(etcd: &Etcd) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: PREFIX.into(),
        ..EtcdConfig::default()
    }
}

fn v2(etcd: &Etcd, ttl: Duration) -> V2Registry {
    V2Registry::connect(&cfg_for(etcd), ttl).expect("client")
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

async fn acquire(
    store: &(impl LeaseStore + ?Sized),
    cfg: &NetworkConfig,
    attrs: &LeaseAttrs,
) -> Lease {
    let req = AcquireRequest {
        config: cfg,
        attrs,
        previous: None,
    };
    acquire_lease(store, &req).await.expect("lease")
}

fn lease_key(lease: &Lease) -> String {
    format!("{PREFIX}/subnets/{}", lease.key())
}

/// The keyspace that holds the config, its store and the raw config.
async fn select(
    etcd: &Etcd,
    api: EtcdApi,
) -> Result<(EtcdApi, Arc<dyn SubnetStore>, String), StoreError> {
    let found = StoreSelector::connect(&cfg_for(etcd), api, Duration::from_secs(60))
        .await
        .expect("clients")
        .network_config()
        .await?;
    Ok((found.api, found.store, found.config))
}

#[tokio::test(flavor = "current_thread")]
async fn auto_mode_picks_the_keyspace_that_holds_the_config() {
    let etcd = etcd_v2();
    let key = format!("{PREFIX}/config");

    let err = select(&etcd, EtcdApi::Auto)
        .await
        .err()
        .expect("no config yet");
    assert_eq!(
        err.to_string(),
        format!(
            "flannel config not found in etcd store. Did you create your config using etcdv3 API? \
             Looked for {key} through the etcd v3 API (not found) and for {key} through the etcd v2 API (not found). Create it with: \
             ETCDCTL_API=3 etcdctl put {key} '{{\"Network\":\"10.244.0.0/16\",\"Backend\":{{\"Type\":\"vxlan\"}}}}'"
        )
    );

    etcdctl2(&etcd, &["set", &key, CONFIG]);
    let (api, _, raw) = select(&etcd, EtcdApi::Auto).await.unwrap();
    assert_eq!((api, raw.as_str()), (EtcdApi::V2, CONFIG));
    let err = select(&etcd, EtcdApi::V3).await.err().expect("v3 has none");
    assert!(
        err.to_string()
            .contains("through the etcd v3 API (not found). Create it with: ETCDCTL_API=3"),
        "{err}"
    );

    // Once the v3 keyspace has a config (a migrated cluster), auto prefers it.
    etcd.put(&key, r#"{"Network":"10.6.0.0/16"}"#).unwrap();
    let (api, _, raw) = select(&etcd, EtcdApi::Auto).await.unwrap();
    assert_eq!(
        (api, raw.as_str()),
        (EtcdApi::V3, r#"{"Network":"10.6.0.0/16"}"#)
    );
    let (api, _, raw) = select(&etcd, EtcdApi::V2).await.unwrap();
    assert_eq!((api, raw.as_str()), (EtcdApi::V2, CONFIG));
}

#[tokio::test(flavor = "current_thread")]
async fn auto_mode_says_when_the_server_has_no_v2_api() {
    let etcd = Etcd::start(EtcdOptions::loopback()).expect("etcd starts");
    let err = select(&etcd, EtcdApi::Auto).await.err().expect("no config");
    let text = err.to_string();
    assert!(
        text.contains("through the etcd v2 API (etcd at http://127.0.0.1:")
            && text.contains("does not serve the v2 API (HTTP 404 Not Found"),
        "{text}"
    );
    let forced = select(&etcd, EtcdApi::V2).await.err().expect("no v2");
    assert!(matches!(forced, StoreError::V2(_)), "{forced}");
}

#[tokio::test(flavor = "current_thread")]
async fn leases_are_ttl_keys_in_the_old_format_reused_by_public_ip() {
    let etcd = etcd_v2();
    etcdctl2(&etcd, &["set", &format!("{PREFIX}/config"), CONFIG]);
    let (api, store, raw) = select(&etcd, EtcdApi::Auto).await.unwrap();
    let cfg = config(&raw);
    // A node of flannel v0.17 already holds a subnet, its value as Go wrote it (mixed-case
    // keys from a hand edit included).
    let old_key = format!("{PREFIX}/subnets/10.5.77.0-24");
    etcdctl2(
        &etcd,
        &[
            "set",
            "--ttl",
            "600",
            &old_key,
            r#"{"publicIP":"192.168.1.77","backendtype":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:4d","VNI":1}}"#,
        ],
    );

    let lease = acquire(&*store, &cfg, &attrs(3)).await;
    assert_ne!(lease.subnet, "10.5.77.0/24".parse().unwrap());
    let key = lease_key(&lease);
    let n = node(&etcd, &key);
    assert_eq!(
        n["value"],
        r#"{"PublicIP":"192.168.1.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:03"}}"#
    );
    let ttl = n["ttl"].as_i64().expect("a TTL key");
    assert!((55..=60).contains(&ttl), "{n}");

    assert_eq!(api, EtcdApi::V2, "the v2 store was selected");
    let (listed, _) = v2(&etcd, Duration::from_secs(60))
        .list_subnets()
        .await
        .unwrap();
    let old = listed
        .iter()
        .find(|l| l.attrs.public_ip == Ipv4Addr::new(192, 168, 1, 77))
        .expect("the old node's lease is read");
    assert_eq!(old.attrs.backend_type, "vxlan");
    assert_eq!(listed.len(), 2);

    // A restart with the same PublicIP gets the same subnet back, attributes rewritten.
    let mut changed = attrs(3);
    changed.backend_data = Some(json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:aa"}).into());
    let again = acquire(&*store, &cfg, &changed).await;
    assert_eq!(again.subnet, lease.subnet);
    assert!(node(&etcd, &key)["value"]
        .as_str()
        .unwrap()
        .contains("02:00:00:00:00:aa"));
}

#[tokio::test(flavor = "current_thread")]
async fn create_is_create_only_and_renewal_refreshes_only_our_value() {
    let etcd = etcd_v2();
    let reg = v2(&etcd, Duration::from_secs(60));
    let subnet = "10.5.1.0/24".parse().unwrap();
    let key = format!("{PREFIX}/subnets/10.5.1.0-24");

    reg.create_subnet(subnet, None, &attrs(1), None)
        .await
        .unwrap();
    assert!(matches!(
        reg.create_subnet(subnet, None, &attrs(2), None).await,
        Err(SubnetError::AlreadyExists)
    ));
    assert!(node(&etcd, &key)["value"]
        .as_str()
        .unwrap()
        .contains("192.168.1.1"));

    // Let the TTL run down a little, then renew: same value, full TTL again.
    etcdctl2(&etcd, &["update", "--ttl", "20", &key, &attrs(1).to_json()]);
    let before = node(&etcd, &key);
    assert!(before["ttl"].as_i64().unwrap() <= 20);
    reg.renew_subnet(subnet, None, &attrs(1)).await.unwrap();
    let after = node(&etcd, &key);
    assert_eq!(after["value"], before["value"]);
    assert!(after["ttl"].as_i64().unwrap() > 50, "{after}");

    // Someone else owns the key now: renewal must not take it back.
    etcdctl2(&etcd, &["set", &key, &attrs(9).to_json()]);
    assert!(matches!(
        reg.renew_subnet(subnet, None, &attrs(1)).await,
        Err(SubnetError::LeaseLost)
    ));
    assert!(node(&etcd, &key)["value"]
        .as_str()
        .unwrap()
        .contains("192.168.1.9"));
    reg.delete_subnet(subnet, None).await.unwrap();
    reg.delete_subnet(subnet, None).await.unwrap();
    assert!(matches!(
        reg.renew_subnet(subnet, None, &attrs(1)).await,
        Err(SubnetError::LeaseLost)
    ));
}

/// Four nodes racing for a pool of four subnets (of each family), `rounds` times, from an
/// empty keyspace each time: every node gets a lease and no two share a subnet of either
/// family.
async fn race(etcd: &Etcd, cfg: &str, rounds: usize) {
    let reg = v2(etcd, Duration::from_secs(600));
    let cfg = config(cfg);
    for round in 0..rounds {
        for dir in ["subnets", "claims"] {
            // Absent in the first round.
            let _ = etcd.etcdctl_v2(&["rm", "--recursive", &format!("{PREFIX}/{dir}")]);
        }
        let tasks: Vec<_> = (1..=4u8)
            .map(|n| {
                let (reg, cfg) = (reg.clone(), cfg.clone());
                tokio::spawn(async move { acquire(&reg, &cfg, &attrs(n)).await })
            })
            .collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for t in tasks {
            let lease = t.await.unwrap();
            v4.push(lease.subnet);
            v6.extend(lease.ipv6_subnet);
        }
        let leases = reg.list_subnets().await.unwrap().0;
        assert_eq!(leases.len(), 4, "round {round}: {leases:?}");
        v4.sort();
        v4.dedup();
        v6.sort();
        v6.dedup();
        assert_eq!(v4.len(), 4, "round {round}: {leases:?}");
        assert!(matches!(v6.len(), 0 | 4), "round {round}: {leases:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_nodes_never_share_a_subnet() {
    let cfg = r#"{"Network":"10.10.0.0/27","SubnetLen":29,"SubnetMin":"10.10.0.0"}"#;
    race(&etcd_v2(), cfg, 20).await;
}

/// Dual-stack nodes: without claims two could win one IPv4 subnet with different IPv6 ones
/// (upstream checks only the whole key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_dual_stack_nodes_never_share_a_subnet_of_either_family() {
    let cfg = r#"{"Network":"10.10.0.0/27","SubnetLen":29,"SubnetMin":"10.10.0.0",
        "EnableIPv6":true,"IPv6Network":"fc00::/123","IPv6SubnetLen":125,"IPv6SubnetMin":"fc00::"}"#;
    race(&etcd_v2(), cfg, 20).await;
}

async fn next(rx: &mut mpsc::Receiver<WatchMsg>) -> WatchMsg {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("watch message in time")
        .expect("watch alive")
}

fn subnets_of(leases: &[Lease]) -> Vec<String> {
    let mut s: Vec<String> = leases.iter().map(|l| l.subnet.to_string()).collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_additions_removals_and_expiry() {
    let etcd = etcd_v2();
    let reg = v2(&etcd, Duration::from_secs(600));
    let a = "10.5.1.0/24".parse().unwrap();
    reg.create_subnet(a, None, &attrs(1), None).await.unwrap();

    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(watch_subnets(reg.clone(), tx, stop_rx));
    match next(&mut rx).await {
        WatchMsg::Snapshot(leases) => assert_eq!(subnets_of(&leases), ["10.5.1.0/24"]),
        other => panic!("{other:?}"),
    }

    // An old-style node joins with a 2 s TTL and never renews.
    let b_key = format!("{PREFIX}/subnets/10.5.2.0-24");
    etcdctl2(
        &etcd,
        &[
            "set",
            "--ttl",
            "2",
            &b_key,
            r#"{"PublicIP":"192.168.1.2","BackendType":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:02","VNI":1}}"#,
        ],
    );
    match next(&mut rx).await {
        WatchMsg::Changes(c) => assert!(
            matches!(&c[..], [Change::Put(l)] if l.subnet.to_string() == "10.5.2.0/24" && l.attrs.public_ip == Ipv4Addr::new(192, 168, 1, 2)),
            "{c:?}"
        ),
        other => panic!("{other:?}"),
    }
    reg.delete_subnet(a, None).await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        WatchMsg::Changes(vec![Change::Delete {
            subnet: a,
            ipv6_subnet: None
        }])
    );
    // The expiry of the unrenewed key arrives as a removal.
    assert_eq!(
        next(&mut rx).await,
        WatchMsg::Changes(vec![Change::Delete {
            subnet: "10.5.2.0/24".parse().unwrap(),
            ipv6_subnet: None
        }])
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("watch stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_falls_out_of_the_event_history_lists_again() {
    let etcd = etcd_v2();
    let reg = v2(&etcd, Duration::from_secs(600));
    let a = "10.5.1.0/24".parse().unwrap();
    let b = "10.5.2.0/24".parse().unwrap();
    // Room for one message: while it is unread the watcher is stuck in `send` and cannot
    // follow the store.
    let (tx, mut rx) = mpsc::channel(1);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let _task = tokio::spawn(watch_subnets(reg.clone(), tx, stop_rx));
    assert_eq!(next(&mut rx).await, WatchMsg::Snapshot(vec![]));
    reg.create_subnet(a, None, &attrs(1), None).await.unwrap();
    reg.create_subnet(b, None, &attrs(2), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // etcd keeps 1000 events; 1100 more push the watcher's next index out of the history.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..10 {
        let reg = reg.clone();
        writers.spawn(async move {
            for _ in 0..110 {
                reg.update_subnet(b, None, &attrs(20 + w), false)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    reg.delete_subnet(a, None).await.unwrap();

    // Queued before the writes: a's creation, then b's creation (blocked in send).
    assert!(
        matches!(next(&mut rx).await, WatchMsg::Changes(c) if matches!(&c[..], [Change::Put(l)] if l.subnet == a))
    );
    assert!(
        matches!(next(&mut rx).await, WatchMsg::Changes(c) if matches!(&c[..], [Change::Put(l)] if l.subnet == b))
    );
    // Then the index is gone from etcd's history: a fresh listing, in which a is missing.
    match next(&mut rx).await {
        WatchMsg::Snapshot(leases) => {
            assert_eq!(subnets_of(&leases), ["10.5.2.0/24"]);
            assert!(leases[0].attrs.public_ip.octets()[3] >= 20);
        }
        other => panic!("expected a re-list, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_lost_etcd_lists_again_once_it_is_back() {
    let mut etcd = etcd_v2();
    let reg = v2(&etcd, Duration::from_secs(600));
    let a = "10.5.1.0/24".parse().unwrap();
    reg.create_subnet(a, None, &attrs(1), None).await.unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let _task = tokio::spawn(watch_subnets(reg.clone(), tx, stop_rx));
    assert!(matches!(next(&mut rx).await, WatchMsg::Snapshot(l) if l.len() == 1));

    etcd.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    etcd.restart().unwrap();
    // Whatever happened while the connection was down is covered by a fresh listing.
    match next(&mut rx).await {
        WatchMsg::Snapshot(leases) => assert_eq!(subnets_of(&leases), ["10.5.1.0/24"]),
        other => panic!("expected a re-list, got {other:?}"),
    }
    reg.delete_subnet(a, None).await.unwrap();
    assert_eq!(
        next(&mut rx).await,
        WatchMsg::Changes(vec![Change::Delete {
            subnet: a,
            ipv6_subnet: None
        }])
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_dead_endpoint_fails_over_to_the_next() {
    let etcd = etcd_v2();
    etcdctl2(&etcd, &["set", &format!("{PREFIX}/config"), CONFIG]);
    // Port 1 on loopback refuses at once.
    let cfg = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:1".into(), etcd.endpoint()],
        prefix: PREFIX.into(),
        ..EtcdConfig::default()
    };
    let reg = V2Registry::connect(&cfg, Duration::from_secs(60)).unwrap();
    assert_eq!(
        reg.get_network_config().await.unwrap().as_deref(),
        Some(CONFIG)
    );
    let lone = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:1".into()],
        ..cfg
    };
    let err = V2Registry::connect(&lone, Duration::from_secs(60))
        .unwrap()
        .get_network_config()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no etcd endpoint answered: http://127.0.0.1:1: "),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn v2_over_tls_with_client_certificates() {
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "fr-v2-ca").unwrap();
    let server = ca
        .issue(
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
    let client = ca.issue("client", "extendedKeyUsage=clientAuth\n").unwrap();
    let path = |f: &Path| f.display().to_string();
    let (cafile, certfile, keyfile) = (path(ca.cert()), path(&client.0), path(&client.1));
    let tls = ca.mutual_etcd_tls(server, client);
    let etcd = Etcd::start(EtcdOptions::loopback().enable_v2(true).tls(tls)).unwrap();
    let mut cfg = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: PREFIX.into(),
        cafile,
        certfile,
        keyfile,
        ..EtcdConfig::default()
    };
    let reg = V2Registry::connect(&cfg, Duration::from_secs(60)).unwrap();
    let subnet = "10.5.4.0/24".parse().unwrap();
    reg.create_subnet(subnet, None, &attrs(4), None)
        .await
        .unwrap();
    assert_eq!(reg.list_subnets().await.unwrap().0.len(), 1);

    // Without a client certificate the server refuses the handshake.
    cfg.certfile.clear();
    cfg.keyfile.clear();
    let anonymous = V2Registry::connect(&cfg, Duration::from_secs(60)).unwrap();
    let err = anonymous.list_subnets().await.unwrap_err();
    assert!(
        err.to_string().contains("no etcd endpoint answered"),
        "{err}"
    );
}

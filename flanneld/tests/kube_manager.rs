//! The Kubernetes subnet manager against the test API server (conformance::kubeapi) on
//! loopback, through kube-rs with a kubeconfig, as against a cluster.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use conformance::kubeapi::{fixture_node, fixture_pod, Fault, KubeApi, Reply, Verb};
use flanneld::subnet::kube::{KubeError, KubeManager, KubeOptions};
use flanneld::subnet::peers::Change;
use flanneld::subnet::store::WatchMsg;
use flanneld::subnet::LeaseAttrs;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

const PREFIX: &str = "flannel.alpha.coreos.com/";

struct Bed {
    api: KubeApi,
    dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
}

impl Bed {
    fn new(net_conf: Value) -> Bed {
        let api = KubeApi::start_local().unwrap();
        let dir = tempfile::tempdir().unwrap();
        api.write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        std::fs::write(dir.path().join("net-conf.json"), net_conf.to_string()).unwrap();
        Bed {
            api,
            dir,
            stop: watch::channel(false).0,
        }
    }

    fn opts(&self) -> KubeOptions {
        KubeOptions {
            api_url: String::new(),
            kubeconfig: self.dir.path().join("kubeconfig").display().to_string(),
            annotation_prefix: "flannel.alpha.coreos.com".into(),
            net_config_path: self.dir.path().join("net-conf.json"),
            set_node_network_unavailable: true,
        }
    }

    async fn start(&self, env: &[(&str, &str)]) -> Result<KubeManager, KubeError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KubeManager::start(&self.opts(), |k| env.get(k).cloned(), self.stop.subscribe()).await
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn vxlan_net() -> Value {
    json!({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}})
}

fn attrs(ip: &str, mac: &str) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: ip.parse().unwrap(),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: Some(json!({"VNI": 1, "VtepMAC": mac}).into()),
        backend_v6_data: None,
    }
}

/// A node another flannel already manages.
fn managed_peer(name: &str, cidr: &str, ip: &str) -> Value {
    let mut n = fixture_node(name, Some(cidr), ip.parse().unwrap());
    let ann = n["metadata"]["annotations"].as_object_mut().unwrap();
    for (k, v) in [
        ("backend-data", r#"{"VNI":1,"VtepMAC":"aa:bb:cc:00:00:02"}"#),
        ("backend-type", "vxlan"),
        ("kube-subnet-manager", "true"),
        ("public-ip", ip),
    ] {
        ann.insert(format!("{PREFIX}{k}"), json!(v));
    }
    n
}

async fn next(rx: &mut mpsc::Receiver<WatchMsg>) -> WatchMsg {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a watch message in time")
        .expect("watch still running")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_publishes_upstreams_annotations_and_follows_peers() {
    let bed = Bed::new(vxlan_net());
    bed.api.put_node(fixture_node(
        "node-a",
        Some("10.244.1.0/24"),
        ip("192.168.1.10"),
    ));
    bed.api
        .put_node(managed_peer("node-b", "10.244.2.0/24", "192.168.1.11"));
    // Not managed by flannel: never a peer.
    bed.api.put_node(fixture_node(
        "node-c",
        Some("10.244.3.0/24"),
        ip("192.168.1.12"),
    ));
    let kube = bed.start(&[("NODE_NAME", "node-a")]).await.unwrap();
    assert_eq!(kube.node_name(), "node-a");
    let mut events = kube.take_events().unwrap();
    match next(&mut events).await {
        WatchMsg::Snapshot(leases) => {
            assert_eq!(leases.len(), 1, "{leases:?}");
            assert_eq!(leases[0].subnet.to_string(), "10.244.2.0/24");
            assert_eq!(leases[0].attrs.public_ip, ip("192.168.1.11"));
        }
        other => panic!("{other:?}"),
    }

    let lease = kube
        .acquire(&attrs("192.168.1.10", "aa:bb:cc:00:00:01"))
        .await
        .unwrap();
    assert_eq!(lease.subnet.to_string(), "10.244.1.0/24");
    let patch = bed
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("a patch");
    assert_eq!(patch.path, "/api/v1/nodes/node-a/status");
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    let body: Value = serde_json::from_str(&patch.body).unwrap();
    assert_eq!(
        body,
        json!({"metadata": {"annotations": {
            "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"aa:bb:cc:00:00:01\"}",
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
            "flannel.alpha.coreos.com/public-ip": "192.168.1.10"
        }}})
    );
    let node = bed.api.node("node-a").unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["kubeadm.alpha.kubernetes.io/cri-socket"],
        "unix:///var/run/containerd/containerd.sock",
        "other annotations survive"
    );
    // Our own node shows up in the watch as well (the node loop filters it out).
    match next(&mut events).await {
        WatchMsg::Changes(c) => assert!(
            matches!(&c[..], [Change::Put(l)] if l.subnet == lease.subnet),
            "{c:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Acquiring again with the same attributes patches nothing.
    let patches = |api: &KubeApi| {
        api.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count()
    };
    kube.acquire(&attrs("192.168.1.10", "aa:bb:cc:00:00:01"))
        .await
        .unwrap();
    assert_eq!(patches(&bed.api), 1);

    // Two failures first: the report keeps trying until the API server takes it.
    bed.api.inject(
        Fault::new(Reply::Internal)
            .on(&[Verb::Patch], "nodes")
            .times(2),
    );
    kube.report_network_available().await;
    assert_eq!(bed.api.faults_pending(), 0);
    let node = bed.api.node("node-a").unwrap();
    let conditions = node["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 5, "merged by type: {conditions:?}");
    let net = conditions
        .iter()
        .find(|c| c["type"] == "NetworkUnavailable")
        .unwrap();
    assert_eq!(net["status"], "False");
    assert_eq!(net["reason"], "FlannelIsUp");
    assert_eq!(net["message"], "Flannel is running on this node");
    assert!(net["lastTransitionTime"].as_str().unwrap().ends_with('Z'));

    bed.api.delete_node("node-b");
    // The condition patch re-delivers our own node first (same lease, filtered later).
    loop {
        match next(&mut events).await {
            WatchMsg::Changes(c) if matches!(&c[..], [Change::Put(l)] if l.subnet == lease.subnet) =>
                {}
            WatchMsg::Changes(c) => {
                assert_eq!(
                    c,
                    [Change::Delete {
                        subnet: "10.244.2.0/24".parse().unwrap(),
                        ipv6_subnet: None
                    }]
                );
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_deleted_while_the_history_is_gone_is_found_by_relisting() {
    let bed = Bed::new(vxlan_net());
    bed.api.put_node(fixture_node(
        "node-a",
        Some("10.244.1.0/24"),
        ip("192.168.1.10"),
    ));
    bed.api
        .put_node(managed_peer("node-b", "10.244.2.0/24", "192.168.1.11"));
    let kube = bed.start(&[("NODE_NAME", "node-a")]).await.unwrap();
    let mut events = kube.take_events().unwrap();
    assert!(matches!(next(&mut events).await, WatchMsg::Snapshot(l) if l.len() == 1));
    bed.api.delete_node_unseen("node-b");
    match next(&mut events).await {
        WatchMsg::Snapshot(l) => assert!(l.is_empty(), "{l:?}"),
        other => panic!("expected a relist, got {other:?}"),
    }
    let lists = bed
        .api
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/nodes" && !r.query.iter().any(|(k, _)| k == "watch"))
        .count();
    assert_eq!(lists, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_foreign_pod_cidrs_fail_with_upstreams_messages() {
    let bed = Bed::new(vxlan_net());
    bed.api
        .put_node(fixture_node("bare", None, ip("192.168.1.10")));
    bed.api.put_node(fixture_node(
        "outside",
        Some("10.99.1.0/24"),
        ip("192.168.1.11"),
    ));
    let kube = bed.start(&[("NODE_NAME", "bare")]).await.unwrap();
    let err = kube
        .acquire(&attrs("192.168.1.10", "aa:bb:cc:00:00:01"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "node \"bare\" pod cidr not assigned");

    let kube = bed.start(&[("NODE_NAME", "outside")]).await.unwrap();
    let err = kube
        .acquire(&attrs("192.168.1.11", "aa:bb:cc:00:00:01"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "subnet \"10.244.0.0/16\" specified in the flannel net config doesn't contain \"10.99.1.0/24\" PodCIDR of the \"outside\" node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_name_comes_from_the_pod_when_node_name_is_unset() {
    let bed = Bed::new(vxlan_net());
    bed.api.put_pod(fixture_pod(
        "kube-flannel",
        "kube-flannel-ds-x7k2p",
        "node-a",
    ));
    let mut orphan = fixture_pod("kube-flannel", "pending", "");
    orphan["spec"].as_object_mut().unwrap().remove("nodeName");
    bed.api.put_pod(orphan);

    let kube = bed
        .start(&[
            ("POD_NAME", "kube-flannel-ds-x7k2p"),
            ("POD_NAMESPACE", "kube-flannel"),
        ])
        .await
        .unwrap();
    assert_eq!(kube.node_name(), "node-a");

    let err = bed.start(&[("POD_NAME", "x")]).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "env variables POD_NAME and POD_NAMESPACE must be set"
    );
    let err = bed
        .start(&[("POD_NAME", "gone"), ("POD_NAMESPACE", "kube-flannel")])
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("error retrieving pod spec for 'kube-flannel/gone': "),
        "{err}"
    );
    let err = bed
        .start(&[("POD_NAME", "pending"), ("POD_NAMESPACE", "kube-flannel")])
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "node name not present in pod spec 'kube-flannel/pending'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_annotations_pin_the_address_and_keep_the_vtep_mac() {
    let bed = Bed::new(vxlan_net());
    let mut node = managed_peer("node-a", "10.244.1.0/24", "192.168.1.10");
    let ann = node["metadata"]["annotations"].as_object_mut().unwrap();
    ann.insert(format!("{PREFIX}node-public-ip"), json!("192.168.1.10"));
    ann.insert(
        format!("{PREFIX}public-ip-overwrite"),
        json!("203.0.113.10"),
    );
    bed.api.put_node(node);
    let kube = bed.start(&[("NODE_NAME", "node-a")]).await.unwrap();
    let info = kube.stored_node_info().await.unwrap();
    assert_eq!(info.public_ip, Some(ip("192.168.1.10")));
    assert_eq!(info.macs.v4.unwrap().to_string(), "aa:bb:cc:00:00:02");

    let lease = kube
        .acquire(&attrs("192.168.1.10", "aa:bb:cc:00:00:02"))
        .await
        .unwrap();
    assert_eq!(
        lease.attrs.public_ip,
        ip("203.0.113.10"),
        "published address"
    );
    let node = bed.api.node("node-a").unwrap();
    assert_eq!(
        node["metadata"]["annotations"][format!("{PREFIX}public-ip")],
        "203.0.113.10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_prefix_errors_are_upstreams() {
    let bed = Bed::new(vxlan_net());
    let mut opts = bed.opts();
    opts.annotation_prefix = "a/b/c".into();
    let err = KubeManager::start(&opts, |_| None, bed.stop.subscribe())
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "subnet/kube: prefix can contain at most single slash"
    );

    let mut opts = bed.opts();
    opts.net_config_path = PathBuf::from("/nonexistent/net-conf.json");
    let env = |k: &str| (k == "NODE_NAME").then(|| "n".to_owned());
    let err = KubeManager::start(&opts, env, bed.stop.subscribe())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().starts_with("failed to read net conf: "),
        "{err}"
    );

    std::fs::write(bed.dir.path().join("net-conf.json"), "{").unwrap();
    let err = bed.start(&[("NODE_NAME", "n")]).await.err().unwrap();
    assert!(
        err.to_string().starts_with("error parsing subnet config: "),
        "{err}"
    );

    // Subnet sizes are not checked in kube mode (upstream skips CheckNetworkConfig).
    std::fs::write(
        bed.dir.path().join("net-conf.json"),
        r#"{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"host-gw"}}"#,
    )
    .unwrap();
    assert!(bed.start(&[("NODE_NAME", "n")]).await.is_ok());
}

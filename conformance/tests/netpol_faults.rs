//! NetworkPolicy when things go wrong, and what operators see: flanneld restarted (SIGTERM
//! and SIGKILL) and the API server down never open an isolated pod, not even for a moment;
//! a policy flanneld cannot understand isolates the pods it selects and is logged, counted
//! and shown; `/status`, `flannelctl status` and `/metrics` say what is enforced; pods on the
//! host network are never selected; the node reaches its own pods; without the flag the
//! table goes away.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conformance::kubeapi::fixture_pod;
use conformance::reach::{probe_all, Proto};
use conformance::support::netpol::cases::{all, same};
use conformance::support::netpol::{ns, pod, rv_of, Cluster, TestPod};
use serde_json::json;

/// Probes, until stopped, connections that must stay denied and one that must keep working.
struct Monitor {
    stop: AtomicBool,
    leaks: AtomicUsize,
    rounds: AtomicUsize,
    allowed_ok: AtomicUsize,
}

impl Monitor {
    fn new() -> Monitor {
        Monitor {
            stop: AtomicBool::new(false),
            leaks: AtomicUsize::new(0),
            rounds: AtomicUsize::new(0),
            allowed_ok: AtomicUsize::new(0),
        }
    }

    /// x/c (x/a's node) and y/a (the other node) to x/a must fail; x/a to y/a must work.
    fn run(&self, pods: &[TestPod]) {
        let find = |id: &str| pods.iter().find(|p| p.id() == id).unwrap();
        let (xa, xc, ya) = (find("x/a"), find("x/c"), find("y/a"));
        assert_eq!(xa.node, xc.node);
        assert_ne!(xa.node, ya.node);
        while !self.stop.load(Ordering::SeqCst) {
            let denied = probe_all(
                &[&xc.netns, &ya.netns],
                &[xa.ip],
                Proto::Tcp,
                80,
                Duration::from_millis(300),
                |_, _| false,
            );
            let allowed = probe_all(
                &[&xa.netns],
                &[ya.ip],
                Proto::Tcp,
                80,
                Duration::from_secs(2),
                |_, _| false,
            );
            let leaked = denied
                .iter()
                .flatten()
                .filter(|c| **c == Some(true))
                .count();
            self.leaks.fetch_add(leaked, Ordering::SeqCst);
            self.allowed_ok
                .fetch_add(usize::from(allowed[0][0] == Some(true)), Ordering::SeqCst);
            self.rounds.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn restarts_and_an_unreachable_api_server_never_open_isolated_pods() {
    let mut c = Cluster::start("vxlan", &[]);
    let rv = c.policy(
        "x",
        "deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    c.wait_enforced(rv);
    let isolated = all().ingress(ns("x"), false);
    c.check(&*same(isolated.clone()), &[(Proto::Tcp, 80)])
        .unwrap();
    let node = c.pod("x/a").node;
    let monitor = Monitor::new();
    std::thread::scope(|s| {
        let m = &monitor;
        let cluster = &c;
        let pods = &c.pods;
        let watching = s.spawn(move || m.run(pods));
        let wait_rounds = |n: usize| {
            let target = m.rounds.load(Ordering::SeqCst) + n;
            while m.rounds.load(Ordering::SeqCst) < target {
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        wait_rounds(3);
        // The API server goes away for a while; meanwhile the policy is deleted. Nothing
        // changes until the server is back, so the monitor stops a second before it is.
        let api = &cluster.api;
        let down = Duration::from_secs(5);
        let outage_started = Instant::now();
        let outage = s.spawn(move || api.restart(down));
        std::thread::sleep(Duration::from_millis(500));
        let rv_deleted = rv_of(
            &cluster
                .api
                .delete("networkpolicies", "x", "deny-ingress")
                .unwrap(),
        );
        let rounds_before = m.rounds.load(Ordering::SeqCst);
        std::thread::sleep(down.saturating_sub(outage_started.elapsed() + Duration::from_secs(1)));
        m.stop.store(true, Ordering::SeqCst);
        watching.join().unwrap();
        assert!(
            outage_started.elapsed() < down,
            "the monitor ran past the outage; the machine is too slow for this check"
        );
        assert!(
            m.rounds.load(Ordering::SeqCst) > rounds_before,
            "no probes while the API server was down"
        );
        outage.join().unwrap().unwrap();
        // Now the deletion reaches flanneld.
        cluster.wait_enforced(rv_deleted);
    });
    assert_eq!(
        monitor.leaks.load(Ordering::SeqCst),
        0,
        "an isolated pod was reachable while the API server was down"
    );
    assert!(
        monitor.allowed_ok.load(Ordering::SeqCst) > 0,
        "the monitor never saw an allowed connection"
    );
    c.check(&*same(all()), &[(Proto::Tcp, 80)]).unwrap();
    let log = c.nodes[node].log();
    assert!(
        log.contains("network policy: pod watch")
            || log.contains("network policy: NetworkPolicy watch"),
        "{log}"
    );
    assert!(log.contains("the API server answers again"), "{log}");

    // flanneld restarted, cleanly and killed, while the policy is in force.
    let rv = c.policy(
        "x",
        "deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    c.wait_enforced(rv);
    let monitor = Monitor::new();
    std::thread::scope(|s| {
        let m = &monitor;
        let pods = &c.pods;
        s.spawn(move || m.run(pods));
        let n = &mut c.nodes[node];
        assert_eq!(n.stop().unwrap().code(), Some(0));
        let table = n.nft_table();
        assert!(
            table.contains("hook forward"),
            "the table is left in place on exit:\n{table}"
        );
        std::thread::sleep(Duration::from_secs(2));
        n.restart(None).unwrap();
        n.wait_ready(Duration::from_secs(60)).unwrap();
        n.kill();
        std::thread::sleep(Duration::from_secs(1));
        n.restart(None).unwrap();
        n.wait_ready(Duration::from_secs(60)).unwrap();
        let started = Instant::now();
        while m.rounds.load(Ordering::SeqCst) < 5 && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        m.stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        monitor.leaks.load(Ordering::SeqCst),
        0,
        "an isolated pod was reachable across a flanneld restart"
    );
    assert!(monitor.allowed_ok.load(Ordering::SeqCst) > 0);
    let log = c.nodes[node].log();
    assert_eq!(
        log.matches("network policy: table inet flannel-netpol written")
            .count(),
        3,
        "{log}"
    );
    c.check(&*same(isolated), &[(Proto::Tcp, 80), (Proto::Udp, 81)])
        .unwrap();

    // Without the flag the feature is gone: no table, nothing enforced.
    c.nodes[node].restart(Some(&[])).unwrap();
    c.nodes[node].wait_ready(Duration::from_secs(60)).unwrap();
    let tables = c.nodes[node]
        .host
        .netns()
        .exec_ok(&["nft", "list", "tables"])
        .unwrap();
    assert!(!tables.contains("flannel-netpol"), "{tables}");
    assert!(c.nodes[node]
        .log()
        .contains("removed the table inet flannel-netpol a previous run left"));
    assert!(c.nodes[node].netpol_status().is_none());
}

#[test]
fn what_cannot_be_understood_fails_closed_and_everything_is_reported() {
    let c = Cluster::start("vxlan", &[]);
    // A pod on the host network, labelled like x/a: never selected, never a peer.
    let xa_node = c.pod("x/a").node;
    let host = &c.nodes[xa_node];
    let mut flannel_pod = fixture_pod("x", "kube-flannel-ds-h", &host.name);
    flannel_pod["metadata"]["labels"] = json!({"pod": "a"});
    flannel_pod["status"]["podIP"] = json!(host.host.ip().to_string());
    flannel_pod["status"]["podIPs"] = json!([{"ip": host.host.ip().to_string()}]);
    c.api.put("pods", flannel_pod);

    let rv = c.policy("x", "weird", json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Like", "values": ["b"]}]}}]}]}));
    c.wait_enforced(rv);
    c.check(
        &*same(all().ingress(pod("x/a"), false)),
        &[(Proto::Tcp, 80), (Proto::Udp, 80)],
    )
    .unwrap();
    c.node_reaches_its_pods().unwrap();

    let status = c.nodes[xa_node].netpol_status().unwrap();
    assert_eq!(status["synced"], json!(true));
    assert_eq!(status["policies"], json!(1));
    let failed = status["failed_policies"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status:#}");
    assert_eq!(failed[0]["policy"], json!("x/weird"));
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown label selector operator \"Like\""),
        "{status:#}"
    );
    let local: Vec<&str> = status["local_pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pod"].as_str().unwrap())
        .collect();
    assert!(
        local.contains(&"x/a") && !local.contains(&"x/kube-flannel-ds-h"),
        "{local:?}"
    );
    let xa = status["local_pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pod"] == "x/a")
        .unwrap();
    assert_eq!(xa["ingress"], json!(["x/weird"]));
    assert_eq!(xa["egress"], json!([]));
    let table = c.nodes[xa_node].nft_table();
    assert!(
        !table.contains(&host.host.ip().to_string()),
        "the host-network pod's address is in the table:\n{table}"
    );

    let n = &c.nodes[xa_node];
    assert!(
        n.log()
            .contains("NetworkPolicy x/weird cannot be enforced as written"),
        "{}",
        n.log()
    );
    let text = n
        .host
        .netns()
        .command(conformance::cni::our_bin_dir().join("flannelctl"))
        .args([
            "status",
            "--addr",
            &format!("127.0.0.1:{}", conformance::support::netpol::HEALTHZ_PORT),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("FAIL CLOSED: x/weird: "), "{text}");
    assert!(text.contains("x/a "), "{text}");

    assert_eq!(n.metric("flannel_netpol_policies"), Some(1.0));
    assert_eq!(
        n.metric("flannel_netpol_errors_total{kind=\"policy\"}"),
        Some(1.0)
    );
    assert!(n.metric("flannel_netpol_rules").unwrap() > 4.0);
    assert!(n.metric("flannel_netpol_sync_seconds_count").unwrap() >= 1.0);
    // The denied probes above were counted by the table (read every resync second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while n
        .metric("flannel_netpol_denied_packets_total{direction=\"ingress\"}")
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(Instant::now() < deadline, "{:?}", n.http_get("/metrics"));
        std::thread::sleep(Duration::from_millis(200));
    }

    // Fixed: understood again and enforced as written.
    let rv = c.policy("x", "weird", json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}}]}]}));
    c.wait_enforced(rv);
    c.check(
        &*same(
            all()
                .ingress(pod("x/a"), false)
                .set(pod("x/b"), pod("x/a"), true),
        ),
        &[(Proto::Tcp, 80)],
    )
    .unwrap();
    assert_eq!(
        c.nodes[xa_node].netpol_status().unwrap()["failed_policies"],
        json!([])
    );
    assert!(c.nodes[xa_node]
        .log()
        .contains("NetworkPolicy x/weird is understood again"));
}

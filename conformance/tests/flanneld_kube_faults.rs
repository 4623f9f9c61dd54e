//! Kube mode against an API server that misbehaves as real ones do (watches cut short,
//! bookmarks, 410 Gone, 429 and 5xx with Retry-After, a restart, 409 Conflict): two nodes lose
//! no ping, keep subnet.env, annotations and routes, and log one line per event.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use conformance::kubeapi::{Fault, KubeApi, Reply, Verb};
use conformance::support::flanneld::kube::*;
use conformance::support::flanneld::{eventually, pings, Pod, START};
use conformance::support::flanneld_faults::Pinger;
use conformance::{Host, Segment};
use serde_json::json;

/// `ip -o monitor route` in a host, to prove afterwards that no pod route was ever deleted.
struct RouteMonitor {
    child: Child,
    out: PathBuf,
}

impl RouteMonitor {
    fn start(host: &Host, out: PathBuf) -> RouteMonitor {
        let file = File::create(&out).unwrap();
        let child = host
            .netns()
            .command("ip")
            .args(["-o", "monitor", "route"])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        RouteMonitor { child, out }
    }

    /// Route deletions inside the pod network seen so far.
    fn deletions(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Deleted") && l.contains("10.244."))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Relists: GETs of the Node collection that are not watches.
fn relists(api: &KubeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/nodes" && !r.is_watch())
        .count()
}

/// Runs one misbehaviour while both pods ping each other, then checks that not one ping was
/// lost and that every flanneld still holds its lease, annotations and routes.
fn through(
    what: &str,
    cluster: &KubeCluster,
    nodes: &mut [KubeFlanneld; 2],
    pods: &[Pod; 2],
    event: impl FnOnce(&mut [KubeFlanneld; 2]),
) {
    let before: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                std::fs::read_to_string(n.path("subnet.env")).unwrap(),
                flannel_annotations(n, &cluster.api),
            )
        })
        .collect();
    let routes = [
        nodes[0].route_to("10.244.2.0/24"),
        nodes[1].route_to("10.244.1.0/24"),
    ];
    let pingers = [
        Pinger::start(&pods[0].netns, &pods[1].ip, Duration::from_secs(8)),
        Pinger::start(&pods[1].netns, &pods[0].ip, Duration::from_secs(8)),
    ];
    event(nodes);
    for p in pingers {
        let stats = p.finish();
        assert_eq!(
            stats.transmitted, stats.received,
            "{what}: pings lost: {stats:?}"
        );
    }
    for (n, (env, ann)) in nodes.iter().zip(before) {
        assert_eq!(
            std::fs::read_to_string(n.path("subnet.env")).unwrap(),
            env,
            "{what}"
        );
        assert_eq!(
            flannel_annotations(n, &cluster.api),
            ann,
            "{what}: annotations changed"
        );
    }
    assert_eq!(
        [
            nodes[0].route_to("10.244.2.0/24"),
            nodes[1].route_to("10.244.1.0/24")
        ],
        routes,
        "{what}: routes changed"
    );
}

#[test]
fn kube_mode_rides_out_an_api_server_that_misbehaves_as_real_ones_do() {
    let cluster = KubeCluster::new();
    let h1 = cluster.node(Segment::A, "h1", Some("10.244.1.0/24"));
    let h2 = cluster.node(Segment::B, "h2", Some("10.244.2.0/24"));
    let monitors = [
        RouteMonitor::start(
            &h1,
            std::env::temp_dir().join(format!("fr-routes-h1-{}", std::process::id())),
        ),
        RouteMonitor::start(
            &h2,
            std::env::temp_dir().join(format!("fr-routes-h2-{}", std::process::id())),
        ),
    ];
    let mut nodes = [
        start_kube(&cluster, h1, "h1"),
        start_kube(&cluster, h2, "h2"),
    ];
    for n in &mut nodes {
        n.wait_ready(START).unwrap();
    }
    let pods = [
        add_kube_pod(&nodes[0], "ctr-1"),
        add_kube_pod(&nodes[1], "ctr-2"),
    ];
    for (a, b) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
        assert!(eventually(Duration::from_secs(20), || pings(
            &a.netns, &b.ip
        )));
    }
    let api = &cluster.api;

    // 1. Watches cut short by the server (its own limit, below our timeoutSeconds): each
    //    end is one line, and the watch resumes where it was, without a relist.
    let ended = "the API server ended the watch after";
    let lists = relists(api);
    through("watches cut short", &cluster, &mut nodes, &pods, |nodes| {
        api.set_watch_limit(Some(Duration::from_secs(2)));
        for n in nodes.iter() {
            wait_logged(n, ended, 1);
        }
        api.set_watch_limit(None);
    });
    assert_eq!(
        relists(api),
        lists,
        "a watch that ends is resumed, not relisted"
    );

    // 2. Bookmarks: writes elsewhere move the version on, a bookmark carries it to each
    //    flanneld, and after compaction and lost connections both resume from it (from their
    //    last Node event they would need a relist).
    through("bookmarks", &cluster, &mut nodes, &pods, |nodes| {
        api.set_bookmark_interval(Some(Duration::from_millis(300)));
        api.unrelated_write();
        api.unrelated_write();
        std::thread::sleep(Duration::from_secs(2));
        let ends: Vec<usize> = nodes.iter().map(|n| n.count(ended)).collect();
        api.compact();
        api.drop_connections();
        for (n, e) in nodes.iter().zip(ends) {
            wait_logged(n, ended, e + 1);
        }
        std::thread::sleep(Duration::from_secs(1));
    });
    assert_eq!(relists(api), lists, "resumed from the bookmark, no relist");
    api.set_bookmark_interval(None);

    // 3. 410 Gone: the version a watch resumes from is no longer in the history: one line
    //    each, one relist each, nothing else changes.
    let expired = "is no longer in the API server's history";
    through("410 Gone", &cluster, &mut nodes, &pods, |nodes| {
        api.unrelated_write();
        api.compact();
        api.drop_connections();
        for n in nodes.iter() {
            assert_eq!(wait_logged(n, expired, 1), 1);
        }
    });
    assert_eq!(relists(api), lists + 2);

    // 4. 429 with Retry-After (priority and fairness) on the relists after another 410:
    //    every rejection is retried after the second it asks for, with one line each.
    let throttled = "answered 429 Too Many Requests to GET /api/v1/nodes";
    through(
        "429 Too Many Requests",
        &cluster,
        &mut nodes,
        &pods,
        |nodes| {
            api.inject(
                Fault::new(Reply::Throttled { retry_after: 1 })
                    .on(&[Verb::List], "nodes")
                    .times(4),
            );
            api.unrelated_write();
            api.compact();
            api.drop_connections();
            assert!(eventually(Duration::from_secs(60), || api.faults_pending()
                == 0
                && relists_done(api) >= lists + 4));
            for n in nodes.iter() {
                wait_logged(n, expired, 2);
            }
        },
    );
    assert_eq!(nodes.iter().map(|n| n.count(throttled)).sum::<usize>(), 4);

    // 5. 5xx: a 503 with Retry-After on the watch is retried by the client after 2 s; a 500
    //    InternalError (no hint) is retried by the loop with backoff. One line each, then
    //    one line when the server answers again.
    let unavailable = "answered 503 Service Unavailable to GET /api/v1/nodes";
    let failed = "watching failed: 500 InternalError";
    let back = "the API server answers again";
    through("5xx", &cluster, &mut nodes, &pods, |nodes| {
        api.inject(
            Fault::new(Reply::Unavailable { retry_after: 2 })
                .on(&[Verb::Watch], "nodes")
                .times(2),
        );
        api.inject(
            Fault::new(Reply::Internal)
                .on(&[Verb::Watch], "nodes")
                .times(2),
        );
        api.drop_connections();
        assert!(eventually(Duration::from_secs(60), || api.faults_pending() == 0));
        for n in nodes.iter() {
            wait_logged(n, back, 1);
        }
    });
    assert_eq!(nodes.iter().map(|n| n.count(unavailable)).sum::<usize>(), 2);
    // Each served 503 is one retry line where it was served; the two 500s are one outage
    // line per flanneld that got any (a flanneld that got both says it once).
    let outages = nodes.iter().map(|n| n.count(failed)).sum::<usize>();
    assert!((1..=2).contains(&outages), "{outages} outage lines");

    // 6. The API server restarts: every watch is lost, connections are refused for 3 s,
    //    and it comes back with an empty watch cache (so a 410 and one relist each).
    let refused = "watching failed: Connection refused";
    through("API server restart", &cluster, &mut nodes, &pods, |nodes| {
        api.restart(Duration::from_secs(3)).unwrap();
        for n in nodes.iter() {
            wait_logged(n, back, 2);
            wait_logged(n, expired, 3);
        }
    });
    for n in &nodes {
        assert_eq!(n.count(refused), 1, "one line for the outage:\n{}", n.log());
    }

    // 7. 409 Conflict: a restarted flanneld's condition patch loses to concurrent writers
    //    twice; it keeps trying until NetworkUnavailable=False lands (upstream gives up
    //    after 30 s and leaves the node tainted).
    api.update_node("h1", |n| {
        for c in n["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "NetworkUnavailable" {
                c["status"] = json!("True");
            }
        }
    });
    let conflict = "409 Conflict: Operation cannot be fulfilled on nodes \"h1\"";
    through("409 Conflict", &cluster, &mut nodes, &pods, |nodes| {
        api.inject(
            Fault::new(Reply::Conflict)
                .on(&[Verb::Patch], "nodes")
                .times(2),
        );
        assert!(nodes[0].stop().unwrap().success());
        nodes[0].spawn().unwrap();
        nodes[0].wait_ready(START).unwrap();
        wait_logged(&nodes[0], "NetworkUnavailable=False is set", 1);
    });
    assert!(nodes[0].count(conflict) >= 1, "{}", nodes[0].log());
    let condition = api.node("h1").unwrap()["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NetworkUnavailable")
        .cloned()
        .unwrap();
    assert_eq!(condition["status"], "False");

    for m in &monitors {
        assert_eq!(
            m.deletions(),
            Vec::<String>::new(),
            "a pod route was deleted"
        );
    }
    for n in &mut nodes {
        assert!(n.stop().unwrap().success());
        if std::env::var_os("FLANNEL_RS_SHOW_LOGS").is_some() {
            eprintln!("--- flanneld log ({}) ---\n{}", n.name, n.log());
        }
    }
}

/// Relists that got an answer (failed attempts excluded).
fn relists_done(api: &KubeApi) -> usize {
    api.requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path == "/api/v1/nodes" && !r.is_watch() && r.status == 200
        })
        .count()
}

//! flanneld's list + watch loop (`flanneld::k8s::ListWatch`) against the test API server
//! misbehaving as real ones do: paged lists, watches cut short, bookmarks, 410 Gone, 429
//! and 5xx with Retry-After, and a restart. Each case checks what the loop asked the server
//! (the server records every request) and what it handed on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance::kubeapi::{fixture_node, Fault, KubeApi, Recorded, Reply, Verb};
use flanneld::k8s::{build_client, ListWatch, Update};
use flanneld::subnet::kube::FlannelNode;
use kube::Api;

struct Bed {
    api: Arc<KubeApi>,
    _dir: tempfile::TempDir,
    lw: ListWatch<FlannelNode>,
}

async fn bed(nodes: usize) -> Bed {
    let api = KubeApi::start_local().unwrap();
    for i in 0..nodes {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32 + 1);
        api.put_node(fixture_node(&format!("n{i:04}"), Some("10.244.1.0/24"), ip));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    api.write_kubeconfig(&path).unwrap();
    let client = build_client("", path.to_str().unwrap()).await.unwrap();
    Bed {
        api: Arc::new(api),
        _dir: dir,
        lw: ListWatch::new(Api::all(client), "node watch"),
    }
}

/// The next update, within a generous deadline.
async fn next(lw: &mut ListWatch<FlannelNode>) -> Update<FlannelNode> {
    tokio::time::timeout(Duration::from_secs(30), lw.next())
        .await
        .expect("an update in time")
}

/// Runs the loop for `d` and fails if it hands anything on meanwhile.
async fn quiet(lw: &mut ListWatch<FlannelNode>, d: Duration) {
    if let Ok(u) = tokio::time::timeout(d, lw.next()).await {
        panic!("unexpected update {u:?}");
    }
}

fn listed(u: Update<FlannelNode>) -> Vec<String> {
    match u {
        Update::Listed(nodes) => nodes.iter().map(|n| n.name().to_owned()).collect(),
        other => panic!("expected a list, got {other:?}"),
    }
}

fn lists(api: &KubeApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v1/nodes" && !r.is_watch())
        .collect()
}

fn watches(api: &KubeApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(Recorded::is_watch)
        .collect()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_list_is_read_in_pages_at_one_resource_version() {
    let mut b = bed(1201).await;
    let names = listed(next(&mut b.lw).await);
    assert_eq!(names.len(), 1201);
    let pages = lists(&b.api);
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages.iter().all(|p| p.param("limit") == Some("500")));
    assert!(pages[0].param("continue").is_none());
    assert!(pages[1].param("continue").is_some() && pages[2].param("continue").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_from_bookmarks_and_relist_only_after_410() {
    let mut b = bed(2).await;
    b.api
        .set_bookmark_interval(Some(Duration::from_millis(200)));
    assert_eq!(listed(next(&mut b.lw).await).len(), 2);
    let listed_at: u64 = b.lw.resource_version().unwrap().parse().unwrap();

    // Writes elsewhere in the cluster move the version on; a bookmark carries it here.
    b.api.unrelated_write();
    b.api.unrelated_write();
    quiet(&mut b.lw, Duration::from_secs(1)).await;
    let bookmarked: u64 = b.lw.resource_version().unwrap().parse().unwrap();
    assert_eq!(
        bookmarked,
        listed_at + 2,
        "the bookmark moved the resume point"
    );
    assert!(watches(&b.api)[0].param("allowWatchBookmarks") == Some("true"));

    // History up to the bookmark is compacted and the connection dropped: resuming from
    // the bookmark needs no relist (from the list's version it would have been a 410).
    b.api.compact();
    b.api.drop_connections();
    quiet(&mut b.lw, Duration::from_secs(1)).await;
    assert_eq!(lists(&b.api).len(), 1, "no relist");
    let w = watches(&b.api);
    assert_eq!(
        w.last().unwrap().param("resourceVersion"),
        Some(&*bookmarked.to_string())
    );

    // Without bookmarks the resume point is older than the history: 410, then a relist.
    b.api.set_bookmark_interval(None);
    b.api.unrelated_write();
    b.api.compact();
    b.api.drop_connections();
    assert_eq!(listed(next(&mut b.lw).await).len(), 2);
    assert_eq!(lists(&b.api).len(), 2);

    // Changes keep flowing after all that.
    b.api.delete_node("n0000");
    match next(&mut b.lw).await {
        Update::Deleted(n) => assert_eq!(n.name(), "n0000"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_cut_short_resume_without_a_relist() {
    let mut b = bed(1).await;
    b.api.set_watch_limit(Some(Duration::from_millis(1500)));
    listed(next(&mut b.lw).await);
    quiet(&mut b.lw, Duration::from_secs(4)).await;
    assert!(watches(&b.api).len() >= 2, "{:?}", watches(&b.api));
    assert_eq!(lists(&b.api).len(), 1);
    b.api
        .put_node(fixture_node("late", None, "10.1.1.1".parse().unwrap()));
    assert!(matches!(next(&mut b.lw).await, Update::Applied(n) if n.name() == "late"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_for_429_and_5xx() {
    let mut b = bed(1).await;
    // Throttled twice (plain-text 429, Retry-After: 1), then served: the client itself
    // retries, one second apart.
    b.api.inject(
        Fault::new(Reply::Throttled { retry_after: 1 })
            .on(&[Verb::List], "nodes")
            .times(2),
    );
    listed(next(&mut b.lw).await);
    let l = lists(&b.api);
    assert_eq!(
        l.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 429, 200]
    );
    for pair in l.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(950),
            "{pair:?}"
        );
    }

    // A 500 ServerTimeout with retryAfterSeconds=2 on the watch: retried 2 s later.
    b.api.inject(
        Fault::new(Reply::ServerTimeout { retry_after: 2 })
            .on(&[Verb::Watch], "nodes")
            .times(1),
    );
    // The loop only runs while it is polled.
    let mut lw = b.lw;
    let api = b.api;
    let handle = tokio::spawn(async move {
        loop {
            lw.next().await;
        }
    });
    eventually("the watch to come back", || {
        watches(&api).iter().any(|w| w.status == 200)
    })
    .await;
    handle.abort();
    let w = watches(&api);
    let failed = w
        .iter()
        .position(|r| r.status == 500)
        .expect("the fault was served");
    let gap = w[failed + 1].at - w[failed].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    assert_eq!(lists(&api).len(), 3, "a failed watch is not a relist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_costs_one_relist_and_nothing_is_missed() {
    let mut b = bed(2).await;
    listed(next(&mut b.lw).await);
    let api = b.api.clone();
    let restart = tokio::task::spawn_blocking(move || api.restart(Duration::from_secs(2)).unwrap());
    assert_eq!(
        listed(next(&mut b.lw).await).len(),
        2,
        "relisted after the restart"
    );
    restart.await.unwrap();
    b.api.delete_node("n0001");
    match next(&mut b.lw).await {
        Update::Listed(n) => panic!("a second relist: {n:?}"),
        Update::Deleted(n) => assert_eq!(n.name(), "n0001"),
        other => panic!("{other:?}"),
    }
    assert_eq!(lists(&b.api).len(), 2);
}

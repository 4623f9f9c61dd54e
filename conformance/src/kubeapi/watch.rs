//! Watches of any kind, as the API server's watch cache serves them: a chunked stream of
//! `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}` lines.
//!
//! - No resourceVersion (or `0`): the current objects as ADDED, then changes.
//! - A resourceVersion older than the history: one ERROR event carrying a 410 `Expired`
//!   Status (`too old resource version: N (M)`), then the stream ends, as the watch cache
//!   answers (the HTTP status is still 200).
//! - `allowWatchBookmarks=true`: a BOOKMARK (an object of the kind with only
//!   `metadata.resourceVersion`) every bookmark interval.
//! - The stream ends after `timeoutSeconds`, or earlier at the server's own watch limit
//!   (a load balancer's idle cut, or a short `--min-request-timeout`).
//! - A restart ends every stream abruptly, without the closing chunk.

use std::io;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{status, Chunked, Request};
use super::kinds::Kind;
use super::store::{Change, Expired};
use super::{Shared, POLL};

/// A watch without `timeoutSeconds` ends after this (the API server's default range).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

fn gone(e: Expired) -> Value {
    json!({
        "type": "ERROR",
        "object": status(410, "Expired", &format!("too old resource version: {} ({})", e.requested, e.oldest)),
    })
}

fn event(c: &Change) -> Value {
    json!({"type": c.kind, "object": c.object})
}

fn bookmark(kind: &Kind, rv: u64) -> Value {
    json!({
        "type": "BOOKMARK",
        "object": {
            "kind": kind.kind,
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": rv.to_string(), "creationTimestamp": null},
        },
    })
}

pub fn serve(
    stream: &TcpStream,
    shared: &Shared,
    req: &Request,
    kind: &'static Kind,
    namespace: Option<&str>,
) -> io::Result<()> {
    let asked = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let started = Instant::now();
    // The server's limit applies to watches already open when it is set, as a proxy's cut.
    let deadline = || {
        started
            + shared
                .settings()
                .watch_limit
                .map_or(asked, |l| l.min(asked))
    };
    let bookmarks = matches!(req.param("allowWatchBookmarks"), Some("true" | "1"));
    // Read on every turn: a changed interval applies to watches already open.
    let interval = || {
        bookmarks
            .then(|| shared.settings().bookmark_interval)
            .flatten()
    };
    let mut last_bookmark = Instant::now();
    let generation = shared.generation.load(Ordering::SeqCst);
    let mut out = Chunked::start(stream)?;
    let mut store = shared.store();
    let (mut pending, mut seen) = match req.param("resourceVersion") {
        None | Some("") | Some("0") => (
            store.current_as_added(kind, namespace),
            store.resource_version(),
        ),
        Some(text) => {
            let rv: u64 = text.parse().unwrap_or(0);
            match store.changes_after(kind, namespace, rv) {
                Ok(changes) => (changes, rv),
                Err(e) => {
                    drop(store);
                    out.line(&gone(e))?;
                    return out.finish();
                }
            }
        }
    };
    loop {
        if let Some(last) = pending.last() {
            seen = seen.max(last.rv);
        }
        let now_rv = store.resource_version();
        drop(store);
        for c in pending.drain(..) {
            out.line(&event(&c))?;
        }
        if interval().is_some_and(|every| last_bookmark.elapsed() >= every) {
            // Nothing of this kind changed up to the store's version: a client may
            // resume from there.
            out.line(&bookmark(kind, now_rv))?;
            seen = seen.max(now_rv);
            last_bookmark = Instant::now();
        }
        if shared.shutdown.load(Ordering::SeqCst) || Instant::now() >= deadline() {
            return out.finish();
        }
        store = shared.store();
        store = shared
            .changed
            .wait_timeout(store, POLL)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        if shared.generation.load(Ordering::SeqCst) != generation {
            // Ended without the closing chunk: the connection just goes away.
            return Ok(());
        }
        match store.changes_after(kind, namespace, seen) {
            Ok(changes) => pending = changes,
            Err(e) => {
                // Compacted while this watch was behind: the client must relist.
                drop(store);
                out.line(&gone(e))?;
                return out.finish();
            }
        }
    }
}

//! List, then watch from the list's resourceVersion, for ever: the loop behind every
//! informer (client-go's reflector), for any resource kind, with one log line for each
//! thing an operator should know about.
//!
//! How it follows the API conventions ("Efficient detection of changes" and "Watch
//! bookmarks" in the Kubernetes API concepts):
//! - A list is read in pages of [`PAGE`] (`limit`/`continue`); a continuation that
//!   expired (410) starts the list again.
//! - The watch resumes from the last resourceVersion seen, of an object or of a BOOKMARK
//!   (asked for with `allowWatchBookmarks`), so a watch that ends — at its
//!   `timeoutSeconds`, early at a proxy, or because the server restarted — costs no relist.
//! - A 410 Gone (an ERROR event, or the watch request itself) means that resourceVersion
//!   is no longer in the server's history: list again, and hand the full set to the caller,
//!   which diffs it against what it had.
//! - Failures are retried with backoff (200 ms doubling to 30 s), or after the server's
//!   `retryAfterSeconds`; 429/5xx responses with `Retry-After` are retried below this, by
//!   [`super::retry`]. An outage is logged when it starts, when its cause changes and when
//!   it ends, not once per attempt.
//!
//! kube-rs's `runtime::watcher` implements the same protocol, but reports watch ends,
//! bookmarks, relists and retries only as `tracing` debug events and backs off on its own
//! schedule; flanneld must say what happened, so it drives `Api::list`/`Api::watch` itself.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// Items per list page (client-go's pager default).
pub const PAGE: u32 = 500;
/// `timeoutSeconds` of each watch (kube-rs's and client-go's choice, under the server's
/// minimum request timeout).
pub const WATCH_TIMEOUT: u32 = 290;
const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A watch that ends sooner than this is retried after a backoff, not at once, so a server
/// that cuts every watch short is not hammered.
const SHORT_WATCH: Duration = Duration::from_secs(1);

/// What the caller learns.
#[derive(Debug)]
pub enum Update<K> {
    /// The full current set (the first list, and every relist after a 410).
    Listed(Vec<K>),
    Applied(K),
    Deleted(K),
}

struct Open<K> {
    stream: BoxStream<'static, kube::Result<WatchEvent<K>>>,
    opened: Instant,
    from: String,
}

struct Outage {
    since: Instant,
    failures: u32,
    cause: String,
}

/// One resource's list + watch; call [`ListWatch::next`] in a loop.
pub struct ListWatch<K> {
    api: Api<K>,
    /// Names the loop in logs, e.g. `node watch`.
    label: &'static str,
    rv: Option<String>,
    watch: Option<Open<K>>,
    outage: Option<Outage>,
    delay: Duration,
}

/// A kube-rs error in one line: the API status, or the innermost cause of a transport error
/// (`Connection refused (os error 111)` rather than a chain of wrappers).
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let mut text = format!("{} {}", s.code, s.reason);
            if !s.message.is_empty() {
                text.push_str(": ");
                text.push_str(s.message.trim());
            }
            text
        }
        other => {
            let mut source: &dyn std::error::Error = other;
            while let Some(inner) = source.source() {
                source = inner;
            }
            source.to_string()
        }
    }
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 410)
}

/// The server's own hint, from a Status' `details.retryAfterSeconds`.
fn retry_hint(e: &kube::Error) -> Option<Duration> {
    match e {
        kube::Error::Api(s) => s
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s))),
        _ => None,
    }
}

impl<K> ListWatch<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    pub fn new(api: Api<K>, label: &'static str) -> ListWatch<K> {
        ListWatch {
            api,
            label,
            rv: None,
            watch: None,
            outage: None,
            delay: FIRST_DELAY,
        }
    }

    /// The resourceVersion the next watch resumes from (`None`: a list comes first).
    pub fn resource_version(&self) -> Option<&str> {
        self.rv.as_deref()
    }

    /// The next update; retries internally for as long as it takes.
    pub async fn next(&mut self) -> Update<K> {
        loop {
            let Some(rv) = self.rv.clone() else {
                match list(&self.api, self.label).await {
                    Ok((items, rv)) => {
                        self.reachable();
                        log::debug!(
                            "{}: listed {} at resourceVersion {rv}",
                            self.label,
                            items.len()
                        );
                        self.rv = Some(rv);
                        return Update::Listed(items);
                    }
                    Err(e) => {
                        self.failed("listing", &e).await;
                        continue;
                    }
                }
            };
            let Some(open) = self.watch.as_mut() else {
                let params = WatchParams::default().timeout(WATCH_TIMEOUT);
                match self.api.watch(&params, &rv).await {
                    Ok(stream) => {
                        self.reachable();
                        self.watch = Some(Open {
                            stream: stream.boxed(),
                            opened: Instant::now(),
                            from: rv,
                        });
                    }
                    Err(e) if is_gone(&e) => self.expired(&rv, &describe(&e)),
                    Err(e) => self.failed("watching", &e).await,
                }
                continue;
            };
            match open.stream.next().await {
                Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                    self.seen(&obj);
                    return Update::Applied(obj);
                }
                Some(Ok(WatchEvent::Deleted(obj))) => {
                    self.seen(&obj);
                    return Update::Deleted(obj);
                }
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    log::debug!(
                        "{}: bookmark at resourceVersion {}",
                        self.label,
                        b.metadata.resource_version
                    );
                    self.rv = Some(b.metadata.resource_version);
                }
                Some(Ok(WatchEvent::Error(s))) if s.code == 410 => {
                    let from = open.from.clone();
                    self.expired(&from, &describe(&kube::Error::Api(s)));
                }
                Some(Ok(WatchEvent::Error(s))) => {
                    self.watch = None;
                    self.failed("watching", &kube::Error::Api(s)).await;
                }
                Some(Err(e)) => {
                    let lasted = open.opened.elapsed();
                    self.watch = None;
                    log::info!(
                        "{}: the watch broke after {lasted:.1?}: {}; resuming from resourceVersion {rv}",
                        self.label,
                        describe(&e)
                    );
                    self.pause_if_short(lasted).await;
                }
                None => {
                    let lasted = open.opened.elapsed();
                    self.watch = None;
                    if lasted + SHORT_WATCH >= Duration::from_secs(WATCH_TIMEOUT.into()) {
                        log::debug!("{}: the watch ended at its timeout; resuming from resourceVersion {rv}", self.label);
                    } else {
                        log::info!(
                            "{}: the API server ended the watch after {lasted:.1?} (asked for {WATCH_TIMEOUT}s); resuming from resourceVersion {rv}",
                            self.label
                        );
                    }
                    self.pause_if_short(lasted).await;
                }
            }
        }
    }

    fn seen(&mut self, obj: &K) {
        if let Some(rv) = obj
            .meta()
            .resource_version
            .as_ref()
            .filter(|v| !v.is_empty())
        {
            self.rv = Some(rv.clone());
        }
    }

    fn expired(&mut self, rv: &str, why: &str) {
        log::info!(
            "{}: resourceVersion {rv} is no longer in the API server's history ({why}); listing again",
            self.label
        );
        self.rv = None;
        self.watch = None;
    }

    async fn pause_if_short(&mut self, lasted: Duration) {
        if lasted < SHORT_WATCH {
            tokio::time::sleep(self.delay).await;
            self.delay = (self.delay * 2).min(MAX_DELAY);
        }
    }

    /// Logs the failure (once per outage and cause) and waits before the next attempt.
    async fn failed(&mut self, doing: &str, e: &kube::Error) {
        let cause = describe(e);
        let wait = retry_hint(e).unwrap_or(self.delay);
        let how = if retry_hint(e).is_some() {
            "as the API server asks"
        } else {
            "backing off"
        };
        match &mut self.outage {
            Some(o) if o.cause == cause => {
                o.failures += 1;
                log::debug!("{}: {doing} failed again: {cause}", self.label);
            }
            outage => {
                log::warn!(
                    "{}: {doing} failed: {cause}; retrying in {wait:.1?} ({how}); routes stay as they are",
                    self.label
                );
                let since = outage.as_ref().map_or_else(Instant::now, |o| o.since);
                let failures = outage.as_ref().map_or(0, |o| o.failures) + 1;
                *outage = Some(Outage {
                    since,
                    failures,
                    cause,
                });
            }
        }
        crate::subnet::store::failures::store_error(
            crate::subnet::store::failures::StoreKind::Kube,
        );
        tokio::time::sleep(wait).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }

    fn reachable(&mut self) {
        if let Some(o) = self.outage.take() {
            log::info!(
                "{}: the API server answers again after {:.1?} ({} failed attempt(s))",
                self.label,
                o.since.elapsed(),
                o.failures
            );
        }
        self.delay = FIRST_DELAY;
    }
}

/// Every page of the list, and the list's resourceVersion. (A free function: the watch
/// stream in [`ListWatch`] is not `Sync`, so no `&ListWatch` may be held across an await.)
async fn list<K>(api: &Api<K>, label: &str) -> kube::Result<(Vec<K>, String)>
where
    K: Clone + Debug + DeserializeOwned,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = match api.list(&params).await {
            Err(e) if token.is_some() && is_gone(&e) => {
                log::info!(
                    "{label}: the list's continuation expired ({}); listing from the start",
                    describe(&e)
                );
                items.clear();
                token = None;
                continue;
            }
            other => other?,
        };
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok((items, page.metadata.resource_version.unwrap_or_default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn errors_read_as_one_line_with_the_servers_hint() {
        // As the server sends it (decoded from its JSON, like the client does).
        let s: Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server is currently unable to handle the request",
            "reason": "ServiceUnavailable",
            "details": {"kind": "nodes", "retryAfterSeconds": 2},
            "code": 503,
        }))
        .unwrap();
        let e = kube::Error::Api(s.boxed());
        assert_eq!(
            describe(&e),
            "503 ServiceUnavailable: the server is currently unable to handle the request"
        );
        assert_eq!(retry_hint(&e), Some(Duration::from_secs(2)));
        assert!(!is_gone(&e));
        let gone = kube::Error::Api(
            Status::failure("too old resource version: 3 (9)", "Expired")
                .with_code(410)
                .boxed(),
        );
        assert!(is_gone(&gone));
        assert_eq!(retry_hint(&gone), None);
    }
}

//! Following the lease records: a snapshot, then a watch from the snapshot's revision.
//!
//! etcd watch streams neither reconnect nor resume by themselves. This loop does both: after
//! an error it re-watches from the revision after the last one it delivered (backing off
//! 100 ms → 5 s), and when that revision was compacted away it takes a new snapshot, which the
//! consumer diffs against what it knows (so nothing deleted meanwhile is missed).

use std::time::{Duration, SystemTime};

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;

use super::{decode_record, Registry};
use crate::stop::{sleep_or_stop, Stop};
use crate::subnet::parse_subnet_key;
use crate::subnet::peers::Change;
use crate::subnet::store::failures::{count_etcd_error, store_error, StoreKind};
use crate::subnet::store::WatchMsg;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_START;
    }
}

/// Why one watch stream ended.
enum StreamEnd {
    /// The consumer or the daemon is gone.
    Stop,
    /// The start revision is no longer available: snapshot again.
    Compacted,
    /// Transient; resume from the last revision.
    Broken(String),
}

/// Runs until `stop` turns true or the receiver of `tx` is dropped.
pub async fn watch_subnets(reg: Registry, tx: mpsc::Sender<WatchMsg>, stop: Stop) {
    watch_subnets_from(reg, None, tx, stop).await
}

/// [`watch_subnets`] resuming at revision `from` (the one after the last change the caller
/// has seen) instead of starting with a snapshot; a snapshot still follows if `from` has
/// been compacted away.
pub async fn watch_subnets_from(
    reg: Registry,
    from: Option<i64>,
    tx: mpsc::Sender<WatchMsg>,
    mut stop: Stop,
) {
    let mut backoff = Backoff(BACKOFF_START);
    // The next revision to watch from; None means a snapshot is needed first.
    let mut next_rev: Option<i64> = from;
    // Set by a broken stream until its successor is confirmed, so an outage is logged both
    // when it starts and when it ends.
    let mut interrupted = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let rev = match next_rev {
            Some(rev) => rev,
            None => match reg.list_subnets().await {
                Ok((leases, rev)) => {
                    if tx.send(WatchMsg::Snapshot(leases)).await.is_err() {
                        return;
                    }
                    next_rev = Some(rev + 1);
                    rev + 1
                }
                Err(e) => {
                    log::warn!("failed to list subnet leases: {e}");
                    count_etcd_error(&e);
                    interrupted = true;
                    if sleep_or_stop(backoff.next(), &mut stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let resuming = std::mem::take(&mut interrupted);
        match follow(
            &reg,
            rev,
            resuming,
            &tx,
            &mut next_rev,
            &mut backoff,
            &mut stop,
        )
        .await
        {
            StreamEnd::Stop => return,
            StreamEnd::Compacted => {
                log::warn!("watch revision {rev} was compacted, re-listing subnet leases");
                next_rev = None;
            }
            StreamEnd::Broken(why) => {
                store_error(StoreKind::Etcd);
                log::warn!(
                    "subnet watch interrupted ({why}), resuming from revision {}",
                    next_rev.unwrap_or(rev)
                );
                interrupted = true;
                if sleep_or_stop(backoff.next(), &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// `resuming`: the previous stream broke; the creation of this one ends the outage.
async fn follow(
    reg: &Registry,
    from: i64,
    mut resuming: bool,
    tx: &mpsc::Sender<WatchMsg>,
    next_rev: &mut Option<i64>,
    backoff: &mut Backoff,
    stop: &mut Stop,
) -> StreamEnd {
    let mut wc = reg.client().watch_client();
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(from)
        .with_progress_notify();
    let mut stream = match wc.watch(reg.subnets_dir(), Some(opts)).await {
        Ok(s) => s,
        Err(e) => return StreamEnd::Broken(e.to_string()),
    };
    // The call returning only means the request went out; the server's creation response
    // is what shows etcd is serving again.
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = stop.changed() => return StreamEnd::Stop,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => return StreamEnd::Broken("stream closed by server".into()),
            Err(e) => {
                let text = e.to_string();
                if text.contains("compacted") {
                    return StreamEnd::Compacted;
                }
                return StreamEnd::Broken(text);
            }
        };
        if resp.compact_revision() != 0 {
            return StreamEnd::Compacted;
        }
        if resuming && resp.created() && !resp.canceled() {
            log::info!("subnet watch re-established, resuming from revision {from}");
            resuming = false;
        }
        if resp.canceled() {
            let reason = resp.cancel_reason().to_owned();
            if reason.contains("compacted") {
                return StreamEnd::Compacted;
            }
            return StreamEnd::Broken(format!("watch canceled: {reason}"));
        }
        let mut changes = Vec::with_capacity(resp.events().len());
        let mut last = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            last = Some(kv.mod_revision());
            match ev.event_type() {
                EventType::Put => {
                    if let Some(lease) = decode_record(kv, SystemTime::now()) {
                        changes.push(Change::Put(lease));
                    }
                }
                EventType::Delete => {
                    let key = String::from_utf8_lossy(kv.key());
                    match parse_subnet_key(&key) {
                        Some((subnet, ipv6_subnet)) => changes.push(Change::Delete {
                            subnet,
                            ipv6_subnet,
                        }),
                        None => log::warn!("Ignoring bad subnet node {key}"),
                    }
                }
            }
        }
        // Events of one revision always arrive in one response, so resuming after the last
        // event's revision neither repeats nor skips anything. A progress notification (no
        // events, sent only to a watcher that has caught up) moves the mark to the store's
        // revision; the creation response does not: older events may still be on their way.
        let advanced = match last {
            Some(rev) => rev + 1,
            None if resp.created() => from,
            None => resp.header().map_or(from, |h| h.revision() + 1),
        };
        if next_rev.map_or(true, |r| advanced > r) {
            *next_rev = Some(advanced);
        }
        if !changes.is_empty() && tx.send(WatchMsg::Changes(changes)).await.is_err() {
            return StreamEnd::Stop;
        }
        backoff.reset();
    }
}

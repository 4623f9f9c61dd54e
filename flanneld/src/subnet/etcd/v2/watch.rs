//! Following the v2 lease records: a listing, then one long poll per event with
//! `waitIndex` just past the last index seen.
//!
//! etcd keeps only the last 1000 events; a watcher that falls behind gets error 401 ("event
//! index cleared") and starts over with a listing, which the consumer diffs against what it
//! knows. A lost connection does the same, since expiries may have happened meanwhile.

use std::time::Duration;

use tokio::sync::mpsc;

use super::wire::{self, code, EventKind, NodeError, Response};
use super::V2Registry;
use crate::stop::{sleep_or_stop, Stop};
use crate::subnet::parse_subnet_key;
use crate::subnet::peers::Change;
use crate::subnet::store::WatchMsg;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A long poll that saw nothing is re-issued after this long, so a peer that vanished
/// without closing the connection cannot hold the watch forever.
const POLL: Duration = Duration::from_secs(60);

/// What one watch answer means for the consumer.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Deliver these changes (possibly none) and wait from `next`.
    Changes { changes: Vec<Change>, next: u64 },
    /// The whole directory changed at once (deleted or replaced): list again.
    Relist,
}

/// Interprets one event of the subnets directory watch.
pub(crate) fn step(dir: &str, resp: Response) -> Step {
    let Some(node) = resp.node else {
        return Step::Relist;
    };
    let next = node.modified_index + 1;
    let Some(kind) = wire::event_kind(&resp.action) else {
        return Step::Changes {
            changes: Vec::new(),
            next,
        };
    };
    if node.dir || node.key.trim_end_matches('/') == dir.trim_end_matches('/') {
        return Step::Relist;
    }
    let changes = match kind {
        EventKind::Written => match wire::lease_from_node(&node) {
            Ok(lease) => vec![Change::Put(lease)],
            Err(e @ NodeError::BadKey(_)) => {
                log::warn!("{e}");
                Vec::new()
            }
            Err(NodeError::BadValue { key, source }) => {
                log::warn!("Ignoring lease {key}: {source}");
                Vec::new()
            }
        },
        EventKind::Gone => match parse_subnet_key(&node.key) {
            Some((subnet, ipv6_subnet)) => vec![Change::Delete {
                subnet,
                ipv6_subnet,
            }],
            None => {
                log::warn!("Ignoring bad subnet node {}", node.key);
                Vec::new()
            }
        },
    };
    Step::Changes { changes, next }
}

/// Runs until `stop` turns true or the receiver of `tx` is dropped. The first message is a
/// snapshot, as with the v3 watch.
pub async fn watch_subnets(reg: V2Registry, tx: mpsc::Sender<WatchMsg>, mut stop: Stop) {
    let dir = reg.subnets_dir();
    let mut backoff = BACKOFF_START;
    // The index to wait from; None means a listing is needed first.
    let mut next: Option<u64> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let from = match next {
            Some(index) => index,
            None => match reg.list_subnets().await {
                Ok((leases, index)) => {
                    if tx.send(WatchMsg::Snapshot(leases)).await.is_err() {
                        return;
                    }
                    index + 1
                }
                Err(e) => {
                    log::warn!("failed to list subnet leases: {e}");
                    if sleep_or_stop(backoff, &mut stop).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        next = Some(from);
        let answer = tokio::select! {
            a = reg.wait(from, POLL) => a,
            _ = stop.changed() => return,
        };
        match answer {
            Ok(None) => {}
            Ok(Some(resp)) => {
                backoff = BACKOFF_START;
                match step(&dir, resp) {
                    Step::Changes { changes, next: n } => {
                        next = Some(n);
                        if !changes.is_empty() && tx.send(WatchMsg::Changes(changes)).await.is_err()
                        {
                            return;
                        }
                    }
                    Step::Relist => {
                        log::info!("subnet directory {dir} replaced as a whole, re-listing");
                        next = None;
                    }
                }
            }
            Err(e) if e.code() == Some(code::EVENT_INDEX_CLEARED) => {
                log::warn!("watch index {from} is no longer in etcd's event history, re-listing subnet leases");
                next = None;
            }
            Err(e) => {
                log::warn!("subnet watch interrupted ({e}), re-listing once etcd answers");
                next = None;
                if sleep_or_stop(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

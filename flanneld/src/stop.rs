//! The daemon's stop request (SIGTERM/SIGINT) as a watch channel every task can wait on, and
//! the one way a retry loop waits: a pause that a stop cuts short.

use std::time::Duration;

use tokio::sync::watch;

/// Turns `true` once a stop is requested; a dropped sender counts as a stop too.
pub type Stop = watch::Receiver<bool>;

/// Returns once a stop is requested (or its sender is gone).
pub async fn stopped(stop: &mut Stop) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Sleeps `d` unless a stop arrives first; returns true on stop.
pub async fn sleep_or_stop(d: Duration, stop: &mut Stop) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stopped(stop) => true,
    }
}

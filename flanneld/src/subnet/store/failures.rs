//! Failed requests to the subnet store (etcd or the Kubernetes API server), tallied once per
//! process where the store clients live: deep in watch and acquisition loops that carry no
//! daemon state. The metrics read the tally at scrape time; nothing here knows about them.

use std::sync::atomic::{AtomicU64, Ordering};

use super::SubnetError;

/// Which store a failed request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    Etcd,
    Kube,
}

impl StoreKind {
    pub const ALL: [StoreKind; 2] = [StoreKind::Etcd, StoreKind::Kube];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Etcd => "etcd",
            StoreKind::Kube => "kube",
        }
    }
}

static FAILED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Counts one failed request to `store`.
pub fn store_error(store: StoreKind) {
    FAILED[store as usize].fetch_add(1, Ordering::Relaxed);
}

/// Failed requests to `store` so far.
pub fn store_errors(store: StoreKind) -> u64 {
    FAILED[store as usize].load(Ordering::Relaxed)
}

/// Errors from the etcd clients, told apart from answers the store gave (`out of subnets`,
/// a lost race, a missing config, a malformed record are the store working).
pub trait StoreFailure {
    fn is_store_failure(&self) -> bool;
}

impl StoreFailure for SubnetError {
    fn is_store_failure(&self) -> bool {
        matches!(
            self,
            SubnetError::Etcd(_) | SubnetError::Timeout(_) | SubnetError::Task(_)
        )
    }
}

/// Counts `e` when it is etcd failing.
pub fn count_etcd_error(e: &impl StoreFailure) {
    if e.is_store_failure() {
        store_error(StoreKind::Etcd);
    }
}

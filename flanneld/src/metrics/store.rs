//! Failed calls to the subnet store (etcd or the Kubernetes API server). They are counted where
//! the store clients live, deep in watch and acquisition loops that carry no daemon state, so
//! the counter is one per process rather than one per [`super::Metrics`].

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::subnet::etcd::SubnetError;
use crate::subnet::etcd_store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    Etcd,
    Kube,
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Etcd => "etcd",
            Store::Kube => "kube",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: &'static str,
}

pub(super) static STORE_ERRORS: LazyLock<Family<StoreLabels, Counter>> =
    LazyLock::new(Family::default);

/// Counts one failed request to `store`.
pub fn store_error(store: Store) {
    STORE_ERRORS
        .get_or_create(&StoreLabels {
            store: store.as_str(),
        })
        .inc();
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

impl StoreFailure for StoreError {
    fn is_store_failure(&self) -> bool {
        match self {
            StoreError::ConfigMissing { .. } => false,
            StoreError::V3(e) => e.is_store_failure(),
            StoreError::V2(_) => true,
        }
    }
}

/// Counts `e` when it is etcd failing.
pub fn count_etcd_error(e: &impl StoreFailure) {
    if e.is_store_failure() {
        store_error(Store::Etcd);
    }
}

/// Failed requests to `store` so far.
pub fn store_errors(store: Store) -> u64 {
    STORE_ERRORS
        .get(&StoreLabels {
            store: store.as_str(),
        })
        .map_or(0, |c| c.get())
}

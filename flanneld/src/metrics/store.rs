//! `flannel_store_errors_total{store}`: the subnet layer's tally of failed store requests
//! ([`crate::subnet::store::failures`]), read at scrape time. Both series exist from the
//! start, so rate() and alerts see them before the first failure.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::datapath::labelled_counters;
use crate::subnet::store::failures::{store_errors, StoreKind};

#[derive(Debug)]
pub(super) struct StoreErrorsCollector;

impl Collector for StoreErrorsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        labelled_counters(
            &mut encoder,
            "flannel_store_errors",
            "Failed requests to the subnet store (etcd or the Kubernetes API server)",
            "store",
            StoreKind::ALL.map(|s| (s.as_str(), store_errors(s))),
        )
    }
}

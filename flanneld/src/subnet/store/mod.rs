//! What every subnet store shares, below all of them (as upstream keeps `pkg/lease` apart
//! from `pkg/subnet/{etcd,kube}`): the errors, how to reach etcd, the key layout, what
//! acquisition reads of the records, what a watch delivers, and the store traits. No store
//! module imports another; each implements [`LeaseStore`] / [`SubnetStore`] directly.

pub mod failures;
mod records;

pub use records::{Listing, Owner, Slot};

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};
use tokio::sync::mpsc;

use super::peers::Change;
use super::{Lease, LeaseAttrs};
use crate::stop::Stop;

/// Upstream's message for a missing `<prefix>/config`, word for word.
pub const NOT_FOUND_V3: &str =
    "flannel config not found in etcd store. Did you create your config using etcdv3 API?";

#[derive(Debug, thiserror::Error)]
pub enum SubnetError {
    #[error("{NOT_FOUND_V3}")]
    ConfigNotFound,
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd request timed out after {0:?}")]
    Timeout(Duration),
    #[error("our lease record is gone or was overwritten")]
    LeaseLost,
    #[error("subnet already exists")]
    AlreadyExists,
    /// Only the claim on the IPv6 subnet stood in the way: `holder` is the record key it
    /// names, written at `revision` (a stale claim outlives a record deleted by hand).
    #[error("IPv6 subnet {ipv6_subnet} is claimed by {holder}")]
    Claimed {
        ipv6_subnet: Ipv6Net,
        holder: String,
        revision: i64,
    },
    #[error("out of subnets")]
    OutOfSubnets,
    #[error("max retries reached trying to acquire a subnet")]
    MaxRetries,
    #[error("reading {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("etcd request task failed: {0}")]
    Task(String),
    /// The etcd v2 client's own error, boxed so this vocabulary needs no store module.
    #[error(transparent)]
    V2(Box<dyn std::error::Error + Send + Sync>),
}

/// How to reach etcd (the `--etcd-*` flags).
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub keyfile: String,
    pub certfile: String,
    pub cafile: String,
    pub username: String,
    pub password: String,
}

/// Go's `path.Join(prefix, elem)`: joined with `/` and cleaned (`.`/`..`/double slashes).
pub fn join_key(prefix: &str, elem: &str) -> String {
    let joined = format!("{prefix}/{elem}");
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

/// What a watch delivers, in store order.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMsg {
    /// Every lease record (the first message, and again after a compaction or a relist).
    Snapshot(Vec<Lease>),
    Changes(Vec<Change>),
}

/// The record operations the shared acquisition logic ([`crate::subnet::acquire`]) needs;
/// the same for both etcd APIs (`AlreadyExists` for a lost create race, `LeaseLost` for a
/// failed renewal).
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// The records as acquisition reads them: every slot, attributes decoded only where
    /// `owner` could have written them. With `since` (a [`Listing::revision`]), a store that
    /// can returns only the records written after it, marked `changes_only`.
    async fn list_slots(&self, owner: &Owner, since: Option<i64>) -> Result<Listing, SubnetError>;
    /// How many records the store holds now, if it can tell without reading them.
    async fn count_records(&self) -> Result<Option<usize>, SubnetError>;
    /// Create-only, and only while no record or claim holds either family's subnet
    /// ([`crate::subnet::claims`]): `AlreadyExists` when a record does, `Claimed` when only a
    /// claim does. `replacing` takes over a claim that names that (vanished) record.
    async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        replacing: Option<&str>,
    ) -> Result<SystemTime, SubnetError>;
    /// Unconditional overwrite with a fresh lifetime, or, with `reservation`, with none (the
    /// record stays a reservation). Returns the expiration (`None` for a reservation).
    async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError>;
    /// Whether a reservation its node reuses stays one (never renewed), as upstream's code for
    /// this keyspace has it: flannel ≤ v0.17 (v2) keeps it; flannel's etcd v3 code reads a
    /// record without a lease as expiring now and puts it on a 24 h lease (flannel-io#1329).
    fn keeps_reservations(&self) -> bool;
    async fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> Result<(), SubnetError>;
}

/// A keyspace the node loop runs on once the config was found there: the record operations,
/// plus renewal and the watch of every record.
#[async_trait]
pub trait SubnetStore: LeaseStore {
    /// How long a record lives unless renewed.
    fn ttl(&self) -> Duration;
    /// Writes `next` over our record with a fresh lifetime (none for a `reservation`) while
    /// it still holds exactly `current` (`LeaseLost` otherwise): a renewal when the two are
    /// equal, a republication when our address changed.
    async fn rewrite_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        current: &LeaseAttrs,
        next: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError>;
    /// Follows the lease records in a task of its own until `stop` or until `tx` closes.
    fn spawn_watch(&self, tx: mpsc::Sender<WatchMsg>, stop: Stop);
}

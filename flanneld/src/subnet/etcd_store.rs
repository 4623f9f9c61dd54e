//! One face for etcd's two keyspaces: which API holds the config (`--etcd-api`), and the
//! lease operations the shared acquisition logic and the node loop need from either.

use std::future::Future;
use std::time::{Duration, SystemTime};

use ipnet::{Ipv4Net, Ipv6Net};
use tokio::sync::{mpsc, watch};

use super::etcd::{
    join_key, watch_subnets, EtcdConfig, Listing, Owner, Registry, SubnetError, WatchMsg,
    NOT_FOUND_V3,
};
use super::etcd_v2::{self, V2Error, V2Registry};
use super::LeaseAttrs;

/// The config an operator most likely wants, shown in the "config not found" error.
const EXAMPLE_CONFIG: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

/// `--etcd-api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EtcdApi {
    /// v3 when its config key exists, else v2 when the v2 keyspace has a config.
    #[default]
    Auto,
    V2,
    V3,
}

impl std::str::FromStr for EtcdApi {
    type Err = String;

    fn from_str(s: &str) -> Result<EtcdApi, String> {
        match s {
            "auto" => Ok(EtcdApi::Auto),
            "v2" => Ok(EtcdApi::V2),
            "v3" => Ok(EtcdApi::V3),
            other => Err(other.to_owned()),
        }
    }
}

/// What acquisition needs from a store. Errors are [`SubnetError`]s with the same meaning in
/// both APIs (`AlreadyExists` for a lost create race, `LeaseLost` for a failed renewal).
pub trait LeaseStore {
    /// The records as acquisition reads them: every slot, attributes decoded only where
    /// `owner` could have written them. With `since` (a [`Listing::revision`]), a store that
    /// can returns only the records written after it, marked `changes_only`.
    fn list_slots(
        &self,
        owner: &Owner,
        since: Option<i64>,
    ) -> impl Future<Output = Result<Listing, SubnetError>> + Send;
    /// How many records the store holds now, if it can tell without reading them.
    fn count_records(&self) -> impl Future<Output = Result<Option<usize>, SubnetError>> + Send;
    /// Create-only, and only while no record or claim holds either family's subnet
    /// ([`crate::subnet::claims`]): `AlreadyExists` when a record does, `Claimed` when only a
    /// claim does. `replacing` takes over a claim that names that (vanished) record.
    fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        replacing: Option<&str>,
    ) -> impl Future<Output = Result<SystemTime, SubnetError>> + Send;
    /// Unconditional overwrite with a fresh lifetime, or, with `reservation`, with none (the
    /// record stays a reservation). Returns the expiration (`None` for a reservation).
    fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        reservation: bool,
    ) -> impl Future<Output = Result<Option<SystemTime>, SubnetError>> + Send;
    /// Whether a reservation its node reuses stays one (never renewed), as upstream's code for
    /// this keyspace has it: flannel ≤ v0.17 (v2) keeps it; flannel's etcd v3 code reads a
    /// record without a lease as expiring now and puts it on a 24 h lease (flannel-io#1329).
    fn keeps_reservations(&self) -> bool;
    fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> impl Future<Output = Result<(), SubnetError>> + Send;
}

/// Both registries have the trait's operations as inherent methods of the same signatures;
/// the trait impls only forward to them.
macro_rules! forward_lease_store {
    ($registry:ty) => {
        impl LeaseStore for $registry {
            async fn list_slots(
                &self,
                owner: &Owner,
                since: Option<i64>,
            ) -> Result<Listing, SubnetError> {
                <$registry>::list_slots(self, owner, since).await
            }
            async fn count_records(&self) -> Result<Option<usize>, SubnetError> {
                <$registry>::count_records(self).await
            }
            async fn create_subnet(
                &self,
                subnet: Ipv4Net,
                ipv6_subnet: Option<Ipv6Net>,
                attrs: &LeaseAttrs,
                replacing: Option<&str>,
            ) -> Result<SystemTime, SubnetError> {
                <$registry>::create_subnet(self, subnet, ipv6_subnet, attrs, replacing).await
            }
            async fn update_subnet(
                &self,
                subnet: Ipv4Net,
                ipv6_subnet: Option<Ipv6Net>,
                attrs: &LeaseAttrs,
                reservation: bool,
            ) -> Result<Option<SystemTime>, SubnetError> {
                <$registry>::update_subnet(self, subnet, ipv6_subnet, attrs, reservation).await
            }
            fn keeps_reservations(&self) -> bool {
                <$registry>::KEEPS_RESERVATIONS
            }
            async fn delete_subnet(
                &self,
                subnet: Ipv4Net,
                ipv6_subnet: Option<Ipv6Net>,
            ) -> Result<(), SubnetError> {
                <$registry>::delete_subnet(self, subnet, ipv6_subnet).await
            }
        }
    };
}

forward_lease_store!(Registry);
forward_lease_store!(V2Registry);

/// The keyspace this node uses for everything once the config was found.
// One per process, cloned into a few tasks: boxing the v3 client would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Store {
    V3(Registry),
    V2(V2Registry),
}

impl Store {
    pub fn api(&self) -> EtcdApi {
        match self {
            Store::V3(_) => EtcdApi::V3,
            Store::V2(_) => EtcdApi::V2,
        }
    }

    pub fn ttl(&self) -> Duration {
        match self {
            Store::V3(r) => r.ttl(),
            Store::V2(r) => r.ttl(),
        }
    }

    /// Writes `next` over our record with a fresh lifetime (none for a `reservation`) while
    /// it still holds exactly `current` (`LeaseLost` otherwise): a renewal when the two are
    /// equal, a republication when our address changed.
    pub async fn rewrite_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        current: &LeaseAttrs,
        next: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        match self {
            Store::V3(r) => {
                r.rewrite_subnet(subnet, ipv6_subnet, current, next, reservation)
                    .await
            }
            Store::V2(r) => {
                r.rewrite_subnet(subnet, ipv6_subnet, current, next, reservation)
                    .await
            }
        }
    }

    /// Follows the lease records in a task of its own until `stop` or until `tx` closes.
    pub fn spawn_watch(&self, tx: mpsc::Sender<WatchMsg>, stop: watch::Receiver<bool>) {
        match self {
            Store::V3(r) => drop(tokio::spawn(watch_subnets(r.clone(), tx, stop))),
            Store::V2(r) => drop(tokio::spawn(etcd_v2::watch_subnets(r.clone(), tx, stop))),
        }
    }
}

impl LeaseStore for Store {
    async fn list_slots(&self, owner: &Owner, since: Option<i64>) -> Result<Listing, SubnetError> {
        match self {
            Store::V3(r) => Registry::list_slots(r, owner, since).await,
            Store::V2(r) => V2Registry::list_slots(r, owner, since).await,
        }
    }
    async fn count_records(&self) -> Result<Option<usize>, SubnetError> {
        match self {
            Store::V3(r) => Registry::count_records(r).await,
            Store::V2(r) => V2Registry::count_records(r).await,
        }
    }
    async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        replacing: Option<&str>,
    ) -> Result<SystemTime, SubnetError> {
        match self {
            Store::V3(r) => r.create_subnet(subnet, ipv6_subnet, attrs, replacing).await,
            Store::V2(r) => r.create_subnet(subnet, ipv6_subnet, attrs, replacing).await,
        }
    }
    async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        match self {
            Store::V3(r) => {
                r.update_subnet(subnet, ipv6_subnet, attrs, reservation)
                    .await
            }
            Store::V2(r) => {
                r.update_subnet(subnet, ipv6_subnet, attrs, reservation)
                    .await
            }
        }
    }
    fn keeps_reservations(&self) -> bool {
        match self {
            Store::V3(_) => Registry::KEEPS_RESERVATIONS,
            Store::V2(_) => V2Registry::KEEPS_RESERVATIONS,
        }
    }
    async fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> Result<(), SubnetError> {
        match self {
            Store::V3(r) => Registry::delete_subnet(r, subnet, ipv6_subnet).await,
            Store::V2(r) => V2Registry::delete_subnet(r, subnet, ipv6_subnet).await,
        }
    }
}

/// Why the config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}", missing_message(.key, .looked))]
    ConfigMissing {
        key: String,
        looked: Vec<(EtcdApi, Lookup)>,
    },
    #[error(transparent)]
    V3(SubnetError),
    #[error(transparent)]
    V2(V2Error),
}

impl StoreError {
    /// Errors retrying cannot fix (bad flags or certificate files).
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::V3(SubnetError::TlsFile { .. }) => true,
            StoreError::V2(e) => e.is_permanent(),
            _ => false,
        }
    }
}

/// What one API said about the config key.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Absent,
    /// The v2 API is not served at all, or failed in a way worth showing.
    Failed(String),
}

fn missing_message(key: &str, looked: &[(EtcdApi, Lookup)]) -> String {
    let parts: Vec<String> = looked
        .iter()
        .map(|(api, lookup)| {
            let name = match api {
                EtcdApi::V2 => "v2",
                _ => "v3",
            };
            match lookup {
                Lookup::Absent => format!("{key} through the etcd {name} API (not found)"),
                Lookup::Failed(why) => format!("{key} through the etcd {name} API ({why})"),
            }
        })
        .collect();
    let create = match looked.first() {
        Some((EtcdApi::V2, _)) => format!("ETCDCTL_API=2 etcdctl set {key} '{EXAMPLE_CONFIG}'"),
        _ => format!("ETCDCTL_API=3 etcdctl put {key} '{EXAMPLE_CONFIG}'"),
    };
    // Upstream's sentence first: it is what operators and their alerting search logs for.
    let upstream = match looked.first() {
        Some((EtcdApi::V2, _)) => "flannel config not found in etcd store.",
        _ => NOT_FOUND_V3,
    };
    format!(
        "{upstream} Looked for {}. Create it with: {create}",
        parts.join(" and for ")
    )
}

/// The clients `--etcd-api` calls for, until the config tells which keyspace is in use.
pub struct StoreSelector {
    api: EtcdApi,
    key: String,
    v3: Option<Registry>,
    v2: Option<V2Registry>,
}

impl StoreSelector {
    /// Builds the client(s); in auto mode both, since the config decides.
    pub async fn connect(
        cfg: &EtcdConfig,
        api: EtcdApi,
        ttl: Duration,
    ) -> Result<StoreSelector, StoreError> {
        let v3 = match api {
            EtcdApi::V2 => None,
            _ => Some(Registry::connect(cfg, ttl).await.map_err(StoreError::V3)?),
        };
        let v2 = match api {
            EtcdApi::V3 => None,
            _ => Some(V2Registry::connect(cfg, ttl).map_err(StoreError::V2)?),
        };
        Ok(StoreSelector {
            api,
            key: join_key(&cfg.prefix, "config"),
            v3,
            v2,
        })
    }

    /// Reads the raw network config and the store it came from. In auto mode v2 is asked
    /// only once v3 has answered that the key is absent: an unreachable v3 API is an outage
    /// to wait out, not a reason to switch keyspaces.
    pub async fn network_config(&self) -> Result<(Store, String), StoreError> {
        let mut looked = Vec::new();
        if let Some(v3) = &self.v3 {
            match v3.get_network_config().await {
                Ok(raw) => return Ok((Store::V3(v3.clone()), raw)),
                Err(SubnetError::ConfigNotFound) => looked.push((EtcdApi::V3, Lookup::Absent)),
                Err(e) => return Err(StoreError::V3(e)),
            }
        }
        if let Some(v2) = &self.v2 {
            match v2.get_network_config().await {
                Ok(Some(raw)) => {
                    if self.api == EtcdApi::Auto {
                        log::info!(
                            "{} is not in etcd's v3 keyspace but the v2 API has it: using the etcd v2 API for config, leases and the subnet watch",
                            self.key
                        );
                    }
                    return Ok((Store::V2(v2.clone()), raw));
                }
                Ok(None) => looked.push((EtcdApi::V2, Lookup::Absent)),
                Err(e @ V2Error::Http { .. }) if self.api == EtcdApi::Auto => {
                    looked.push((EtcdApi::V2, Lookup::Failed(e.to_string())));
                }
                Err(e) => return Err(StoreError::V2(e)),
            }
        }
        Err(StoreError::ConfigMissing {
            key: self.key.clone(),
            looked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/coreos.com/network/config";

    #[test]
    fn api_names_parse_exactly() {
        assert_eq!("auto".parse(), Ok(EtcdApi::Auto));
        assert_eq!("v2".parse(), Ok(EtcdApi::V2));
        assert_eq!("v3".parse(), Ok(EtcdApi::V3));
        assert_eq!("V3".parse::<EtcdApi>(), Err("V3".to_owned()));
        assert_eq!("".parse::<EtcdApi>(), Err(String::new()));
    }

    #[test]
    fn missing_config_in_auto_mode_names_both_apis_and_the_v3_command() {
        let err = StoreError::ConfigMissing {
            key: KEY.into(),
            looked: vec![(EtcdApi::V3, Lookup::Absent), (EtcdApi::V2, Lookup::Absent)],
        };
        assert_eq!(
            err.to_string(),
            "flannel config not found in etcd store. Did you create your config using etcdv3 API? \
             Looked for /coreos.com/network/config through the etcd v3 API (not found) and for /coreos.com/network/config through the etcd v2 \
             API (not found). Create it with: ETCDCTL_API=3 etcdctl put \
             /coreos.com/network/config '{\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}'"
        );
    }

    #[test]
    fn missing_config_says_when_v2_is_not_served() {
        let err = StoreError::ConfigMissing {
            key: KEY.into(),
            looked: vec![
                (EtcdApi::V3, Lookup::Absent),
                (
                    EtcdApi::V2,
                    Lookup::Failed("etcd at http://a:2379 does not serve the v2 API".into()),
                ),
            ],
        };
        assert!(err
            .to_string()
            .contains("through the etcd v2 API (etcd at http://a:2379 does not serve the v2 API)"));
    }

    #[test]
    fn missing_config_in_v2_mode_prints_the_v2_command() {
        let err = StoreError::ConfigMissing {
            key: "/x/config".into(),
            looked: vec![(EtcdApi::V2, Lookup::Absent)],
        };
        assert_eq!(
            err.to_string(),
            "flannel config not found in etcd store. Looked for /x/config through the etcd v2 API \
             (not found). Create it with: ETCDCTL_API=2 etcdctl set /x/config \
             '{\"Network\":\"10.244.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}'"
        );
    }

    #[test]
    fn only_flag_and_file_errors_are_permanent() {
        let file = StoreError::V2(V2Error::Tls("bad key".into()));
        assert!(file.is_permanent());
        assert!(!StoreError::V2(V2Error::Unreachable("x".into())).is_permanent());
        assert!(!StoreError::V3(SubnetError::ConfigNotFound).is_permanent());
    }
}

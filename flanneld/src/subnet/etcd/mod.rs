//! etcd's two keyspaces, each a [`SubnetStore`] of its own ([`v3`], [`v2`]), and which one
//! holds the network config (`--etcd-api`): the node loop then runs on that one alone.

pub mod v2;
pub mod v3;

use std::sync::Arc;
use std::time::Duration;

use super::store::failures::StoreFailure;
use super::store::{join_key, EtcdConfig, SubnetError, SubnetStore, NOT_FOUND_V3};
use v2::{V2Error, V2Registry};
use v3::Registry;

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

impl StoreFailure for StoreError {
    fn is_store_failure(&self) -> bool {
        match self {
            StoreError::ConfigMissing { .. } => false,
            StoreError::V3(e) => e.is_store_failure(),
            StoreError::V2(_) => true,
        }
    }
}

/// The keyspace that holds the config, and the store the node loop runs on from then on.
pub struct Found {
    pub api: EtcdApi,
    pub store: Arc<dyn SubnetStore>,
    /// The raw network config JSON.
    pub config: String,
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
    pub async fn network_config(&self) -> Result<Found, StoreError> {
        let mut looked = Vec::new();
        if let Some(v3) = &self.v3 {
            match v3.get_network_config().await {
                Ok(config) => {
                    return Ok(Found {
                        api: EtcdApi::V3,
                        store: Arc::new(v3.clone()),
                        config,
                    })
                }
                Err(SubnetError::ConfigNotFound) => looked.push((EtcdApi::V3, Lookup::Absent)),
                Err(e) => return Err(StoreError::V3(e)),
            }
        }
        if let Some(v2) = &self.v2 {
            match v2.get_network_config().await {
                Ok(Some(config)) => {
                    if self.api == EtcdApi::Auto {
                        log::info!(
                            "{} is not in etcd's v3 keyspace but the v2 API has it: using the etcd v2 API for config, leases and the subnet watch",
                            self.key
                        );
                    }
                    return Ok(Found {
                        api: EtcdApi::V2,
                        store: Arc::new(v2.clone()),
                        config,
                    });
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

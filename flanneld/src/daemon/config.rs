//! The network config from etcd: fetched, parsed and checked, and retried every second while
//! it is missing or invalid (upstream's `getConfig` loop), so a bad config is an operator
//! fix away from a running node rather than a crash loop.

use netconf::flannel::{FlannelConfigError, NetworkConfig};
use serde_json::Value;

use super::{sleep_or_stop, Stop, CONFIG_RETRY};
use std::sync::Arc;

use crate::state::{Phase, State};
use crate::subnet::etcd::StoreSelector;
use crate::subnet::store::failures::count_etcd_error;
use crate::subnet::store::SubnetStore;

/// The keys whose value must be an IPv4 and an IPv6 CIDR respectively.
const V4_NETWORK_KEY: &str = "Network";
const V6_NETWORK_KEY: &str = "IPv6Network";

/// Which key of the config `err` is about, spelled as the operator wrote it. Go's decoder
/// reports a bad address by its value only (`invalid CIDR address: 10.244.0.0/33`); with six
/// address fields the operator should not have to guess which one it was.
pub fn offending_field(raw: &str, err: &FlannelConfigError) -> Option<String> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(raw) else {
        return None;
    };
    let key_with_value = |v: &str| {
        obj.iter()
            .find(|(_, val)| val.as_str() == Some(v))
            .map(|(k, _)| k.clone())
    };
    // Go matches keys case-insensitively and the last match wins.
    let key_folding_to = |name: &str| {
        obj.keys()
            .rev()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
    };
    match err {
        FlannelConfigError::InvalidCidr(v) | FlannelConfigError::InvalidIp(v) => key_with_value(v),
        FlannelConfigError::NotIpv4Cidr => key_folding_to(V4_NETWORK_KEY),
        FlannelConfigError::NotIpv6Cidr => key_folding_to(V6_NETWORK_KEY),
        _ => None,
    }
}

/// Parses and checks `raw`; the error text is what the retry loop logs.
pub fn parse_checked(raw: &str) -> Result<NetworkConfig, String> {
    let mut cfg =
        NetworkConfig::parse(raw.as_bytes()).map_err(|e| match offending_field(raw, &e) {
            Some(field) => format!("error parsing subnet config: {e} (in field {field:?})"),
            None => format!("error parsing subnet config: {e}"),
        })?;
    cfg.check()
        .map_err(|e| format!("invalid network config: {e}"))?;
    Ok(cfg)
}

/// Reads and validates the network config, retrying every second until it is usable; the
/// keyspace it was found in is the one this node uses. `None`: stopped while waiting.
/// `state` shows the wait and its reason (`/status`, the CNI plugin's STATUS).
pub async fn wait_for_config(
    stores: &StoreSelector,
    state: &State,
    stop: &mut Stop,
) -> Option<(Arc<dyn SubnetStore>, NetworkConfig)> {
    state.set_phase(Phase::WaitingForConfig(None));
    loop {
        let attempt = async {
            let found = stores.network_config().await.map_err(|e| {
                count_etcd_error(&e);
                e.to_string()
            })?;
            parse_checked(&found.config).map(|cfg| (found.store, cfg))
        };
        match attempt.await {
            Ok(cfg) => return Some(cfg),
            Err(e) => {
                log::error!("Couldn't fetch network config: {e}");
                state.fail_phase(Phase::WaitingForConfig(Some(e)));
            }
        }
        if sleep_or_stop(CONFIG_RETRY, stop).await {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_address_is_reported_with_its_field() {
        let err = parse_checked(r#"{"Network":"10.244.0.0/33"}"#).unwrap_err();
        assert_eq!(
            err,
            "error parsing subnet config: invalid CIDR address: 10.244.0.0/33 (in field \"Network\")"
        );
        let err =
            parse_checked(r#"{"Network":"10.244.0.0/16","subnetmax":"10.244.300.0"}"#).unwrap_err();
        assert!(err.ends_with("(in field \"subnetmax\")"), "{err}");
    }

    #[test]
    fn a_wrong_family_names_the_network_key_as_written() {
        let err = parse_checked(r#"{"network":"fc00::/48"}"#).unwrap_err();
        assert_eq!(
            err,
            "error parsing subnet config: invalid IPv4 CIDR format (in field \"network\")"
        );
    }

    #[test]
    fn check_failures_already_name_their_field() {
        assert_eq!(
            parse_checked(r#"{"Backend":{"Type":"vxlan"}}"#).unwrap_err(),
            "invalid network config: please define a correct Network parameter in the flannel config"
        );
        assert_eq!(
            parse_checked(r#"{"Network":"10.244.0.0/16","SubnetLen":31}"#).unwrap_err(),
            "invalid network config: SubnetLen must be less than /31"
        );
        let cfg = parse_checked(r#"{"Network":"10.244.0.0/16"}"#).unwrap();
        assert_eq!(cfg.subnet_len, 24);
    }

    #[test]
    fn errors_without_a_value_name_no_field() {
        let err = FlannelConfigError::TooFewSubnets;
        assert_eq!(offending_field(r#"{"Network":"10.0.0.0/8"}"#, &err), None);
        assert_eq!(
            offending_field("not json", &FlannelConfigError::NotIpv4Cidr),
            None
        );
    }
}

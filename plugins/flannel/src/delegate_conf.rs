//! Building the config flannel hands to its delegate (upstream `doCmdAdd` /
//! `getDelegateIPAM`), and reading it back from the per-container save file.
//!
//! The delegate is a Go `map[string]interface{}` upstream, so its JSON has every object's keys
//! byte-sorted, numbers as float64 would print them, and no trailing newline. The one
//! exception is `ipam.routes`, a slice of structs, printed in struct field order. The exact
//! bytes matter: they are saved and replayed on DEL, possibly by a different flannel build.

use netconf::gojson::{self, encode};
use netconf::subnet_env::SubnetEnv;
use serde_json::{Map, Number, Value};

use crate::config::FlannelConf;
use crate::error::FlannelError;
use crate::ipam_routes::{self, IpamRoute};

/// A delegate config ready to execute: the plugin type and the exact stdin bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegate {
    pub plugin_type: String,
    pub bytes: Vec<u8>,
}

/// The checks upstream runs on the user's `delegate` object before touching it.
pub fn validate(delegate: &Map<String, Value>) -> Result<(), FlannelError> {
    if delegate.get("type").is_some_and(|t| !t.is_string()) {
        return Err(FlannelError::DelegateTypeNotString);
    }
    if delegate.contains_key("name") {
        return Err(FlannelError::DelegateHasName);
    }
    if delegate.contains_key("ipam") {
        return Err(FlannelError::DelegateHasIpam);
    }
    Ok(())
}

/// The delegate's `ipam`: the user's `ipam` keys, `type` defaulting to host-local, `ranges`
/// replaced by this node's subnets (v4 first), `routes` = user routes then every network.
fn ipam(
    conf: &FlannelConf,
    env: &SubnetEnv,
) -> Result<(Map<String, Value>, Vec<IpamRoute>), FlannelError> {
    let mut ipam = conf.ipam.clone().unwrap_or_default();
    ipam.entry("type").or_insert_with(|| "host-local".into());
    let mut ranges = Vec::new();
    if let Some(sn) = env.subnet_network() {
        ranges.push(serde_json::json!([{ "subnet": sn.to_string() }]));
    }
    if let Some(sn) = env.ipv6_subnet_network() {
        ranges.push(serde_json::json!([{ "subnet": sn.to_string() }]));
    }
    // Go marshals a nil slice as null: a subnet.env with no subnet of either family cannot
    // get here (it fails validation), so this stays an array in practice.
    ipam.insert("ranges".into(), Value::Array(ranges));
    let mut routes = match ipam.get("routes") {
        Some(v) => ipam_routes::parse(v).map_err(FlannelError::IpamRoutes)?,
        None => Vec::new(),
    };
    routes.extend(
        env.networks
            .iter()
            .map(|n| IpamRoute::to_network((*n).into())),
    );
    routes.extend(
        env.ipv6_networks
            .iter()
            .map(|n| IpamRoute::to_network((*n).into())),
    );
    ipam.remove("routes");
    Ok((ipam, routes))
}

/// Builds the delegate config for `conf` on a node whose flanneld wrote `env`.
pub fn build(conf: &FlannelConf, env: &SubnetEnv) -> Result<Delegate, FlannelError> {
    let mut d = conf.delegate.clone().unwrap_or_default();
    validate(&d)?;
    if let Some(rc) = &conf.runtime_config {
        d.insert("runtimeConfig".into(), Value::Object(rc.clone()));
    }
    d.insert("name".into(), conf.name.clone().into());
    d.entry("type").or_insert_with(|| "bridge".into());
    if !d.contains_key("ipMasq") {
        // flanneld masquerades itself when IPMASQ=true; otherwise the bridge must.
        d.insert("ipMasq".into(), (!env.ipmasq.unwrap_or(false)).into());
    }
    if !d.contains_key("mtu") {
        d.insert("mtu".into(), env.mtu.unwrap_or(0).into());
    }
    let plugin_type = d["type"]
        .as_str()
        .expect("validated: type is a string")
        .to_owned();
    if plugin_type == "bridge" && !d.contains_key("isGateway") {
        d.insert("isGateway".into(), true.into());
    }
    if !conf.cni_version.is_empty() {
        d.insert("cniVersion".into(), conf.cni_version.clone().into());
    }
    let (ipam, routes) = ipam(conf, env)?;
    d.insert("ipam".into(), Value::Object(ipam));

    let mut rendered = go_map(&Value::Object(d));
    let ipam = rendered
        .get_mut("ipam")
        .and_then(Value::as_object_mut)
        .expect("ipam was inserted as an object");
    // Inserted after sorting on purpose: `routes` sorts between `ranges` and `type`, and the
    // route objects themselves keep struct order.
    let mut sorted_ipam = Map::new();
    let route_values = Value::Array(routes.iter().map(IpamRoute::to_value).collect());
    let mut pending = Some(route_values);
    for (k, v) in std::mem::take(ipam) {
        if k.as_str() > "routes" {
            if let Some(r) = pending.take() {
                sorted_ipam.insert("routes".into(), r);
            }
        }
        sorted_ipam.insert(k, v);
    }
    if let Some(r) = pending.take() {
        sorted_ipam.insert("routes".into(), r);
    }
    *ipam = sorted_ipam;
    let bytes = encode::to_string_compact(&Value::Object(rendered), false).into_bytes();
    Ok(Delegate { plugin_type, bytes })
}

/// A value as Go re-marshals it after decoding into `interface{}`: object keys byte-sorted
/// at every level and numbers passed through float64.
fn go_value(v: &Value) -> Value {
    match v {
        Value::Object(_) => Value::Object(go_map(v)),
        Value::Array(items) => Value::Array(items.iter().map(go_value).collect()),
        Value::Number(n) => Value::Number(go_number(n)),
        other => other.clone(),
    }
}

fn go_map(v: &Value) -> Map<String, Value> {
    let m = v.as_object().expect("go_map is called on objects");
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    entries
        .into_iter()
        .map(|(k, v)| (k.clone(), go_value(v)))
        .collect()
}

/// float64 semantics: integers beyond 2^53 round, integral floats print without a fraction.
fn go_number(n: &Number) -> Number {
    const EXACT: u64 = 1 << 53;
    let as_float = |f: f64| -> Number {
        if f.fract() == 0.0 && f.abs() < 1e21 {
            if f < 0.0 {
                Number::from(f as i64)
            } else {
                Number::from(f as u64)
            }
        } else {
            Number::from_f64(f).unwrap_or_else(|| n.clone())
        }
    };
    if let Some(u) = n.as_u64() {
        if u <= EXACT {
            return n.clone();
        }
        return as_float(u as f64);
    }
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= EXACT {
            return n.clone();
        }
        return as_float(i as f64);
    }
    as_float(n.as_f64().unwrap_or(0.0))
}

impl Delegate {
    /// Reads a saved delegate config back: it must be a JSON object with a string `type`.
    pub fn from_saved(bytes: Vec<u8>) -> Result<Delegate, FlannelError> {
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| FlannelError::SavedConfig(gojson::syntax_error_text(&e)))?;
        if !v.is_object() {
            return Err(FlannelError::SavedConfig(format!(
                "expected a JSON object, found {}",
                gojson::kind(&v)
            )));
        }
        let plugin_type = match v.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(other) if !other.is_string() => {
                return Err(FlannelError::SavedConfig(format!(
                    "\"type\" is a JSON {}, not a string",
                    gojson::kind(other)
                )))
            }
            _ => return Err(FlannelError::SavedConfig("no plugin \"type\"".into())),
        };
        Ok(Delegate { plugin_type, bytes })
    }

    /// `ipam.type`, when the config has one.
    pub fn ipam_type(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.bytes).ok()?;
        v.pointer("/ipam/type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    /// The same config with extra top-level keys (CHECK's `prevResult`, GC's attachment
    /// lists), keys kept sorted like the rest.
    pub fn with_keys(&self, extra: &[(&str, Value)]) -> Vec<u8> {
        let mut m: Map<String, Value> =
            serde_json::from_slice(&self.bytes).expect("delegate bytes are a JSON object");
        for (k, v) in extra {
            m.insert((*k).to_owned(), v.clone());
        }
        let mut entries: Vec<(String, Value)> = m.into_iter().collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        encode::to_string_compact(&Value::Object(entries.into_iter().collect()), false).into_bytes()
    }
}

#[cfg(test)]
#[path = "delegate_conf_tests.rs"]
mod tests;

//! Network configuration as a plugin receives it on stdin, and conflists as runtimes load them.

mod gc;
mod list;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use gc::{gc_attachments, ATTACHMENT_KEYS};
pub use list::NetConfList;

use crate::env::is_valid_name;
use crate::error::{codes, CniError};
use crate::gojson::{self, syntax_error_text, TypeError};
use crate::result::CniResult;
use crate::version::CniVersion;

/// The keys every plugin shares; everything else stays in `raw` for plugin-specific decoding
/// (use [`NetConf::decode`] for Go's case-insensitive key matching).
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    pub name: String,
    /// `type`; empty when absent.
    pub plugin_type: String,
    /// `ipam.type`, when non-empty.
    pub ipam_type: Option<String>,
    /// `runtimeConfig`; empty when absent.
    pub runtime_config: Map<String, Value>,
    pub prev_result: Option<CniResult>,
    /// The whole config object as received.
    pub raw: Value,
}

/// Go's `%T` of a value decoded into `interface{}`.
pub(crate) fn go_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn decode_err(msg: String) -> CniError {
    CniError::new(codes::DECODE, msg)
}

fn parse_json(stdin: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(stdin).map_err(|e| syntax_error_text(&e))
}

/// Looks up a string field of a Go struct decoded from `obj` (case-insensitive keys). A
/// non-string value under any matching key is Go's `UnmarshalTypeError`.
fn string_field(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    let mut out = String::new();
    for (_, v) in obj.iter().filter(|(k, _)| gojson::eq_fold(k, key)) {
        match v {
            Value::String(s) => out = s.clone(),
            Value::Null => {}
            other => return Err(TypeError::new(other, "string").at("", key).to_string()),
        }
    }
    Ok(out)
}

/// The top-level object, or Go's error for decoding a non-object into a struct. `null`
/// decodes into an empty struct.
fn as_object(v: &Value, go_type: &str) -> Result<Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m.clone()),
        Value::Null => Ok(Map::new()),
        other => Err(TypeError::new(other, go_type).to_string()),
    }
}

const NAME_STRUCT: &str = r#"struct { Name string "json:\"name\"" }"#;

/// Go skel's `validateConfig`: the config must decode, `name` must be present and match
/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_network_config(stdin: &[u8]) -> Result<(), CniError> {
    let unmarshall = |m: String| decode_err(format!("error unmarshall network config: {m}"));
    let value = parse_json(stdin).map_err(unmarshall)?;
    let obj = as_object(&value, NAME_STRUCT).map_err(unmarshall)?;
    let name = string_field(&obj, "name").map_err(unmarshall)?;
    if name.is_empty() {
        return Err(CniError::new(codes::INVALID_CONFIG, "missing network name"));
    }
    if !is_valid_name(&name) {
        return Err(CniError::new(
            codes::INVALID_CONFIG,
            "invalid characters found in network name",
        )
        .with_details(name));
    }
    Ok(())
}

/// Go's `create.DecodeVersion`: the raw `cniVersion` string, `"0.1.0"` when absent or empty.
pub fn decode_version(stdin: &[u8]) -> Result<String, CniError> {
    let decoding = |m: String| decode_err(format!("decoding version from network config: {m}"));
    let value = parse_json(stdin).map_err(decoding)?;
    let obj = as_object(
        &value,
        r#"struct { CNIVersion string "json:\"cniVersion\"" }"#,
    )
    .map_err(decoding)?;
    let v = string_field(&obj, "cniVersion").map_err(decoding)?;
    Ok(if v.is_empty() { "0.1.0".to_owned() } else { v })
}

impl NetConf {
    /// Parses a plugin's stdin: skel's checks (decode, name), the version (unknown => code 1),
    /// the common keys, and `prevResult` decoded with the config's version
    /// (see [`CniResult::parse_prev_result`]).
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        validate_network_config(stdin)?;
        let cni_version = CniVersion::parse(&decode_version(stdin)?)?;
        let raw = parse_json(stdin).map_err(decode_err)?;
        let obj = as_object(&raw, "NetConf").map_err(decode_err)?;
        let bad = |m: String| decode_err(format!("error unmarshall network config: {m}"));

        let name = string_field(&obj, "name").map_err(bad)?;
        let plugin_type = string_field(&obj, "type").map_err(bad)?;
        let ipam_type = match gojson::get_folded(&obj, "ipam") {
            None => None,
            Some(Value::Object(ipam)) => {
                Some(string_field(ipam, "type").map_err(bad)?).filter(|t| !t.is_empty())
            }
            Some(other) => {
                return Err(bad(TypeError::new(other, "types.IPAM")
                    .at("NetConf", "ipam")
                    .to_string()))
            }
        };
        let runtime_config = match gojson::get_folded(&obj, "runtimeConfig") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(bad(TypeError::new(other, "map[string]interface {}")
                    .at("", "runtimeConfig")
                    .to_string()))
            }
        };
        let prev_result = gojson::get_folded(&obj, "prevResult")
            .map(|prev| CniResult::parse_prev_result(prev, cni_version))
            .transpose()?;
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            ipam_type,
            runtime_config,
            prev_result,
            raw,
        })
    }

    /// Decodes the whole config into a plugin-specific type with Go's key matching.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        gojson::from_value(self.raw.clone())
    }
}

#[cfg(test)]
mod tests;

//! Conflists, read the way libcni's `NetworkConfFromBytes` reads them (exact key names).

use serde_json::{Map, Value};

use super::go_type_name;
use crate::error::{codes, CniError};
use crate::gojson::{self, syntax_error_text, TypeError};
use crate::version::{self, CniVersion};

/// A network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfList {
    /// The version libcni selects: the highest of `cniVersion` and `cniVersions` not above
    /// 1.1.0; empty when neither is given.
    pub cni_version: String,
    /// `cniVersions` as written.
    pub cni_versions: Vec<String>,
    pub name: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub load_only_inlined_plugins: bool,
    /// Plugin objects, each checked to have a non-empty `type`.
    pub plugins: Vec<Value>,
}

fn list_err(msg: impl std::fmt::Display) -> CniError {
    CniError::new(
        codes::INVALID_CONFIG,
        format!("error parsing configuration list: {msg}"),
    )
}

/// libcni's `readBool`: a JSON bool, or the strings "true"/"false" in any case.
fn read_bool(obj: &Map<String, Value>, key: &str) -> Result<bool, CniError> {
    match obj.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(list_err(format!("invalid value \"{other}\" for {key}"))),
        },
        Some(v) => Err(list_err(format!(
            "invalid type {} for {key}",
            go_type_name(v)
        ))),
    }
}

fn select_version(
    obj: &Map<String, Value>,
    cni_version: String,
) -> Result<(String, Vec<String>), CniError> {
    let Some(raw) = obj.get("cniVersions") else {
        return Ok((cni_version, Vec::new()));
    };
    let Value::Array(items) = raw else {
        return Err(list_err(format!(
            "invalid type for cniVersions: {}",
            go_type_name(raw)
        )));
    };
    let current = CniVersion::CURRENT.as_str();
    let mut written = Vec::with_capacity(items.len());
    let mut candidates = Vec::with_capacity(items.len() + 1);
    for (i, item) in items.iter().enumerate() {
        let Value::String(v) = item else {
            return Err(list_err(format!(
                "invalid type for cniVersions index {i}: {}",
                go_type_name(item)
            )));
        };
        let newer = version::greater_than(v, current)
            .map_err(|e| list_err(format!("invalid cniVersions entry {v} at index {i}: {e}")))?;
        if !newer {
            candidates.push(v.clone());
        }
        written.push(v.clone());
    }
    if !cni_version.is_empty() {
        let newer = version::greater_than(&cni_version, current)
            .map_err(|e| list_err(format!("invalid cniVersion {cni_version}: {e}")))?;
        if !newer {
            candidates.push(cni_version.clone());
        }
    }
    let best = candidates
        .into_iter()
        .map(|v| (version::parse_loose(&v).expect("validated above"), v))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v);
    Ok((best.unwrap_or(cni_version), written))
}

impl NetConfList {
    pub fn parse(bytes: &[u8]) -> Result<NetConfList, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                codes::DECODE,
                format!(
                    "error parsing configuration list: {}",
                    syntax_error_text(&e)
                ),
            )
        })?;
        let obj = match value {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                return Err(CniError::new(
                    codes::DECODE,
                    format!(
                        "error parsing configuration list: {}",
                        TypeError::new(&other, "map[string]interface {}")
                    ),
                ))
            }
        };
        let name = match obj.get("name") {
            None => return Err(list_err("no name")),
            Some(Value::String(s)) => s.clone(),
            Some(v) => return Err(list_err(format!("invalid name type {}", go_type_name(v)))),
        };
        let cni_version = match obj.get("cniVersion") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(list_err(format!(
                    "invalid cniVersion type {}",
                    go_type_name(v)
                )))
            }
        };
        let (cni_version, cni_versions) = select_version(&obj, cni_version)?;
        let disable_check = read_bool(&obj, "disableCheck")?;
        let disable_gc = read_bool(&obj, "disableGC")?;
        let load_only_inlined_plugins = read_bool(&obj, "loadOnlyInlinedPlugins")?;

        let mut list = NetConfList {
            cni_version,
            cni_versions,
            name,
            disable_check,
            disable_gc,
            load_only_inlined_plugins,
            plugins: Vec::new(),
        };
        let plugins = match obj.get("plugins") {
            None if load_only_inlined_plugins => {
                return Err(list_err(
                    "`loadOnlyInlinedPlugins` is true, and no 'plugins' key",
                ))
            }
            None => return Ok(list),
            Some(Value::Array(p)) => p,
            Some(v) => {
                return Err(list_err(format!(
                    "invalid 'plugins' type {}",
                    go_type_name(v)
                )))
            }
        };
        if plugins.is_empty() {
            return Err(list_err("no plugins in list"));
        }
        for (i, plugin) in plugins.iter().enumerate() {
            check_plugin(plugin).map_err(|m| {
                CniError::new(
                    codes::INVALID_CONFIG,
                    format!("failed to parse plugin config {i}: error parsing configuration: {m}"),
                )
            })?;
        }
        list.plugins = plugins.clone();
        Ok(list)
    }

    /// The selected version as a [`CniVersion`] (unknown => code 1).
    pub fn version(&self) -> Result<CniVersion, CniError> {
        CniVersion::parse(&self.cni_version)
    }
}

/// libcni decodes each plugin into `types.PluginConf` (case-insensitive) and requires `type`.
fn check_plugin(plugin: &Value) -> Result<(), String> {
    let Value::Object(obj) = plugin else {
        return Err(TypeError::new(plugin, "types.PluginConf").to_string());
    };
    match gojson::get_folded(obj, "type") {
        Some(Value::String(t)) if !t.is_empty() => Ok(()),
        Some(Value::String(_)) | None => Err("missing 'type'".to_owned()),
        Some(v) => Err(TypeError::new(v, "string")
            .at("PluginConf", "type")
            .to_string()),
    }
}

//! CNI results: one canonical in-memory model (the 1.1.0 one); version-specific JSON shapes
//! exist only at parse and print time, with libcni's conversion rules in between.

mod addr;
mod listed;
mod v02;
mod v04;
mod v1;
mod wire;

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

pub use addr::{cidr_string, ip_string};

use crate::error::{codes, CniError};
use crate::gofmt;
use crate::gojson::{self, encode, TypeError};
use crate::version::{CniVersion, ResultFamily};

/// A plugin result. `cni_version` is the version it was parsed from or built for; it matters
/// for conversions that libcni only performs between result families (see [`CniResult::to_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniResult {
    pub cni_version: CniVersion,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub sandbox: Option<String>,
    pub socket_path: Option<String>,
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Address with prefix length; host bits are kept (`10.244.1.2/24`).
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    pub priority: Option<u32>,
    pub table: Option<u32>,
    pub scope: Option<u8>,
}

impl Route {
    /// A route with only a destination and an optional gateway.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    /// Go's `types.DNS.IsEmpty`.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.as_deref().unwrap_or_default().is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl Default for CniResult {
    fn default() -> Self {
        CniResult::new(CniVersion::CURRENT)
    }
}

/// The parts every family's parser produces.
struct Parsed {
    interfaces: Vec<Interface>,
    ips: Vec<IpConfig>,
    routes: Vec<Route>,
    dns: Dns,
}

fn parse_err(msg: impl Into<String>) -> CniError {
    CniError::new(codes::INTERNAL, msg)
}

/// What Go's `json.Unmarshal` into a `map[string]interface{}` says about a non-object.
fn not_a_map(v: &Value) -> String {
    TypeError::new(v, "map[string]interface {}").to_string()
}

/// Go's result creators accept these `cniVersion` values per family (020 also accepts "").
fn family_versions(f: ResultFamily) -> &'static [&'static str] {
    match f {
        ResultFamily::V02 => &["", "0.1.0", "0.2.0"],
        ResultFamily::V04 => &["0.3.0", "0.3.1", "0.4.0"],
        ResultFamily::V1 => &["1.0.0", "1.1.0"],
    }
}

impl CniResult {
    /// An empty result of the given version.
    pub fn new(cni_version: CniVersion) -> CniResult {
        CniResult {
            cni_version,
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: Dns::default(),
        }
    }

    /// Parses a result of any version (0.1.0 .. 1.1.0). `fallback` is used when the JSON has
    /// no (or an empty) `cniVersion`, as libcni does with the config version.
    pub fn parse(json: &[u8], fallback: CniVersion) -> Result<CniResult, CniError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| parse_err(format!("failed to unmarshal raw result: {e}")))?;
        let obj = match value {
            Value::Object(m) => m,
            // Go decodes `null` into an empty map and carries on.
            Value::Null => Map::new(),
            other => {
                return Err(parse_err(format!(
                    "failed to unmarshal raw result: {}",
                    not_a_map(&other)
                )))
            }
        };
        let version = match obj.get("cniVersion") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => fallback.as_str().to_owned(),
        };
        let version = CniVersion::parse(&version).map_err(|_| {
            parse_err(format!(
                "unsupported CNI result version {}",
                gofmt::quote(&version)
            ))
        })?;
        Self::decode_family(obj, version)
    }

    /// Parses a `prevResult` object the way Go's `version.ParsePrevResult` does: decoded with
    /// the *config's* version family; a missing `cniVersion` means the config version; a result
    /// from another family is an error.
    pub fn parse_prev_result(prev: &Value, config: CniVersion) -> Result<CniResult, CniError> {
        let wrap = |m: String| parse_err(format!("could not parse prevResult: {m}"));
        let mut obj = match prev {
            Value::Object(m) => m.clone(),
            other => return Err(wrap(not_a_map(other))),
        };
        // Go injects the config version under the exact key "CNIVersion" when that key is
        // absent or "", re-marshals (keys sorted) and decodes; the last key matching
        // "cniVersion" case-insensitively then decides.
        let inject = match obj.get("CNIVersion") {
            None => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if inject {
            obj.insert("CNIVersion".into(), config.as_str().into());
        }
        let mut keys: Vec<&String> = obj
            .iter()
            .filter(|(k, v)| !v.is_null() && gojson::eq_fold(k, "cniVersion"))
            .map(|(k, _)| k)
            .collect();
        keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let version = match keys.last().map(|k| &obj[k.as_str()]) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(wrap(
                    TypeError::new(other, "string")
                        .at("Result", "cniVersion")
                        .to_string(),
                ))
            }
            None => String::new(),
        };
        let family = config.family();
        let accepted = family_versions(family);
        if !accepted.contains(&version.as_str()) {
            return Err(wrap(format!(
                "result type supports {} but unmarshalled CNIVersion is {}",
                gofmt::list(accepted),
                gofmt::quote(&version)
            )));
        }
        let version = if version.is_empty() {
            CniVersion::V0_1_0
        } else {
            CniVersion::parse(&version)?
        };
        Self::decode_family(obj, version).map_err(|e| wrap(e.msg))
    }

    fn decode_family(obj: Map<String, Value>, version: CniVersion) -> Result<CniResult, CniError> {
        let parsed = match version.family() {
            ResultFamily::V1 => v1::parse(Value::Object(obj)),
            ResultFamily::V04 => v04::parse(Value::Object(obj)),
            ResultFamily::V02 => v02::parse(Value::Object(obj)),
        }
        .map_err(parse_err)?;
        Ok(CniResult {
            cni_version: version,
            interfaces: parsed.interfaces,
            ips: parsed.ips,
            routes: parsed.routes,
            dns: parsed.dns,
        })
    }

    /// The result as a JSON value in `version`'s shape (keys in Go's output order).
    pub fn to_value(&self, version: CniVersion) -> Result<Value, CniError> {
        match version.family() {
            ResultFamily::V1 => Ok(v1::encode(self, version)),
            ResultFamily::V04 => Ok(v04::encode(self, version)),
            ResultFamily::V02 => v02::encode(self, version).map_err(parse_err),
        }
    }

    /// Prints exactly as Go's `result.GetAsVersion(version)` + `Print()`: 4-space indent, no
    /// trailing newline. Converting a 0.3.0+ result to 0.1.0/0.2.0 keeps the first IP of each
    /// family and fails with `cannot convert: no valid IP addresses` when there is none.
    pub fn to_json(&self, version: CniVersion) -> Result<String, CniError> {
        let v = self.to_value(version)?;
        // 1.x results are re-marshalled through a Go map, so every key comes out sorted.
        Ok(encode::to_string_pretty(
            &v,
            version.family() == ResultFamily::V1,
        ))
    }

    /// The same result relabelled as `version` (what Go's converters do to `cniVersion`);
    /// nothing is dropped from the canonical model.
    pub fn with_version(mut self, version: CniVersion) -> CniResult {
        self.cni_version = version;
        self
    }
}

#[cfg(test)]
mod tests;

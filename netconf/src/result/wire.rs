//! JSON shapes shared by every result version: `types.Route` and `types.DNS`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::addr::{cidr_string, ip_string, parse_cidr, parse_ip};
use super::{Dns, Route};

#[derive(Deserialize)]
pub(super) struct WireRoute {
    dst: String,
    #[serde(default)]
    gw: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    advmss: u32,
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u8>,
}

impl WireRoute {
    pub(super) fn into_route(self) -> Result<Route, String> {
        let nonzero = |v: u32| (v != 0).then_some(v);
        Ok(Route {
            dst: parse_cidr(&self.dst)?,
            gw: parse_ip(&self.gw)?,
            mtu: nonzero(self.mtu),
            advmss: nonzero(self.advmss),
            priority: nonzero(self.priority),
            table: self.table,
            scope: self.scope,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct WireDns {
    nameservers: Vec<String>,
    domain: String,
    search: Vec<String>,
    options: Vec<String>,
}

impl WireDns {
    pub(super) fn into_dns(self) -> Dns {
        Dns {
            nameservers: self.nameservers,
            domain: Some(self.domain).filter(|d| !d.is_empty()),
            search: self.search,
            options: self.options,
        }
    }
}

/// `types.Route` as Go marshals it. `mtu`, `advmss` and `priority` are plain ints with
/// `omitempty` (zero is omitted); `table` and `scope` are pointers (zero is printed).
/// `with_extras = false` is the 0.2.0 down-conversion, which keeps only `dst` and `gw`.
pub(super) fn route_value(r: &Route, with_extras: bool) -> Value {
    let mut m = Map::new();
    m.insert("dst".into(), cidr_string(r.dst).into());
    if let Some(gw) = r.gw {
        m.insert("gw".into(), ip_string(gw).into());
    }
    if with_extras {
        for (key, v) in [
            ("mtu", r.mtu),
            ("advmss", r.advmss),
            ("priority", r.priority),
        ] {
            if let Some(v) = v.filter(|v| *v != 0) {
                m.insert(key.into(), v.into());
            }
        }
        if let Some(t) = r.table {
            m.insert("table".into(), t.into());
        }
        if let Some(s) = r.scope {
            m.insert("scope".into(), s.into());
        }
    }
    Value::Object(m)
}

/// `types.DNS` as Go marshals it: every field `omitempty`.
pub(super) fn dns_value(d: &Dns) -> Value {
    let mut m = Map::new();
    let list = |v: &[String]| Value::from(v.to_vec());
    if !d.nameservers.is_empty() {
        m.insert("nameservers".into(), list(&d.nameservers));
    }
    if let Some(domain) = d.domain.as_deref().filter(|s| !s.is_empty()) {
        m.insert("domain".into(), domain.into());
    }
    if !d.search.is_empty() {
        m.insert("search".into(), list(&d.search));
    }
    if !d.options.is_empty() {
        m.insert("options".into(), list(&d.options));
    }
    Value::Object(m)
}

/// Inserts `value` under `key` when it is a non-empty string (Go `omitempty` on a string).
pub(super) fn put_str(m: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
        m.insert(key.into(), v.into());
    }
}

/// Go `omitempty` string decoding: an empty string is "absent".
pub(super) fn opt(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

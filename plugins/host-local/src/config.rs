//! The IPAM configuration: decoded from the *whole* plugin config (IPAM plugins receive the
//! calling plugin's stdin), with requested addresses from `CNI_ARGS`, `args` and `runtimeConfig`.

use std::net::IpAddr;
use std::path::PathBuf;

use netconf::gojson::{fields, At, Decoder, Failure, Step};
use serde_json::{Map, Value};

use crate::args;
use crate::error::Error;
use crate::ip::{self, Cidr};
use crate::range::RangeSpec;
use crate::range_set::RangeSet;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// A validated IPAM config, ready for allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// Network name; the store directory is `<data_dir>/<name>`.
    pub name: String,
    /// `cniVersion` exactly as written (may be empty).
    pub cni_version: String,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    pub routes: Vec<RouteSpec>,
    /// One address is allocated from each set, in this order (runtime `ipRanges`, then the legacy
    /// top-level range, then `ranges`).
    pub range_sets: Vec<RangeSet>,
    /// Requested addresses, duplicates removed, in the order they were given.
    pub requested_ips: Vec<IpAddr>,
}

/// A route from `ipam.routes` (CNI's `types.Route`), returned to the caller as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination with host bits as written.
    pub dst: ipnet::IpNet,
    pub gw: Option<IpAddr>,
    /// Go `int`s: zero is "not set".
    pub mtu: i64,
    pub advmss: i64,
    pub priority: i64,
    /// Go `*int`s: zero is a value.
    pub table: Option<i64>,
    pub scope: Option<i64>,
}

/// Raw decode result before validation.
#[derive(Default)]
struct RawNet {
    name: String,
    cni_version: String,
    ipam: Option<RawIpam>,
    runtime_ranges: Vec<Vec<RangeSpec>>,
    runtime_ips: Vec<Option<IpAddr>>,
    args_ips: Vec<Option<IpAddr>>,
}

#[derive(Default)]
struct RawIpam {
    legacy: RangeSpec,
    data_dir: String,
    resolv_conf: String,
    routes: Vec<RouteSpec>,
    ranges: Vec<Vec<RangeSpec>>,
}

const NET_FIELDS: &[&str] = &["name", "cniVersion", "ipam", "runtimeConfig", "args"];
const IPAM_FIELDS: &[&str] = &[
    "rangeStart",
    "rangeEnd",
    "subnet",
    "gateway",
    "Name",
    "type",
    "routes",
    "dataDir",
    "resolvConf",
    "ranges",
];
const RANGE_FIELDS: &[&str] = &["rangeStart", "rangeEnd", "subnet", "gateway"];
const ROUTE_FIELDS: &[&str] = &["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];
const RUNTIME_FIELDS: &[&str] = &["ipRanges", "ips"];
const RUNTIME_TYPE: &str = r#"struct { IPRanges []allocator.RangeSet "json:\"ipRanges,omitempty\""; IPs []*ip.IP "json:\"ips,omitempty\"" }"#;
const ARGS_TYPE: &str = r#"struct { A *allocator.IPAMArgs "json:\"cni\"" }"#;

/// Decodes and validates the config; `cni_args` is the raw `CNI_ARGS` value.
pub fn load(stdin: &[u8], cni_args: &str) -> Result<IpamConfig, Error> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| Error::Decode(e.to_string()))?;
    let raw = decode_net(&value).map_err(decode_error)?;
    let ipam = raw.ipam.ok_or(Error::MissingIpam)?;

    let mut requested: Vec<Option<IpAddr>> = Vec::new();
    if let Some(ip) = args::requested_ip(cni_args)? {
        requested.push(Some(ip));
    }
    requested.extend(raw.args_ips);
    requested.extend(raw.runtime_ips);
    let mut requested_ips: Vec<IpAddr> = Vec::new();
    for ip in requested {
        let ip = ip.ok_or(Error::NilRequestedIp)?;
        if !requested_ips.contains(&ip) {
            requested_ips.push(ip);
        }
    }

    let mut specs: Vec<Vec<RangeSpec>> = raw.runtime_ranges;
    if ipam.legacy.subnet.is_some() {
        specs.push(vec![ipam.legacy.clone()]);
    }
    specs.extend(ipam.ranges);
    if specs.is_empty() {
        return Err(Error::NoRanges);
    }

    let mut range_sets = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let set = RangeSet::canonicalize(spec)
            .map_err(|source| Error::InvalidRangeSet { index, source })?;
        range_sets.push(set);
    }
    let v4 = range_sets.iter().filter(|s| s.is_ipv4()).count();
    if (v4 > 1 || range_sets.len() - v4 > 1) && !supports_multiple_addresses(&raw.cni_version) {
        return Err(Error::TooManyAddressesPerFamily(raw.cni_version));
    }
    for (i, a) in range_sets.iter().enumerate() {
        if let Some(j) = range_sets[i + 1..].iter().position(|b| a.overlaps(b)) {
            return Err(Error::RangeSetsOverlap(i, i + 1 + j));
        }
    }

    let data_dir = if ipam.data_dir.is_empty() {
        DEFAULT_DATA_DIR.to_string()
    } else {
        ipam.data_dir
    };
    Ok(IpamConfig {
        name: raw.name,
        cni_version: raw.cni_version,
        data_dir: PathBuf::from(data_dir),
        resolv_conf: (!ipam.resolv_conf.is_empty()).then(|| PathBuf::from(ipam.resolv_conf)),
        routes: ipam.routes,
        range_sets,
        requested_ips,
    })
}

/// Versions before 0.3.0 carry one address per family; unparsable versions count as old, as
/// upstream's semver comparison fails closed.
fn supports_multiple_addresses(version: &str) -> bool {
    let parts: Vec<Option<u64>> = version.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(major), Some(minor), Some(_)] => (*major, *minor) >= (0, 3),
        _ => false,
    }
}

fn decode_error(f: Failure) -> Error {
    Error::Decode(f.to_string())
}

fn decode_net(v: &Value) -> Step<RawNet> {
    let mut d = Decoder::default();
    let mut net = RawNet::default();
    let top = At::top();
    let Some(obj) = d.object(&top, v, "allocator.Net") else {
        d.finish()?;
        return Ok(net);
    };
    for (field, v) in fields(obj, NET_FIELDS) {
        let at = top.field("Net", field);
        match field {
            "name" => d.string(&at, v, &mut net.name),
            "cniVersion" => d.string(&at, v, &mut net.cni_version),
            "ipam" => match v {
                Value::Null => net.ipam = None,
                _ => {
                    if let Some(m) = d.object(&at, v, "allocator.IPAMConfig") {
                        let ipam = net.ipam.get_or_insert_with(RawIpam::default);
                        decode_ipam(&mut d, &at, m, ipam)?;
                    }
                }
            },
            "runtimeConfig" => {
                if let Some(m) = d.object(&at, v, RUNTIME_TYPE) {
                    for (field, v) in fields(m, RUNTIME_FIELDS) {
                        let at = at.field("", field);
                        match field {
                            "ipRanges" => {
                                decode_range_sets(&mut d, &at, v, &mut net.runtime_ranges)?
                            }
                            _ => decode_ip_list(&mut d, &at, v, &mut net.runtime_ips)?,
                        }
                    }
                }
            }
            _ => {
                if let Some(m) = d.object(&at, v, ARGS_TYPE) {
                    for (_, v) in fields(m, &["cni"]) {
                        let at = at.field("", "cni");
                        if let Some(m) = d.object(&at, v, "allocator.IPAMArgs") {
                            for (_, v) in fields(m, &["ips"]) {
                                decode_ip_list(
                                    &mut d,
                                    &at.field("IPAMArgs", "ips"),
                                    v,
                                    &mut net.args_ips,
                                )?;
                            }
                        }
                    }
                }
            }
        }
    }
    d.finish()?;
    Ok(net)
}

fn decode_ipam(d: &mut Decoder, at: &At, obj: &Map<String, Value>, ipam: &mut RawIpam) -> Step<()> {
    let mut ignored = String::new();
    for (field, v) in fields(obj, IPAM_FIELDS) {
        let field_at = at.field("IPAMConfig", field);
        match field {
            "rangeStart" | "rangeEnd" | "subnet" | "gateway" => {
                decode_range_field(d, &field_at, field, v, &mut ipam.legacy)?
            }
            "Name" | "type" => d.string(&field_at, v, &mut ignored),
            "dataDir" => d.string(&field_at, v, &mut ipam.data_dir),
            "resolvConf" => d.string(&field_at, v, &mut ipam.resolv_conf),
            "routes" => {
                if let Some(items) = d.array(&field_at, v, "[]*types.Route") {
                    ipam.routes = items
                        .iter()
                        .filter(|v| !v.is_null())
                        .map(|v| decode_route(&field_at, v))
                        .collect::<Step<_>>()?;
                }
            }
            _ => decode_range_sets(d, &field_at, v, &mut ipam.ranges)?,
        }
    }
    Ok(())
}

fn decode_range_sets(
    d: &mut Decoder,
    at: &At,
    v: &Value,
    out: &mut Vec<Vec<RangeSpec>>,
) -> Step<()> {
    let Some(sets) = d.array(at, v, "[]allocator.RangeSet") else {
        return Ok(());
    };
    out.clear();
    for set in sets {
        let mut specs = Vec::new();
        if let Some(items) = d.array(at, set, "allocator.RangeSet") {
            for item in items {
                let mut spec = RangeSpec::default();
                if let Some(m) = d.object(at, item, "allocator.Range") {
                    for (field, v) in fields(m, RANGE_FIELDS) {
                        decode_range_field(d, &at.field("Range", field), field, v, &mut spec)?;
                    }
                }
                specs.push(spec);
            }
        }
        out.push(specs);
    }
    Ok(())
}

fn decode_range_field(
    d: &mut Decoder,
    at: &At,
    field: &str,
    v: &Value,
    spec: &mut RangeSpec,
) -> Step<()> {
    match field {
        "subnet" => spec.subnet = Some(decode_cidr(at, v)?),
        "rangeStart" => decode_net_ip(d, at, v, &mut spec.range_start)?,
        "rangeEnd" => decode_net_ip(d, at, v, &mut spec.range_end)?,
        _ => decode_net_ip(d, at, v, &mut spec.gateway)?,
    }
    Ok(())
}

/// CNI's `types.IPNet`: its own unmarshaller, so even `null` is parsed (as the empty string).
fn decode_cidr(at: &At, v: &Value) -> Step<Cidr> {
    let text = match v {
        Value::String(s) => s.as_str(),
        Value::Null => "",
        other => return Err(Failure::mismatch(other, "string").located(at)),
    };
    Cidr::parse(text).ok_or_else(|| Failure::text(format!("invalid CIDR address: {text}")))
}

/// Go's `net.IP`: empty string and `null` mean "unset".
fn decode_net_ip(d: &mut Decoder, at: &At, v: &Value, out: &mut Option<IpAddr>) -> Step<()> {
    match v {
        Value::String(s) if s.is_empty() => *out = None,
        Value::String(s) => {
            *out = Some(
                ip::parse_canonical(s)
                    .ok_or_else(|| Failure::text(format!("invalid IP address: {s}")))?,
            )
        }
        Value::Null => *out = None,
        other => d.mismatch(at, other, "net.IP"),
    }
    Ok(())
}

/// A list of the plugins' `ip.IP` (address with optional prefix); `None` marks an empty entry.
fn decode_ip_list(d: &mut Decoder, at: &At, v: &Value, out: &mut Vec<Option<IpAddr>>) -> Step<()> {
    let Some(items) = d.array(at, v, "[]*ip.IP") else {
        return Ok(());
    };
    out.clear();
    for item in items {
        match item {
            Value::String(s) if s.is_empty() => out.push(None),
            Value::String(s) => {
                let parsed = if s.contains('/') {
                    Cidr::parse(s).map(|c| ip::canonical(c.addr))
                } else {
                    ip::parse_canonical(s)
                };
                out.push(Some(parsed.ok_or_else(|| {
                    Failure::text(format!("invalid IP address {s}"))
                })?));
            }
            Value::Null => out.push(None),
            other => d.mismatch(at, other, "*ip.IP"),
        }
    }
    Ok(())
}

/// CNI's `types.Route` decodes itself with a nested `json.Unmarshal`; whatever that reports is
/// re-located at the `routes` field and stops the outer decode.
fn decode_route(routes_at: &At, v: &Value) -> Step<RouteSpec> {
    let Value::Object(obj) = v else {
        return Err(Failure::mismatch(v, "types.route").located(routes_at));
    };
    let mut d = Decoder::default();
    let mut dst = None;
    let mut route = RouteSpec::default();
    decode_route_fields(&mut d, obj, &mut dst, &mut route)
        .and_then(|()| d.finish())
        .map_err(|f| f.located(routes_at))?;
    // Upstream would print a route without destination as "<nil>"; refuse it instead.
    let dst = dst.ok_or_else(|| Failure::text("invalid CIDR address: "))?;
    let (addr, prefix) = dst.go_parts();
    route.dst = ipnet::IpNet::new(addr, prefix).map_err(|e| Failure::text(e.to_string()))?;
    Ok(route)
}

fn decode_route_fields(
    d: &mut Decoder,
    obj: &Map<String, Value>,
    dst: &mut Option<Cidr>,
    route: &mut RouteSpec,
) -> Step<()> {
    let inner = At::top();
    for (field, v) in fields(obj, ROUTE_FIELDS) {
        let at = inner.field("route", field);
        match field {
            "dst" => *dst = Some(decode_cidr(&at, v)?),
            "gw" => decode_net_ip(d, &at, v, &mut route.gw)?,
            "mtu" => d.int(&at, v, &mut route.mtu),
            "advmss" => d.int(&at, v, &mut route.advmss),
            "priority" => d.int(&at, v, &mut route.priority),
            "table" => d.opt_int(&at, v, &mut route.table),
            _ => d.opt_int(&at, v, &mut route.scope),
        }
    }
    Ok(())
}

/// The attachments a GC request says are still in use (see [`netconf::conf::gc_attachments`]).
pub fn valid_attachments(stdin: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let value: Value = serde_json::from_slice(stdin).map_err(|e| Error::Decode(e.to_string()))?;
    netconf::conf::gc_attachments(&value).map_err(decode_error)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

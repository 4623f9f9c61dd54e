//! 0.1.0 / 0.2.0 results (Go `types020`): at most one address per family, routes nested in
//! the family they belong to.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::addr::{cidr_string, ip_string, is_v4, parse_cidr, parse_ip};
use super::wire::{dns_value, route_value, WireDns, WireRoute};
use super::{CniResult, IpConfig, Parsed, Route};
use crate::gojson;
use crate::version::{CniVersion, ResultFamily};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Wire {
    ip4: Option<WireIp>,
    ip6: Option<WireIp>,
    dns: WireDns,
}

#[derive(Deserialize)]
struct WireIp {
    ip: String,
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    routes: Vec<WireRoute>,
}

pub(super) fn parse(v: Value) -> Result<Parsed, String> {
    let w: Wire = gojson::from_value(v).map_err(|e| e.to_string())?;
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    for fam in [w.ip4, w.ip6].into_iter().flatten() {
        ips.push(IpConfig {
            address: parse_cidr(&fam.ip)?,
            gateway: parse_ip(&fam.gateway)?,
            interface: None,
        });
        for r in fam.routes {
            routes.push(r.into_route()?);
        }
    }
    Ok(Parsed {
        interfaces: Vec::new(),
        ips,
        routes,
        dns: w.dns.into_dns(),
    })
}

fn family_value(ip: &IpConfig, routes: &[&Route], with_extras: bool) -> Value {
    let mut m = Map::new();
    m.insert("ip".into(), cidr_string(ip.address).into());
    if let Some(gw) = ip.gateway {
        m.insert("gateway".into(), ip_string(gw).into());
    }
    if !routes.is_empty() {
        m.insert(
            "routes".into(),
            routes.iter().map(|r| route_value(r, with_extras)).collect(),
        );
    }
    Value::Object(m)
}

/// Go converts within the 0.1/0.2 family without touching anything; coming from 0.3.0+ it
/// keeps the first address per family, files routes by destination family, keeps only
/// `dst`/`gw` of each route and refuses a result without any address.
pub(super) fn encode(r: &CniResult, version: CniVersion) -> Result<Value, String> {
    let same_family = r.cni_version.family() == ResultFamily::V02;
    let ip4 = r.ips.iter().find(|ip| is_v4(ip.address.addr()));
    let ip6 = r.ips.iter().find(|ip| !is_v4(ip.address.addr()));
    if ip4.is_none() && ip6.is_none() && !same_family {
        return Err("cannot convert: no valid IP addresses".into());
    }
    let (routes4, routes6): (Vec<&Route>, Vec<&Route>) =
        r.routes.iter().partition(|rt| is_v4(rt.dst.addr()));
    let mut m = Map::new();
    m.insert("cniVersion".into(), version.as_str().into());
    if let Some(ip) = ip4 {
        m.insert("ip4".into(), family_value(ip, &routes4, same_family));
    }
    if let Some(ip) = ip6 {
        m.insert("ip6".into(), family_value(ip, &routes6, same_family));
    }
    m.insert("dns".into(), dns_value(&r.dns));
    Ok(Value::Object(m))
}

//! 0.3.0 / 0.3.1 / 0.4.0 results (Go `types040`).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::addr::{cidr_string, ip_string, is_v4, parse_cidr, parse_ip};
use super::wire::{dns_value, opt, put_str, route_value, WireDns, WireRoute};
use super::{CniResult, Interface, IpConfig, Parsed};
use crate::gojson;
use crate::version::CniVersion;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Wire {
    interfaces: Vec<WireInterface>,
    ips: Vec<WireIp>,
    routes: Vec<WireRoute>,
    dns: WireDns,
}

/// 0.4.0 interfaces know only these three fields; anything else in the JSON is ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireInterface {
    name: String,
    mac: String,
    sandbox: String,
}

/// `version` is read by Go but the canonical model derives it from the address instead.
#[derive(Deserialize)]
struct WireIp {
    #[serde(default)]
    interface: Option<usize>,
    address: String,
    #[serde(default)]
    gateway: String,
}

pub(super) fn parse(v: Value) -> Result<Parsed, String> {
    let w: Wire = gojson::from_value(v).map_err(|e| e.to_string())?;
    Ok(Parsed {
        interfaces: w
            .interfaces
            .into_iter()
            .map(|i| Interface {
                name: i.name,
                mac: opt(i.mac),
                sandbox: opt(i.sandbox),
                ..Interface::default()
            })
            .collect(),
        ips: w
            .ips
            .into_iter()
            .map(|ip| {
                Ok(IpConfig {
                    address: parse_cidr(&ip.address)?,
                    gateway: parse_ip(&ip.gateway)?,
                    interface: ip.interface,
                })
            })
            .collect::<Result<_, String>>()?,
        routes: w
            .routes
            .into_iter()
            .map(WireRoute::into_route)
            .collect::<Result<_, _>>()?,
        dns: w.dns.into_dns(),
    })
}

fn interface_value(i: &Interface) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), i.name.clone().into());
    put_str(&mut m, "mac", &i.mac);
    put_str(&mut m, "sandbox", &i.sandbox);
    Value::Object(m)
}

fn ip_value(ip: &IpConfig) -> Value {
    let mut m = Map::new();
    m.insert(
        "version".into(),
        if is_v4(ip.address.addr()) { "4" } else { "6" }.into(),
    );
    if let Some(idx) = ip.interface {
        m.insert("interface".into(), idx.into());
    }
    m.insert("address".into(), cidr_string(ip.address).into());
    if let Some(gw) = ip.gateway {
        m.insert("gateway".into(), ip_string(gw).into());
    }
    Value::Object(m)
}

/// Go struct order; `dns` has no working `omitempty` here, so `"dns": {}` is always printed.
pub(super) fn encode(r: &CniResult, version: CniVersion) -> Value {
    let mut m = Map::new();
    m.insert("cniVersion".into(), version.as_str().into());
    if !r.interfaces.is_empty() {
        m.insert(
            "interfaces".into(),
            r.interfaces.iter().map(interface_value).collect(),
        );
    }
    if !r.ips.is_empty() {
        m.insert("ips".into(), r.ips.iter().map(ip_value).collect());
    }
    if !r.routes.is_empty() {
        m.insert(
            "routes".into(),
            r.routes.iter().map(|rt| route_value(rt, true)).collect(),
        );
    }
    m.insert("dns".into(), dns_value(&r.dns));
    Value::Object(m)
}

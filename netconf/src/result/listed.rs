//! The result shape 0.3.0 and later share (Go `types040` and `types100`): lists of
//! interfaces, IPs and routes, plus DNS. The families differ only in what an interface
//! carries, whether an IP names its version and whether an empty `dns` is printed; each
//! family states that in a [`Shape`].

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::addr::{cidr_string, ip_string, is_v4, parse_cidr, parse_ip};
use super::wire::{dns_value, route_value, WireDns, WireRoute};
use super::{CniResult, Interface, IpConfig, Parsed};
use crate::gojson;
use crate::version::CniVersion;

#[derive(Deserialize, Default)]
#[serde(default, bound(deserialize = "I: Deserialize<'de> + Default"))]
struct Wire<I> {
    interfaces: Vec<I>,
    ips: Vec<WireIp>,
    routes: Vec<WireRoute>,
    dns: WireDns,
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

impl WireIp {
    fn into_ip(self) -> Result<IpConfig, String> {
        Ok(IpConfig {
            address: parse_cidr(&self.address)?,
            gateway: parse_ip(&self.gateway)?,
            interface: self.interface,
        })
    }
}

/// Parses a result whose interfaces have the family's wire form `I`.
pub(super) fn parse<I>(v: Value) -> Result<Parsed, String>
where
    I: DeserializeOwned + Default + Into<Interface>,
{
    let w: Wire<I> = gojson::from_value(v).map_err(|e| e.to_string())?;
    Ok(Parsed {
        interfaces: w.interfaces.into_iter().map(Into::into).collect(),
        ips: w
            .ips
            .into_iter()
            .map(WireIp::into_ip)
            .collect::<Result<_, _>>()?,
        routes: w
            .routes
            .into_iter()
            .map(WireRoute::into_route)
            .collect::<Result<_, _>>()?,
        dns: w.dns.into_dns(),
    })
}

/// How one family prints the shared shape.
pub(super) struct Shape {
    pub interface: fn(&Interface) -> Value,
    /// IPs carry `"version": "4"` / `"6"` (0.4.0).
    pub ip_version: bool,
    /// `"dns": {}` is printed even when empty (0.4.0 has no working `omitempty` there).
    pub empty_dns: bool,
}

fn ip_value(ip: &IpConfig, with_version: bool) -> Value {
    let mut m = Map::new();
    if with_version {
        let v = if is_v4(ip.address.addr()) { "4" } else { "6" };
        m.insert("version".into(), v.into());
    }
    if let Some(idx) = ip.interface {
        m.insert("interface".into(), idx.into());
    }
    m.insert("address".into(), cidr_string(ip.address).into());
    if let Some(gw) = ip.gateway {
        m.insert("gateway".into(), ip_string(gw).into());
    }
    Value::Object(m)
}

/// Keys are inserted in Go's struct order.
pub(super) fn encode(r: &CniResult, version: CniVersion, shape: &Shape) -> Value {
    let mut m = Map::new();
    m.insert("cniVersion".into(), version.as_str().into());
    if !r.interfaces.is_empty() {
        m.insert(
            "interfaces".into(),
            r.interfaces.iter().map(shape.interface).collect(),
        );
    }
    if !r.ips.is_empty() {
        m.insert(
            "ips".into(),
            r.ips
                .iter()
                .map(|ip| ip_value(ip, shape.ip_version))
                .collect(),
        );
    }
    if !r.routes.is_empty() {
        m.insert(
            "routes".into(),
            r.routes.iter().map(|rt| route_value(rt, true)).collect(),
        );
    }
    if shape.empty_dns || !r.dns.is_empty() {
        m.insert("dns".into(), dns_value(&r.dns));
    }
    Value::Object(m)
}

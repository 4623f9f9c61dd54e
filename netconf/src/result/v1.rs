//! 1.0.0 / 1.1.0 results (Go `types100`; both versions share one type).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::addr::{cidr_string, ip_string, parse_cidr, parse_ip};
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

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireInterface {
    name: String,
    mac: String,
    mtu: u32,
    sandbox: String,
    #[serde(rename = "socketPath")]
    socket_path: String,
    #[serde(rename = "pciID")]
    pci_id: String,
}

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
                mtu: (i.mtu != 0).then_some(i.mtu),
                sandbox: opt(i.sandbox),
                socket_path: opt(i.socket_path),
                pci_id: opt(i.pci_id),
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
    if let Some(mtu) = i.mtu.filter(|m| *m != 0) {
        m.insert("mtu".into(), mtu.into());
    }
    put_str(&mut m, "sandbox", &i.sandbox);
    put_str(&mut m, "socketPath", &i.socket_path);
    put_str(&mut m, "pciID", &i.pci_id);
    Value::Object(m)
}

fn ip_value(ip: &IpConfig) -> Value {
    let mut m = Map::new();
    if let Some(idx) = ip.interface {
        m.insert("interface".into(), idx.into());
    }
    m.insert("address".into(), cidr_string(ip.address).into());
    if let Some(gw) = ip.gateway {
        m.insert("gateway".into(), ip_string(gw).into());
    }
    Value::Object(m)
}

/// Keys are inserted in Go's struct order; the printer sorts them as Go's map re-marshal does.
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
    if !r.dns.is_empty() {
        m.insert("dns".into(), dns_value(&r.dns));
    }
    Value::Object(m)
}

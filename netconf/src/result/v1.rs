//! 1.0.0 / 1.1.0 results (Go `types100`; both versions share one type).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::listed::{self, Shape};
use super::wire::{opt, put_str};
use super::{CniResult, Interface, Parsed};
use crate::version::CniVersion;

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

impl From<WireInterface> for Interface {
    fn from(i: WireInterface) -> Interface {
        Interface {
            name: i.name,
            mac: opt(i.mac),
            mtu: (i.mtu != 0).then_some(i.mtu),
            sandbox: opt(i.sandbox),
            socket_path: opt(i.socket_path),
            pci_id: opt(i.pci_id),
        }
    }
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

/// The printer sorts keys afterwards, as Go's map re-marshal does.
const SHAPE: Shape = Shape {
    interface: interface_value,
    ip_version: false,
    empty_dns: false,
};

pub(super) fn parse(v: Value) -> Result<Parsed, String> {
    listed::parse::<WireInterface>(v)
}

pub(super) fn encode(r: &CniResult, version: CniVersion) -> Value {
    listed::encode(r, version, &SHAPE)
}

//! 0.3.0 / 0.3.1 / 0.4.0 results (Go `types040`).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::listed::{self, Shape};
use super::wire::{opt, put_str};
use super::{CniResult, Interface, Parsed};
use crate::version::CniVersion;

/// 0.4.0 interfaces know only these three fields; anything else in the JSON is ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct WireInterface {
    name: String,
    mac: String,
    sandbox: String,
}

impl From<WireInterface> for Interface {
    fn from(i: WireInterface) -> Interface {
        Interface {
            name: i.name,
            mac: opt(i.mac),
            sandbox: opt(i.sandbox),
            ..Interface::default()
        }
    }
}

fn interface_value(i: &Interface) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), i.name.clone().into());
    put_str(&mut m, "mac", &i.mac);
    put_str(&mut m, "sandbox", &i.sandbox);
    Value::Object(m)
}

const SHAPE: Shape = Shape {
    interface: interface_value,
    ip_version: true,
    empty_dns: true,
};

pub(super) fn parse(v: Value) -> Result<Parsed, String> {
    listed::parse::<WireInterface>(v)
}

pub(super) fn encode(r: &CniResult, version: CniVersion) -> Value {
    listed::encode(r, version, &SHAPE)
}

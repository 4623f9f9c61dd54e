//! `ipam.routes` as upstream reads it: a JSON array decoded into CNI `types.Route` values and
//! written back in that struct's field order (`dst, gw, mtu, advmss, priority, table, scope`),
//! dropping unknown keys and zero `omitempty` fields.

use ipnet::IpNet;
use netconf::gojson::{self, TypeError};
use netconf::result::{cidr_string, ip_string};
use serde_json::{Map, Value};

/// A route as the delegate receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamRoute {
    /// Host bits kept, as Go's `types.IPNet` does.
    pub dst: IpNet,
    pub gw: Option<std::net::IpAddr>,
    pub mtu: i64,
    pub advmss: i64,
    pub priority: i64,
    pub table: Option<i64>,
    pub scope: Option<i64>,
}

impl IpamRoute {
    pub fn to_network(dst: IpNet) -> IpamRoute {
        IpamRoute {
            dst,
            gw: None,
            mtu: 0,
            advmss: 0,
            priority: 0,
            table: None,
            scope: None,
        }
    }

    /// The object Go marshals: struct order, `omitempty` on the plain ints and `gw`.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("dst".into(), cidr_string(self.dst).into());
        if let Some(gw) = self.gw {
            m.insert("gw".into(), ip_string(gw).into());
        }
        for (key, v) in [
            ("mtu", self.mtu),
            ("advmss", self.advmss),
            ("priority", self.priority),
        ] {
            if v != 0 {
                m.insert(key.into(), v.into());
            }
        }
        if let Some(t) = self.table {
            m.insert("table".into(), t.into());
        }
        if let Some(s) = self.scope {
            m.insert("scope".into(), s.into());
        }
        Value::Object(m)
    }
}

fn field_err(v: &Value, field: &str, go_type: &str) -> String {
    TypeError::new(v, go_type).at("route", field).to_string()
}

fn int_field(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, String> {
    match gojson::get_folded(obj, field) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| TypeError::number(n, "int").at("route", field).to_string()),
        Some(other) => Err(field_err(other, field, "int")),
    }
}

fn parse_one(v: &Value) -> Result<IpamRoute, String> {
    let obj = match v {
        Value::Object(m) => m,
        other => return Err(TypeError::new(other, "types.route").to_string()),
    };
    // A missing dst would make Go emit `"<nil>"` and fail later inside the delegate; failing
    // here names the real culprit.
    let dst_text = match gojson::get_folded(obj, "dst") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(TypeError::new(other, "string").to_string()),
    };
    let dst = dst_text
        .parse::<IpNet>()
        .map_err(|_| format!("invalid CIDR address: {dst_text}"))?;
    let gw = match gojson::get_folded(obj, "gw") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.parse().map_err(|_| format!("invalid IP address: {s}"))?),
        Some(other) => return Err(field_err(other, "gw", "net.IP")),
    };
    Ok(IpamRoute {
        dst,
        gw,
        mtu: int_field(obj, "mtu")?.unwrap_or(0),
        advmss: int_field(obj, "advmss")?.unwrap_or(0),
        priority: int_field(obj, "priority")?.unwrap_or(0),
        table: int_field(obj, "table")?,
        scope: int_field(obj, "scope")?,
    })
}

/// Decodes the user's `ipam.routes` value (`null` = none).
pub fn parse(v: &Value) -> Result<Vec<IpamRoute>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(parse_one).collect(),
        other => Err(TypeError::new(other, "[]types.Route").to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_round_trip_in_struct_order_without_unknown_keys() {
        let routes = parse(&json!([
            {"Scope": 0, "table": 100, "priority": 5, "advmss": 0, "MTU": 1400, "gw": "10.0.0.1", "dst": "10.9.1.2/16", "x": 1},
            {"dst": "fd00::/8", "gw": ""}
        ]))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&routes.iter().map(IpamRoute::to_value).collect::<Vec<_>>())
                .unwrap(),
            r#"[{"dst":"10.9.1.2/16","gw":"10.0.0.1","mtu":1400,"priority":5,"table":100,"scope":0},{"dst":"fd00::/8"}]"#
        );
    }

    #[test]
    fn malformed_routes_are_go_errors() {
        assert_eq!(
            parse(&json!([{"dst": "nope"}])).unwrap_err(),
            "invalid CIDR address: nope"
        );
        assert_eq!(parse(&json!([{}])).unwrap_err(), "invalid CIDR address: ");
        assert_eq!(
            parse(&json!([{"dst": "10.0.0.0/8", "gw": "x"}])).unwrap_err(),
            "invalid IP address: x"
        );
        assert_eq!(
            parse(&json!({"dst": "10.0.0.0/8"})).unwrap_err(),
            "json: cannot unmarshal object into Go value of type []types.Route"
        );
        assert_eq!(
            parse(&json!([{"dst": "10.0.0.0/8", "mtu": "9000"}])).unwrap_err(),
            "json: cannot unmarshal string into Go struct field route.mtu of type int"
        );
        assert_eq!(
            parse(&json!(["10.0.0.0/8"])).unwrap_err(),
            "json: cannot unmarshal string into Go value of type types.route"
        );
        assert!(parse(&Value::Null).unwrap().is_empty());
    }
}

//! `ipam.routes` as upstream reads it: a JSON array decoded into CNI `types.Route` values and
//! written back in that struct's field order (`dst, gw, mtu, advmss, priority, table, scope`),
//! dropping unknown keys and zero `omitempty` fields.

use ipnet::IpNet;
use netconf::gojson::{fields, At, Decoder, Failure, Step};
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

const ROUTE_FIELDS: &[&str] = &["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];

/// One element. CNI's `types.Route` unmarshals itself with a nested `json.Unmarshal` (so
/// errors are located in its inner `route` struct), and upstream re-marshals `ipam.routes`
/// before decoding it, which sorts every object's keys: Go decodes them in that order.
fn parse_one(v: &Value) -> Step<IpamRoute> {
    let Value::Object(obj) = v else {
        return Err(Failure::mismatch(v, "types.route"));
    };
    let mut sorted: Vec<(&String, &Value)> = obj.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let sorted: Map<String, Value> = sorted
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut d = Decoder::default();
    let mut dst = None;
    let mut route = IpamRoute::to_network(IpNet::default());
    for (field, v) in fields(&sorted, ROUTE_FIELDS) {
        let at = At::top().field("route", field);
        match field {
            "dst" => dst = Some(parse_dst(&at, v)?),
            "gw" => match v {
                Value::String(s) if s.is_empty() => route.gw = None,
                Value::String(s) => {
                    route.gw = Some(
                        s.parse()
                            .map_err(|_| Failure::text(format!("invalid IP address: {s}")))?,
                    )
                }
                Value::Null => route.gw = None,
                other => d.mismatch(&at, other, "net.IP"),
            },
            "mtu" => d.int(&at, v, &mut route.mtu),
            "advmss" => d.int(&at, v, &mut route.advmss),
            "priority" => d.int(&at, v, &mut route.priority),
            "table" => d.opt_int(&at, v, &mut route.table),
            _ => d.opt_int(&at, v, &mut route.scope),
        }
    }
    d.finish()?;
    // Without dst Go would emit `"<nil>"` and the delegate would fail later; failing here
    // names the real culprit.
    route.dst = dst.ok_or_else(|| Failure::text("invalid CIDR address: "))?;
    Ok(route)
}

/// `types.IPNet`: a string, then `net.ParseCIDR` (host bits kept); `null` parses as "".
fn parse_dst(at: &At, v: &Value) -> Step<IpNet> {
    let text = match v {
        Value::String(s) => s.as_str(),
        Value::Null => "",
        other => return Err(Failure::mismatch(other, "string").located(at)),
    };
    text.parse()
        .map_err(|_| Failure::text(format!("invalid CIDR address: {text}")))
}

/// Decodes the user's `ipam.routes` value (`null` = none).
pub fn parse(v: &Value) -> Result<Vec<IpamRoute>, String> {
    let mut d = Decoder::default();
    let mut routes = Vec::new();
    for item in d.array(&At::top(), v, "[]types.Route").unwrap_or_default() {
        routes.push(parse_one(item).map_err(|f| f.to_string())?);
    }
    d.finish().map_err(|f| f.to_string())?;
    Ok(routes)
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

    /// Go decodes the re-marshalled routes: keys in sorted order, a mismatch kept while a
    /// failing `dst` or `gw` parse stops at once (checked against Go 1.19 with upstream's types).
    #[test]
    fn errors_come_in_go_order() {
        let err = |v: Value| parse(&v).unwrap_err();
        assert_eq!(
            err(json!([{"mtu": "x", "advmss": "y", "dst": "10.0.0.0/8"}])),
            "json: cannot unmarshal string into Go struct field route.advmss of type int"
        );
        assert_eq!(
            err(json!([{"advmss": "y", "dst": "bad"}])),
            "invalid CIDR address: bad"
        );
        assert_eq!(
            err(json!([{"dst": 5}])),
            "json: cannot unmarshal number into Go struct field route.dst of type string"
        );
        assert_eq!(
            err(json!([{"mtu": "x"}])),
            "json: cannot unmarshal string into Go struct field route.mtu of type int"
        );
        assert_eq!(
            err(json!([{"gw": 5, "dst": "10.0.0.0/8"}])),
            "json: cannot unmarshal number into Go struct field route.gw of type net.IP"
        );
    }
}

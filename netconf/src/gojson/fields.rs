//! Go `encoding/json` decoding of JSON objects into Go structs, one field at a time, for the
//! plugin configs whose error text is part of upstream's interface (`failed to load netconf:
//! json: cannot unmarshal string into Go struct field NetConf.mtu of type int`).
//!
//! A caller walks an object's keys in document order with [`fields`] and stores each value with
//! the [`Decoder`] method named after the field's Go type. The rules, all Go's:
//! - a key lands in the field of the same name, else in the first field whose name equals it
//!   under case folding; unknown keys are skipped;
//! - a value of the wrong JSON kind is remembered while decoding goes on (the first one in
//!   document order is reported) and the field keeps what it had;
//! - `null` leaves a string, bool, number or struct alone and resets a pointer, slice or map;
//! - a custom unmarshaller's failure (an address that does not parse) stops the decode at once
//!   and wins over any remembered mismatch ([`Failure::Text`]).
//!
//! Mismatches name the innermost Go struct being filled and the dotted path of JSON field
//! names from the top ([`At`]), as Go's decoder does.

use std::fmt;

use serde_json::{Map, Value};

use super::{match_field, TypeError};

/// Where a value sits: the Go struct whose field holds it and the JSON field names leading
/// there. [`At::top`] is outside any struct field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct At {
    strukt: &'static str,
    path: Vec<&'static str>,
}

impl At {
    /// The top-level value: a mismatch here reads `into Go value of type T`.
    pub fn top() -> At {
        At::default()
    }

    /// Field `name` of Go struct type `strukt` (its short name, `""` when anonymous).
    pub fn field(&self, strukt: &'static str, name: &'static str) -> At {
        let mut path = self.path.clone();
        path.push(name);
        At { strukt, path }
    }

    fn is_top(&self) -> bool {
        self.strukt.is_empty() && self.path.is_empty()
    }

    /// Go's `addErrorContext`: inside a struct field, a type error takes that location.
    fn locate(&self, e: TypeError) -> TypeError {
        if self.is_top() {
            e
        } else {
            e.at(self.strukt, self.path.join("."))
        }
    }
}

/// Why a decode failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A JSON value of the wrong kind for its Go type.
    Type(TypeError),
    /// A custom unmarshaller's error, final as worded (`invalid CIDR address: x`).
    Text(String),
}

impl Failure {
    pub fn text(msg: impl Into<String>) -> Failure {
        Failure::Text(msg.into())
    }

    /// A value of the wrong JSON kind for `go_type`, not yet located.
    pub fn mismatch(v: &Value, go_type: &str) -> Failure {
        Failure::Type(TypeError::new(v, go_type))
    }

    /// The failure as the decoder filling `at` reports it. A custom unmarshaller's nested
    /// decode reports its own struct and field; the outer decode moves that to its field.
    pub fn located(self, at: &At) -> Failure {
        match self {
            Failure::Type(e) => Failure::Type(at.locate(e)),
            text => text,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Type(e) => e.fmt(f),
            Failure::Text(t) => f.write_str(t),
        }
    }
}

impl std::error::Error for Failure {}

/// A decode step: `Err` stops the whole decode.
pub type Step<T> = Result<T, Failure>;

/// The keys of `obj` that land in one of the struct fields `names`, in document order, each
/// with the field name it lands in.
pub fn fields<'m>(
    obj: &'m Map<String, Value>,
    names: &'static [&'static str],
) -> impl Iterator<Item = (&'static str, &'m Value)> + 'm {
    obj.iter()
        .filter_map(move |(k, v)| match_field(k, names).map(|name| (name, v)))
}

/// One decode's state: the first mismatch, kept while decoding goes on (Go's `saveError`).
#[derive(Debug, Default)]
pub struct Decoder {
    saved: Option<TypeError>,
}

impl Decoder {
    /// Remembers a value of the wrong JSON kind for `go_type` at `at`.
    pub fn mismatch(&mut self, at: &At, v: &Value, go_type: &str) {
        self.save(at, TypeError::new(v, go_type));
    }

    fn save(&mut self, at: &At, e: TypeError) {
        if self.saved.is_none() {
            self.saved = Some(at.locate(e));
        }
    }

    /// Ends the decode: the first mismatch, if any.
    pub fn finish(self) -> Step<()> {
        match self.saved {
            Some(e) => Err(Failure::Type(e)),
            None => Ok(()),
        }
    }

    /// A Go `string`.
    pub fn string(&mut self, at: &At, v: &Value, out: &mut String) {
        match v {
            Value::String(s) => s.clone_into(out),
            Value::Null => {}
            other => self.mismatch(at, other, "string"),
        }
    }

    /// A Go `*string`.
    pub fn opt_string(&mut self, at: &At, v: &Value, out: &mut Option<String>) {
        match v {
            Value::String(s) => *out = Some(s.clone()),
            Value::Null => *out = None,
            other => self.mismatch(at, other, "string"),
        }
    }

    /// A Go `bool`.
    pub fn bool(&mut self, at: &At, v: &Value, out: &mut bool) {
        match v {
            Value::Bool(b) => *out = *b,
            Value::Null => {}
            other => self.mismatch(at, other, "bool"),
        }
    }

    /// A Go `*bool`.
    pub fn opt_bool(&mut self, at: &At, v: &Value, out: &mut Option<bool>) {
        match v {
            Value::Bool(b) => *out = Some(*b),
            Value::Null => *out = None,
            other => self.mismatch(at, other, "bool"),
        }
    }

    /// A Go `int` (64-bit): an integer literal in range. Anything else is a mismatch; a
    /// number that does not fit is named in the message, as Go names it.
    pub fn int(&mut self, at: &At, v: &Value, out: &mut i64) {
        if !v.is_null() {
            if let Some(i) = self.int_value(at, v) {
                *out = i;
            }
        }
    }

    /// A Go `*int`.
    pub fn opt_int(&mut self, at: &At, v: &Value, out: &mut Option<i64>) {
        match v {
            Value::Null => *out = None,
            v => {
                if let Some(i) = self.int_value(at, v) {
                    *out = Some(i);
                }
            }
        }
    }

    fn int_value(&mut self, at: &At, v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => {
                let i = n.as_i64();
                if i.is_none() {
                    self.save(at, TypeError::number(n, "int"));
                }
                i
            }
            other => {
                self.mismatch(at, other, "int");
                None
            }
        }
    }

    /// An object for a Go struct, or pointer to one, of type `go_type`. `null` and
    /// mismatches give `None`; for a pointer field the caller resets it on `null`.
    pub fn object<'v>(
        &mut self,
        at: &At,
        v: &'v Value,
        go_type: &str,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            Value::Null => None,
            other => {
                self.mismatch(at, other, go_type);
                None
            }
        }
    }

    /// A Go `map[string]interface{}` (whose values take any JSON).
    pub fn any_map(&mut self, at: &At, v: &Value, out: &mut Option<Map<String, Value>>) {
        match v {
            Value::Object(m) => *out = Some(m.clone()),
            Value::Null => *out = None,
            other => self.mismatch(at, other, "map[string]interface {}"),
        }
    }

    /// The items for a Go slice of type `go_type`; `null` gives no items (the slice is reset
    /// to nil, which callers that tell nil from empty check with `v.is_null()`).
    pub fn array<'v>(&mut self, at: &At, v: &'v Value, go_type: &str) -> Option<&'v [Value]> {
        match v {
            Value::Array(a) => Some(a),
            Value::Null => Some(&[]),
            other => {
                self.mismatch(at, other, go_type);
                None
            }
        }
    }

    /// A Go `[]string`: an element of the wrong kind is a mismatch of the element type and
    /// keeps its zero value, since Go still grows the slice.
    pub fn strings(&mut self, at: &At, v: &Value, out: &mut Vec<String>) {
        let Some(items) = self.array(at, v, "[]string") else {
            return;
        };
        *out = items
            .iter()
            .map(|item| {
                let mut s = String::new();
                self.string(at, item, &mut s);
                s
            })
            .collect();
    }

    /// A Go `*[]string`.
    pub fn opt_strings(&mut self, at: &At, v: &Value, out: &mut Option<Vec<String>>) {
        if v.is_null() {
            *out = None;
        } else if matches!(v, Value::Array(_)) {
            self.strings(at, v, out.get_or_insert_with(Vec::new));
        } else {
            self.mismatch(at, v, "[]string");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: &Value) -> &Map<String, Value> {
        v.as_object().unwrap()
    }

    #[test]
    fn keys_land_in_fields_in_document_order_exact_name_first() {
        let v = json!({"DATADIR": "/a", "other": 1, "dataDir": "/b", "Name": 1, "name": 2});
        let got: Vec<_> = fields(obj(&v), &["dataDir", "Name", "name"])
            .map(|(n, v)| (n, v.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("dataDir", json!("/a")),
                ("dataDir", json!("/b")),
                ("Name", json!(1)),
                ("name", json!(2)),
            ]
        );
        let folded: Vec<_> = fields(obj(&json!({"NAME": 3})), &["Name", "name"])
            .map(|(n, _)| n)
            .collect();
        assert_eq!(folded, ["Name"], "the first folded match in field order");
    }

    #[test]
    fn the_first_mismatch_is_reported_where_it_sits_and_decoding_goes_on() {
        let mut d = Decoder::default();
        let ipam = At::top().field("Net", "ipam");
        let mut s = String::new();
        d.string(&ipam.field("IPAMConfig", "dataDir"), &json!(5), &mut s);
        d.string(&ipam.field("IPAMConfig", "type"), &json!(true), &mut s);
        d.string(
            &ipam.field("IPAMConfig", "type"),
            &json!("host-local"),
            &mut s,
        );
        assert_eq!(s, "host-local");
        assert_eq!(
            d.finish().unwrap_err().to_string(),
            "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.dataDir of type string"
        );
    }

    #[test]
    fn null_leaves_values_alone_and_resets_pointers_slices_and_maps() {
        let mut d = Decoder::default();
        let at = At::top().field("NetConf", "x");
        let (mut s, mut b, mut i) = ("kept".to_owned(), true, 7);
        d.string(&at, &Value::Null, &mut s);
        d.bool(&at, &Value::Null, &mut b);
        d.int(&at, &Value::Null, &mut i);
        assert_eq!((s.as_str(), b, i), ("kept", true, 7));
        let (mut os, mut ob, mut oi) = (Some("x".to_owned()), Some(true), Some(1));
        d.opt_string(&at, &Value::Null, &mut os);
        d.opt_bool(&at, &Value::Null, &mut ob);
        d.opt_int(&at, &Value::Null, &mut oi);
        assert_eq!((os, ob, oi), (None, None, None));
        let mut m = Some(Map::new());
        d.any_map(&at, &Value::Null, &mut m);
        assert_eq!(m, None);
        let mut strs = Some(vec!["a".to_owned()]);
        d.opt_strings(&at, &Value::Null, &mut strs);
        assert_eq!(strs, None);
        assert_eq!(d.array(&at, &Value::Null, "[]int"), Some(&[][..]));
        assert_eq!(d.object(&at, &Value::Null, "T"), None);
        assert!(d.finish().is_ok());
    }

    #[test]
    fn ints_take_integer_literals_only() {
        let at = At::top().field("route", "mtu");
        let mut d = Decoder::default();
        let mut out = None;
        d.opt_int(&at, &json!(1500), &mut out);
        assert_eq!(out, Some(1500));
        d.opt_int(&at, &json!(1.5), &mut out);
        assert_eq!(out, Some(1500), "a mismatch keeps the value");
        assert_eq!(
            d.finish().unwrap_err().to_string(),
            "json: cannot unmarshal number 1.5 into Go struct field route.mtu of type int"
        );
        let mut d = Decoder::default();
        let mut n = 0;
        d.int(&at, &json!(u64::MAX), &mut n);
        d.int(&at, &json!("9000"), &mut n);
        assert_eq!(
            d.finish().unwrap_err().to_string(),
            "json: cannot unmarshal number 18446744073709551615 into Go struct field route.mtu of type int"
        );
    }

    #[test]
    fn string_lists_keep_bad_elements_as_zero_values() {
        let at = At::top().field("NetConf", "dns").field("DNS", "search");
        let mut d = Decoder::default();
        let mut out = vec!["old".to_owned()];
        d.strings(&at, &json!(["a", 1, null, "b"]), &mut out);
        assert_eq!(out, ["a", "", "", "b"]);
        assert_eq!(
            d.finish().unwrap_err().to_string(),
            "json: cannot unmarshal number into Go struct field DNS.dns.search of type string"
        );
        let mut d = Decoder::default();
        let mut opt = None;
        d.opt_strings(&at, &json!({}), &mut opt);
        assert_eq!(opt, None);
        assert!(d
            .finish()
            .unwrap_err()
            .to_string()
            .ends_with("DNS.dns.search of type []string"));
    }

    #[test]
    fn top_level_and_relocated_failures() {
        assert_eq!(
            Failure::mismatch(&json!([]), "types.route")
                .located(&At::top())
                .to_string(),
            "json: cannot unmarshal array into Go value of type types.route"
        );
        let routes = At::top().field("Net", "ipam").field("IPAMConfig", "routes");
        let inner = Failure::Type(TypeError::new(&json!("x"), "int").at("route", "mtu"));
        assert_eq!(
            inner.located(&routes).to_string(),
            "json: cannot unmarshal string into Go struct field IPAMConfig.ipam.routes of type int"
        );
        assert_eq!(
            Failure::text("invalid CIDR address: x")
                .located(&routes)
                .to_string(),
            "invalid CIDR address: x"
        );
        let mut d = Decoder::default();
        d.mismatch(&At::top(), &json!(5), "main.NetConf");
        assert_eq!(
            d.finish().unwrap_err().to_string(),
            "json: cannot unmarshal number into Go value of type main.NetConf"
        );
    }
}

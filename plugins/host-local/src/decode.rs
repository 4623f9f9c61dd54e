//! The slice of Go `encoding/json` semantics the IPAM config needs, over `serde_json::Value`.
//!
//! Upstream decodes the config with `json.Unmarshal` into Go structs, and its error text is what
//! users see. The rules reproduced here: object keys are matched to fields case-insensitively and
//! in document order (a later duplicate wins); `null` leaves a value alone; unknown keys are
//! ignored; a value of the wrong JSON type is remembered (the first one wins) while decoding goes
//! on; a custom unmarshaller's failure (bad address, bad CIDR) stops decoding at once and wins over
//! any remembered type error.

use netconf::gojson::TypeError;
use serde_json::{Map, Value};

use crate::error::Error;

/// Where a value sits, as Go's decoder reports it: the innermost Go struct type being filled and
/// the dotted path of JSON field names from the top.
#[derive(Debug, Clone)]
pub struct Ctx {
    strukt: &'static str,
    path: Vec<&'static str>,
}

impl Ctx {
    pub fn root(strukt: &'static str) -> Ctx {
        Ctx {
            strukt,
            path: Vec::new(),
        }
    }

    /// Context for field `name` of struct type `strukt` (`""` for anonymous struct types).
    pub fn field(&self, strukt: &'static str, name: &'static str) -> Ctx {
        let mut path = self.path.clone();
        path.push(name);
        Ctx { strukt, path }
    }
}

/// A decoding failure.
#[derive(Debug, Clone)]
pub enum Failure {
    /// A JSON value of the wrong kind for its Go type.
    Type(TypeError),
    /// A message that is final as it is (e.g. `invalid CIDR address: x`).
    Text(String),
}

impl Failure {
    pub fn text(msg: impl Into<String>) -> Failure {
        Failure::Text(msg.into())
    }

    pub fn type_mismatch(v: &Value, go_type: &str) -> Failure {
        Failure::Type(TypeError::new(v, go_type))
    }

    /// Go's `addErrorContext`: a type error takes the location of the decoder that reports it.
    pub fn located(self, ctx: &Ctx) -> Failure {
        match self {
            Failure::Type(e) if !ctx.path.is_empty() || !ctx.strukt.is_empty() => {
                Failure::Type(e.at(ctx.strukt, ctx.path.join(".")))
            }
            other => other,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Type(e) => e.to_string(),
            Failure::Text(t) => t.clone(),
        }
    }

    pub fn into_error(self) -> Error {
        Error::Decode(self.message())
    }
}

/// Result of decoding one value: `Err` aborts the whole decode.
pub type Step<T> = Result<T, Failure>;

/// Collects the first type mismatch while decoding continues, like Go's `saveError`.
#[derive(Debug, Default)]
pub struct Decoder {
    saved: Option<Failure>,
}

impl Decoder {
    pub fn mismatch(&mut self, ctx: &Ctx, v: &Value, go_type: &str) {
        self.save(ctx, TypeError::new(v, go_type));
    }

    fn save(&mut self, ctx: &Ctx, e: TypeError) {
        if self.saved.is_none() {
            self.saved = Some(Failure::Type(e).located(ctx));
        }
    }

    /// Ends a decode: the first remembered type error, if any.
    pub fn finish(self) -> Step<()> {
        match self.saved {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// A Go `string` field.
    pub fn string(&mut self, ctx: &Ctx, v: &Value, out: &mut String) {
        match v {
            Value::String(s) => *out = s.clone(),
            Value::Null => {}
            other => self.mismatch(ctx, other, "string"),
        }
    }

    /// A Go `int` / `*int` field; `Some` only when a number that fits was given.
    pub fn int(&mut self, ctx: &Ctx, v: &Value, out: &mut Option<i64>) {
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => *out = Some(i),
                None => self.save(ctx, TypeError::number(n, "int")),
            },
            Value::Null => {}
            other => self.mismatch(ctx, other, "int"),
        }
    }

    /// An object for a Go struct (or pointer to one) of type `go_type`: returns it when the JSON
    /// value is an object; `null` and mismatches return `None`.
    pub fn object<'v>(
        &mut self,
        ctx: &Ctx,
        v: &'v Value,
        go_type: &str,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            Value::Null => None,
            other => {
                self.mismatch(ctx, other, go_type);
                None
            }
        }
    }

    /// An array for a Go slice of type `go_type`; `null` clears the slice (returns `Some(&[])`).
    pub fn array<'v>(&mut self, ctx: &Ctx, v: &'v Value, go_type: &str) -> Option<&'v [Value]> {
        match v {
            Value::Array(a) => Some(a),
            Value::Null => Some(&[]),
            other => {
                self.mismatch(ctx, other, go_type);
                None
            }
        }
    }
}

/// The fields of `obj` that match one of `fields`, in document order, paired with the field's
/// canonical name. Go matches keys to fields ignoring case.
pub fn fields<'m>(
    obj: &'m Map<String, Value>,
    names: &'static [&'static str],
) -> impl Iterator<Item = (&'static str, &'m Value)> + 'm {
    obj.iter().filter_map(move |(k, v)| {
        let folded = k.to_lowercase();
        names
            .iter()
            .find(|n| n.to_lowercase() == folded)
            .map(|n| (*n, v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_case_insensitively_in_document_order() {
        let v = json!({"DATADIR": "/a", "other": 1, "dataDir": "/b"});
        let got: Vec<_> = fields(v.as_object().unwrap(), &["dataDir"])
            .map(|(n, v)| (n, v.clone()))
            .collect();
        assert_eq!(got, [("dataDir", json!("/a")), ("dataDir", json!("/b"))]);
    }

    #[test]
    fn first_type_error_is_kept_with_its_location() {
        let mut d = Decoder::default();
        let top = Ctx::root("Net");
        let ipam = top.field("IPAMConfig", "ipam");
        let mut s = String::new();
        d.string(&ipam.field("IPAMConfig", "dataDir"), &json!(5), &mut s);
        d.string(&ipam.field("IPAMConfig", "type"), &json!(true), &mut s);
        assert_eq!(
            d.finish().unwrap_err().message(),
            "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.dataDir of type string"
        );
    }

    #[test]
    fn ints_reject_fractions_and_other_kinds() {
        let ctx = Ctx::root("route").field("route", "mtu");
        let mut out = None;
        let mut d = Decoder::default();
        d.int(&ctx, &json!(1500), &mut out);
        assert_eq!(out, Some(1500));
        d.int(&ctx, &json!(1.5), &mut out);
        assert_eq!(
            d.finish().unwrap_err().message(),
            "json: cannot unmarshal number 1.5 into Go struct field route.mtu of type int"
        );
        let unlocated = Failure::type_mismatch(&json!("x"), "types.route");
        assert_eq!(
            unlocated.message(),
            "json: cannot unmarshal string into Go value of type types.route"
        );
    }
}

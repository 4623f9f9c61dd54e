//! Typed field extraction from a JSON object with the observable rules of Go's
//! `encoding/json` decoding into the upstream `NetConf` struct.
//!
//! Upstream's error text is part of its interface (`failed to load netconf: json: cannot
//! unmarshal string into Go struct field NetConf.portIsolation of type bool`), so wrong JSON
//! kinds are reported the way Go does: the innermost Go struct type, the dotted path of JSON
//! field names from the top, and the Go type of the field. Like Go, decoding carries on after a
//! type mismatch and the first mismatch *in document order* is reported at the end.

use netconf::gojson::TypeError;
use serde_json::{Map, Value};

/// Where a field lives, for error messages: Go struct type name and JSON path.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub strukt: &'a str,
    pub path: &'a str,
}

/// Collects values and remembers the first type mismatch.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Top-level keys in document order: Go decodes in that order, so the mismatch it
    /// reports is the one under the earliest key, whatever order we extract fields in.
    keys: Vec<String>,
    first_error: Option<(usize, String)>,
}

/// The value Go would leave in the struct field whose JSON name is `key`: keys match
/// case-insensitively, a later duplicate overwrites an earlier one, `null` is a no-op.
pub fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    netconf::gojson::get_folded(obj, key)
}

impl Decoder {
    /// A decoder for the fields of `obj`.
    pub fn new(obj: &Map<String, Value>) -> Decoder {
        Decoder {
            keys: obj.keys().cloned().collect(),
            first_error: None,
        }
    }

    /// The first mismatch, if any, worded as Go's `UnmarshalTypeError`.
    pub fn finish(self) -> Result<(), String> {
        match self.first_error {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Document position of the top-level key `path` lives under (the last duplicate is
    /// the one Go keeps).
    fn rank(&self, path: &str) -> usize {
        let top = path.split('.').next().unwrap_or(path);
        self.keys
            .iter()
            .rposition(|k| netconf::gojson::eq_fold(k, top))
            .unwrap_or(usize::MAX)
    }

    /// A value of the wrong JSON kind. Go adds the literal only for numbers that do not fit
    /// a numeric field, which `int` reports itself.
    fn mismatch(&mut self, v: &Value, at: At<'_>, go_type: &str) {
        self.record(TypeError::new(v, go_type), at);
    }

    fn record(&mut self, e: TypeError, at: At<'_>) {
        let rank = self.rank(at.path);
        if self.first_error.as_ref().map_or(true, |(r, _)| rank < *r) {
            self.first_error = Some((rank, e.at(at.strukt, at.path).to_string()));
        }
    }

    pub fn bool(&mut self, v: Option<&Value>, at: At<'_>) -> Option<bool> {
        match v? {
            Value::Bool(b) => Some(*b),
            other => {
                self.mismatch(other, at, "bool");
                None
            }
        }
    }

    pub fn string(&mut self, v: Option<&Value>, at: At<'_>) -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.mismatch(other, at, "string");
                None
            }
        }
    }

    /// A Go `int` (64-bit): integral JSON numbers in range; anything else is a mismatch.
    pub fn int(&mut self, v: Option<&Value>, at: At<'_>) -> Option<i64> {
        match v? {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    self.record(TypeError::number(n, "int"), at);
                    None
                }
            },
            other => {
                self.mismatch(other, at, "int");
                None
            }
        }
    }

    pub fn object<'v>(
        &mut self,
        v: Option<&'v Value>,
        at: At<'_>,
        go_type: &str,
    ) -> Option<&'v Map<String, Value>> {
        match v? {
            Value::Object(m) => Some(m),
            other => {
                self.mismatch(other, at, go_type);
                None
            }
        }
    }

    pub fn array<'v>(
        &mut self,
        v: Option<&'v Value>,
        at: At<'_>,
        go_type: &str,
    ) -> Option<&'v [Value]> {
        match v? {
            Value::Array(a) => Some(a),
            other => {
                self.mismatch(other, at, go_type);
                None
            }
        }
    }

    /// A Go `[]string`: a wrong element kind is a mismatch of the element type, and the
    /// element keeps its zero value (Go still grows the slice).
    pub fn strings(&mut self, v: Option<&Value>, at: At<'_>) -> Vec<String> {
        let Some(items) = self.array(v, at, "[]string") else {
            return Vec::new();
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => {
                    self.mismatch(other, at, "string");
                    String::new()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AT: At<'static> = At {
        strukt: "NetConf",
        path: "mtu",
    };

    fn decoder(json: Value) -> Decoder {
        Decoder::new(json.as_object().unwrap())
    }

    #[test]
    fn first_mismatch_wins_and_decoding_goes_on() {
        let mut d = decoder(json!({"mtu": "1500"}));
        assert_eq!(d.int(Some(&json!("1500")), AT), None);
        assert_eq!(d.bool(Some(&json!(true)), AT), Some(true));
        assert_eq!(d.bool(Some(&json!(1)), AT), None);
        assert_eq!(
            d.finish().unwrap_err(),
            "json: cannot unmarshal string into Go struct field NetConf.mtu of type int"
        );
    }

    #[test]
    fn numbers_that_do_not_fit_name_the_literal() {
        let mut d = decoder(json!({"mtu": 1.5}));
        assert_eq!(d.int(Some(&json!(1.5)), AT), None);
        assert_eq!(
            d.finish().unwrap_err(),
            "json: cannot unmarshal number 1.5 into Go struct field NetConf.mtu of type int"
        );
    }

    #[test]
    fn earliest_key_in_the_document_wins() {
        let mut d = decoder(json!({"Hairpinmode": 1, "mtu": "x"}));
        d.int(Some(&json!("x")), AT);
        d.bool(
            Some(&json!(1)),
            At {
                strukt: "NetConf",
                path: "hairpinMode",
            },
        );
        assert!(d
            .finish()
            .unwrap_err()
            .contains("NetConf.hairpinMode of type bool"));
    }

    #[test]
    fn keys_fold_case_and_null_is_absent() {
        let obj = json!({"MTU": 1400, "Mtu": 1450, "bridge": null});
        let obj = obj.as_object().unwrap();
        assert_eq!(field(obj, "mtu"), Some(&json!(1450)));
        assert_eq!(field(obj, "bridge"), None);
    }

    #[test]
    fn string_lists_report_the_element_type() {
        let mut d = decoder(json!({"dns": {}}));
        let at = At {
            strukt: "DNS",
            path: "dns.nameservers",
        };
        assert_eq!(
            d.strings(Some(&json!(["1.1.1.1", 8])), at),
            vec!["1.1.1.1".to_string(), String::new()]
        );
        assert_eq!(
            d.finish().unwrap_err(),
            "json: cannot unmarshal number into Go struct field DNS.dns.nameservers of type string"
        );
    }
}

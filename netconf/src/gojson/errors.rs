//! Go's `encoding/json` error texts, which upstream plugins print verbatim: syntax errors and
//! `*json.UnmarshalTypeError` (`json: cannot unmarshal string into Go struct field
//! NetConf.mtu of type int`).

use std::fmt;

use serde_json::{Number, Value};

/// A JSON syntax error worded like Go where the wording is well known (empty or truncated
/// input is by far the most common failure a runtime or user produces).
pub fn syntax_error_text(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected end of JSON input".to_owned()
    } else {
        e.to_string()
    }
}

/// The word Go uses for a JSON value's kind in `cannot unmarshal <kind>`.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A JSON value that does not fit the Go type it is decoded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// What was found: a kind word, or `number <literal>` for a number that does not fit.
    pub value: String,
    /// The Go type of the destination, as Go prints it (`int`, `[]string`, `types.IPAM`).
    pub go_type: String,
    /// Innermost Go struct type and the dotted path of JSON field names from the top, when
    /// the value sits in a struct field (the struct name is empty for anonymous structs).
    pub field: Option<(String, String)>,
}

impl TypeError {
    /// A value of the wrong JSON kind for `go_type`.
    pub fn new(v: &Value, go_type: impl Into<String>) -> TypeError {
        TypeError {
            value: kind(v).to_owned(),
            go_type: go_type.into(),
            field: None,
        }
    }

    /// A number that does not fit `go_type` (a fraction or out of range): Go names the literal.
    pub fn number(n: &Number, go_type: impl Into<String>) -> TypeError {
        TypeError {
            value: format!("number {n}"),
            go_type: go_type.into(),
            field: None,
        }
    }

    /// Locates the error in field `path` of Go struct type `strukt`, replacing any earlier
    /// location (Go's decoder reports the innermost struct being filled).
    pub fn at(mut self, strukt: impl Into<String>, path: impl Into<String>) -> TypeError {
        self.field = Some((strukt.into(), path.into()));
        self
    }
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TypeError { value, go_type, .. } = self;
        match &self.field {
            Some((strukt, path)) => write!(
                f,
                "json: cannot unmarshal {value} into Go struct field {strukt}.{path} of type {go_type}"
            ),
            None => write!(f, "json: cannot unmarshal {value} into Go value of type {go_type}"),
        }
    }
}

impl std::error::Error for TypeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truncated_input_reads_like_go() {
        for text in ["", "{\"a\":"] {
            let e = serde_json::from_str::<Value>(text).unwrap_err();
            assert_eq!(syntax_error_text(&e), "unexpected end of JSON input");
        }
        let e = serde_json::from_str::<Value>("{]").unwrap_err();
        assert_ne!(syntax_error_text(&e), "unexpected end of JSON input");
    }

    #[test]
    fn kinds_are_go_words() {
        let words: Vec<_> = [
            json!(null),
            json!(true),
            json!(1),
            json!("x"),
            json!([]),
            json!({}),
        ]
        .iter()
        .map(kind)
        .collect();
        assert_eq!(
            words,
            ["null", "bool", "number", "string", "array", "object"]
        );
    }

    #[test]
    fn field_and_value_forms() {
        assert_eq!(
            TypeError::new(&json!("1500"), "int")
                .at("NetConf", "mtu")
                .to_string(),
            "json: cannot unmarshal string into Go struct field NetConf.mtu of type int"
        );
        assert_eq!(
            TypeError::new(&json!(5), "string")
                .at("", "name")
                .to_string(),
            "json: cannot unmarshal number into Go struct field .name of type string"
        );
        assert_eq!(
            TypeError::new(&json!([]), "types.route").to_string(),
            "json: cannot unmarshal array into Go value of type types.route"
        );
        let Value::Number(n) = json!(1.5) else {
            unreachable!()
        };
        assert_eq!(
            TypeError::number(&n, "int")
                .at("x", "y")
                .at("route", "mtu")
                .to_string(),
            "json: cannot unmarshal number 1.5 into Go struct field route.mtu of type int"
        );
    }
}

//! Go `encoding/json` output format for a `serde_json::Value`.
//!
//! Go escapes `<`, `>`, `&`, U+2028 and U+2029 in every string it marshals, uses short escapes
//! only for `\b \f \n \r \t`, and `MarshalIndent` puts `": "` between key and value. Objects are
//! written in the map's order unless `sort_keys` asks for Go's map ordering (byte-wise).

use serde_json::Value;

/// `json.MarshalIndent(v, "", "    ")`: no trailing newline.
pub fn to_string_pretty(v: &Value, sort_keys: bool) -> String {
    let mut out = String::new();
    write_value(&mut out, v, sort_keys, Some(0));
    out
}

/// `json.Marshal(v)`.
pub fn to_string_compact(v: &Value, sort_keys: bool) -> String {
    let mut out = String::new();
    write_value(&mut out, v, sort_keys, None);
    out
}

const INDENT: &str = "    ";

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(INDENT);
    }
}

fn write_value(out: &mut String, v: &Value, sort_keys: bool, depth: Option<usize>) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if let Some(d) = depth {
                    newline(out, d + 1);
                }
                write_value(out, item, sort_keys, depth.map(|d| d + 1));
            }
            if let Some(d) = depth {
                newline(out, d);
            }
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if let Some(d) = depth {
                    newline(out, d + 1);
                }
                write_string(out, k);
                out.push(':');
                if depth.is_some() {
                    out.push(' ');
                }
                write_value(out, item, sort_keys, depth.map(|d| d + 1));
            }
            if let Some(d) = depth {
                newline(out, d);
            }
            out.push('}');
        }
    }
}

/// Writes `s` as a JSON string literal escaped exactly as Go's encoder does.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indents_like_marshal_indent() {
        let v = json!({"b": [1, {"x": []}], "a": {}, "c": "s"});
        assert_eq!(
            to_string_pretty(&v, false),
            "{\n    \"b\": [\n        1,\n        {\n            \"x\": []\n        }\n    ],\n    \"a\": {},\n    \"c\": \"s\"\n}"
        );
        assert_eq!(
            to_string_compact(&v, true),
            r#"{"a":{},"b":[1,{"x":[]}],"c":"s"}"#
        );
    }

    #[test]
    fn escapes_like_go() {
        let mut s = String::new();
        write_string(&mut s, "<a&b>\"\\\n\u{1}\u{8}\u{c}\u{2028}é\u{7f}");
        assert_eq!(
            s,
            r#""\u003ca\u0026b\u003e\"\\\n\u0001\b\f\u2028é"#.to_owned() + "\u{7f}\""
        );
    }

    #[test]
    fn sorts_keys_bytewise_at_every_level() {
        let v = json!({"b": {"z": 1, "Z": 2}, "B": true, "a": null});
        assert_eq!(
            to_string_compact(&v, true),
            r#"{"B":true,"a":null,"b":{"Z":2,"z":1}}"#
        );
    }
}

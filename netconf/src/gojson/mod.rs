//! Go `encoding/json` semantics on top of serde.
//!
//! Decoding ([`from_slice`], [`from_value`]): when a JSON object is decoded into a struct, each
//! key is matched to a field name exactly or, failing that, case-insensitively (the first such
//! field in declaration order); unknown keys are ignored and `null` leaves a field at its
//! default, as Go does. Map keys stay verbatim. Enum variant names are matched the same way.
//! Types decoded this way should use `#[serde(default)]` where Go code relies on zero values.
//!
//! Encoding ([`encode`]): Go's `json.Marshal` / `MarshalIndent` byte format, including its
//! HTML-safe string escaping.
//!
//! Field by field ([`fields`], [`Decoder`], [`At`]): the plugin configs, whose type errors
//! upstream prints verbatim, are walked key by key in document order with Go's rules for
//! `null`, mismatches and error locations.
//!
//! Errors ([`TypeError`], [`kind`], [`syntax_error_text`]): Go's wording for JSON that does
//! not parse or does not fit.

mod decode;
pub mod encode;
mod errors;
mod fields;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use decode::GoValue;
pub use errors::{kind, syntax_error_text, TypeError};
pub use fields::{fields, At, Decoder, Failure, Step};

/// Decodes JSON bytes into `T` with Go's key matching.
pub fn from_slice<T: DeserializeOwned>(b: &[u8]) -> Result<T, serde_json::Error> {
    let v: Value = serde_json::from_slice(b)?;
    from_value(v)
}

/// Decodes an already parsed JSON value into `T` with Go's key matching.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    T::deserialize(GoValue(v))
}

/// The value Go would leave in a struct field named `key`: every object key equal to it under
/// case folding overwrites the field in document order, and `null` is a no-op.
pub fn get_folded<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .rev()
        .find(|(k, v)| !v.is_null() && eq_fold(k, key))
        .map(|(_, v)| v)
}

/// Go's `strings.EqualFold` (simple Unicode case folding).
pub fn eq_fold(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
        || a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
}

/// The struct field a JSON key lands in, per Go: exact name first, then the first field whose
/// name equals the key under case folding.
pub(crate) fn match_field(key: &str, fields: &'static [&'static str]) -> Option<&'static str> {
    fields
        .iter()
        .find(|f| **f == key)
        .or_else(|| fields.iter().find(|f| eq_fold(f, key)))
        .copied()
}

#[cfg(test)]
mod tests;

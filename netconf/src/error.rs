//! The CNI error object (`{"code", "msg", "details"}`) and the well-known codes.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::gojson;

/// Well-known CNI error codes (CNI spec "Error" section plus the library-only 8 and 999).
pub mod codes {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const INVALID_NETNS: u32 = 8;
    pub const TRY_AGAIN: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const NOT_AVAILABLE_DEGRADED: u32 = 51;
    pub const INTERNAL: u32 = 999;
}

/// A CNI error as plugins print it and runtimes read it.
///
/// `Display` matches Go's `types.Error.Error()`: the message, then `; details` when present.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{}", details.as_deref().filter(|d| !d.is_empty()).map(|d| format!("; {d}")).unwrap_or_default())]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: Option<String>,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, d: impl Into<String>) -> Self {
        self.details = Some(d.into());
        self
    }

    /// Shorthand for the code Go's skel gives every error that is not already a CNI error.
    pub fn internal(msg: impl Into<String>) -> Self {
        CniError::new(codes::INTERNAL, msg)
    }

    /// The JSON Go's skel prints on failure: no `cniVersion`, `details` only when non-empty,
    /// 4-space indent, no trailing newline.
    pub fn to_json(&self) -> String {
        let mut obj = Map::new();
        obj.insert("code".into(), Value::from(self.code));
        obj.insert("msg".into(), Value::from(self.msg.clone()));
        if let Some(d) = self.details.as_deref().filter(|d| !d.is_empty()) {
            obj.insert("details".into(), Value::from(d));
        }
        gojson::encode::to_string_pretty(&Value::Object(obj), false)
    }

    /// Decodes an error object the way libcni reads a failed plugin's stdout: only `code`,
    /// `msg` and `details` are looked at, keys case-insensitively, everything else ignored.
    pub fn from_json(bytes: &[u8]) -> Result<CniError, serde_json::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            code: u32,
            #[serde(default)]
            msg: String,
            #[serde(default)]
            details: String,
        }
        let w: Wire = gojson::from_slice(bytes)?;
        Ok(CniError {
            code: w.code,
            msg: w.msg,
            details: Some(w.details).filter(|d| !d.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_go_skel() {
        let e = CniError::new(
            4,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing",
        );
        assert_eq!(
            e.to_json(),
            "{\n    \"code\": 4,\n    \"msg\": \"required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing\"\n}"
        );
        let e = CniError::new(4, "invalid characters in containerID").with_details("a<b");
        assert_eq!(
            e.to_json(),
            "{\n    \"code\": 4,\n    \"msg\": \"invalid characters in containerID\",\n    \"details\": \"a\\u003cb\"\n}"
        );
    }

    #[test]
    fn empty_details_are_omitted_and_not_displayed() {
        let e = CniError::new(999, "boom").with_details("");
        assert_eq!(
            e.to_json(),
            "{\n    \"code\": 999,\n    \"msg\": \"boom\"\n}"
        );
        assert_eq!(e.to_string(), "boom");
        assert_eq!(CniError::new(1, "a").with_details("b").to_string(), "a; b");
    }

    #[test]
    fn reads_errors_like_libcni() {
        let e = CniError::from_json(
            br#"{"cniVersion":"1.0.0","Code":7,"MSG":"bad","details":"x","extra":1}"#,
        )
        .unwrap();
        assert_eq!(e, CniError::new(7, "bad").with_details("x"));
        let e = CniError::from_json(b"{}").unwrap();
        assert_eq!(e, CniError::new(0, ""));
        assert!(CniError::from_json(b"not json").is_err());
        assert!(CniError::from_json(br#"{"code":"7"}"#).is_err());
    }
}

//! The wireguard BackendData / BackendV6Data carried in leases: `{"PublicKey":"<base64>",
//! "Port":51820}`, as upstream's `wireguardLeaseAttrs` marshals it (flannel-io/flannel
//! `pkg/backend/wireguard/wireguard_network.go`), and the 32-byte keys in WireGuard's base64
//! text form (`wgtypes.ParseKey`).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::BackendData;

/// A WireGuard key (public, private or pre-shared): 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not valid base64: {0}")]
    Base64(String),
    #[error("a key is 32 bytes, this one decodes to {0}")]
    Length(usize),
}

impl WgKey {
    /// Go's `base64.StdEncoding` skips line breaks anywhere, so a key file written with a
    /// trailing newline (`wg genkey > file`) reads as upstream reads it.
    pub fn parse(text: &str) -> Result<WgKey, KeyError> {
        let clean: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        let bytes = STANDARD
            .decode(clean.as_bytes())
            .map_err(|e| KeyError::Base64(e.to_string()))?;
        let len = bytes.len();
        bytes
            .try_into()
            .map(WgKey)
            .map_err(|_| KeyError::Length(len))
    }

    /// Standard base64 with padding, as `wg` and upstream print keys.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// Never prints the bytes: a private or pre-shared key must not end up in a log.
impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WgKey(..)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireguardLeaseData {
    pub public_key: WgKey,
    /// 0 when the peer's flannel predates upstream commit 35249c25 (released in v0.26.6),
    /// which did not publish it: the peer is then reached on this node's own listen port.
    pub port: u16,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "PublicKey", default)]
    public_key: String,
    #[serde(rename = "Port", default)]
    port: u16,
}

impl WireguardLeaseData {
    /// JSON exactly as upstream publishes it (field order PublicKey, Port).
    pub fn to_json(&self) -> Value {
        json!({ "PublicKey": self.public_key.to_base64(), "Port": self.port })
    }

    /// Decodes a lease's stored data (see [`WireguardLeaseData::from_json`]).
    pub fn from_data(d: &BackendData) -> Result<WireguardLeaseData, String> {
        Self::from_json(&d.value())
    }

    /// Decodes with Go's case-insensitive key matching; a missing or malformed key is an error
    /// because no peer can be configured without it.
    pub fn from_json(v: &Value) -> Result<WireguardLeaseData, String> {
        let wire: Wire = netconf::gojson::from_value(v.clone())
            .map_err(|e| format!("cannot decode wireguard backend data: {e}"))?;
        let public_key = WgKey::parse(&wire.public_key)
            .map_err(|e| format!("malformed PublicKey {:?}: {e}", wire.public_key))?;
        Ok(WireguardLeaseData {
            public_key,
            port: wire.port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

    #[test]
    fn round_trips_in_upstream_field_order() {
        let d = WireguardLeaseData {
            public_key: WgKey::parse(KEY).unwrap(),
            port: 51820,
        };
        let text = BackendData::from(d.to_json());
        assert_eq!(
            text.as_json(),
            format!(r#"{{"PublicKey":"{KEY}","Port":51820}}"#)
        );
        assert_eq!(WireguardLeaseData::from_data(&text).unwrap(), d);
    }

    #[test]
    fn decodes_like_go() {
        let d = WireguardLeaseData::from_json(&json!({"publickey": KEY})).unwrap();
        assert_eq!(d.port, 0, "older upstream leases carry no Port");
        assert_eq!(d.public_key.to_base64(), KEY);
        for bad in [
            json!({"Port": 51820}),
            json!({"PublicKey": "not base64!", "Port": 1}),
            json!({"PublicKey": "AAAA", "Port": 1}),
            json!({"PublicKey": KEY, "Port": 70000}),
            json!({"PublicKey": KEY, "Port": -1}),
            json!("string"),
        ] {
            assert!(WireguardLeaseData::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_skip_line_breaks_as_go_base64_does_and_never_print() {
        let k = WgKey::parse(&format!("{KEY}\n")).unwrap();
        assert_eq!(
            k,
            WgKey::parse(&format!("{}\r\n{}", &KEY[..10], &KEY[10..])).unwrap()
        );
        assert_eq!(k.to_string(), KEY);
        assert_eq!(format!("{k:?}"), "WgKey(..)");
        assert_eq!(
            WgKey::parse("AAAA").unwrap_err(),
            KeyError::Length(3),
            "three bytes are not a key"
        );
        assert!(matches!(WgKey::parse(" x"), Err(KeyError::Base64(_))));
    }
}

//! The `wireguard` backend's options, decoded as upstream's `RegisterNetwork` does
//! (flannel-io/flannel `pkg/backend/wireguard/wireguard.go`): Go `encoding/json` into a struct
//! of `ListenPort`, `ListenPortV6`, `MTU` (int), `PSK`, `Mode` (string) and
//! `PersistentKeepaliveInterval` (a `time.Duration` that upstream multiplies by a second, so
//! the JSON number is seconds). Values upstream would pass on to the kernel unchecked (a port
//! past 65535 wraps in its `uint16` conversion) are refused here, naming the key.

use serde_json::Value;

use super::FlannelConfigError;
use crate::gojson::{self, TypeError};

pub const DEFAULT_LISTEN_PORT: u16 = 51820;
pub const DEFAULT_LISTEN_PORT_V6: u16 = 51821;
/// Outer IPv6 header (the larger), UDP, and WireGuard's data header and tag, as upstream
/// reserves it (`wireguard_network.go`).
pub const OVERHEAD: u32 = 80;

/// Which devices carry which family (upstream's `Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireguardMode {
    /// `flannel-wg` for IPv4 and `flannel-wg-v6` for IPv6, each on its own port (default).
    Separate,
    /// One device, `flannel-wg`, for both; each peer is reached over IPv4 unless only IPv6
    /// looks routable (upstream's `selectMode`).
    Auto,
    /// One device; peers always reached at their IPv4 address.
    Ipv4,
    /// One device; peers always reached at their IPv6 address.
    Ipv6,
}

impl WireguardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WireguardMode::Separate => "separate",
            WireguardMode::Auto => "auto",
            WireguardMode::Ipv4 => "ipv4",
            WireguardMode::Ipv6 => "ipv6",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireguardOptions {
    pub listen_port: u16,
    pub listen_port_v6: u16,
    /// The MTU the overhead is taken from; `None`: the external interface's.
    pub mtu: Option<u32>,
    /// The pre-shared key as written (base64 of 32 bytes); the backend decodes it, so key
    /// material does not pass through this crate's types. `None` when absent or empty.
    pub psk: Option<String>,
    /// Seconds; 0 is off.
    pub persistent_keepalive: u16,
    pub mode: WireguardMode,
}

impl Default for WireguardOptions {
    fn default() -> Self {
        WireguardOptions {
            listen_port: DEFAULT_LISTEN_PORT,
            listen_port_v6: DEFAULT_LISTEN_PORT_V6,
            mtu: None,
            psk: None,
            persistent_keepalive: 0,
            mode: WireguardMode::Separate,
        }
    }
}

fn option_error(key: &'static str, reason: impl Into<String>) -> FlannelConfigError {
    FlannelConfigError::WireguardOption {
        key,
        reason: reason.into(),
    }
}

/// A Go `int` (or `time.Duration`): an integer literal that fits 64 bits.
fn go_int(key: &'static str, v: &Value, go_type: &str) -> Result<i64, FlannelConfigError> {
    let type_error = |e: TypeError| option_error(key, e.at("", key).to_string());
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| type_error(TypeError::number(n, go_type))),
        other => Err(type_error(TypeError::new(other, go_type))),
    }
}

fn in_range(key: &'static str, n: i64, lo: i64, hi: i64) -> Result<i64, FlannelConfigError> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(option_error(
            key,
            format!("{n} is out of range ({lo}-{hi})"),
        ))
    }
}

fn go_string(key: &'static str, v: &Value) -> Result<String, FlannelConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(option_error(
            key,
            TypeError::new(other, "string").at("", key).to_string(),
        )),
    }
}

impl WireguardOptions {
    /// Decodes the `Backend` object (`None` or `null`: every default).
    pub fn decode(backend: Option<&Value>) -> Result<WireguardOptions, FlannelConfigError> {
        let mut o = WireguardOptions::default();
        let Some(Value::Object(obj)) = backend else {
            return Ok(o);
        };
        let get = |key| gojson::get_folded(obj, key);
        if let Some(v) = get("ListenPort") {
            o.listen_port =
                in_range("ListenPort", go_int("ListenPort", v, "int")?, 1, 65535)? as u16;
        }
        if let Some(v) = get("ListenPortV6") {
            o.listen_port_v6 =
                in_range("ListenPortV6", go_int("ListenPortV6", v, "int")?, 1, 65535)? as u16;
        }
        if let Some(v) = get("MTU") {
            let mtu = go_int("MTU", v, "int")?;
            // The device needs IPv4's minimum of 68 bytes after the overhead.
            o.mtu = Some(in_range("MTU", mtu, i64::from(OVERHEAD) + 68, 65535)? as u32);
        }
        if let Some(v) = get("PSK") {
            let psk = go_string("PSK", v)?;
            o.psk = (!psk.is_empty()).then_some(psk);
        }
        if let Some(v) = get("PersistentKeepaliveInterval") {
            let secs = go_int("PersistentKeepaliveInterval", v, "time.Duration")?;
            o.persistent_keepalive =
                in_range("PersistentKeepaliveInterval", secs, 0, 65535)? as u16;
        }
        if let Some(v) = get("Mode") {
            let mode = go_string("Mode", v)?;
            o.mode = match mode.as_str() {
                "separate" => WireguardMode::Separate,
                "auto" => WireguardMode::Auto,
                "ipv4" => WireguardMode::Ipv4,
                "ipv6" => WireguardMode::Ipv6,
                _ => {
                    return Err(option_error(
                        "Mode",
                        format!(
                            "no valid Mode configured: {mode:?} (one of separate, auto, ipv4, ipv6)"
                        ),
                    ))
                }
            };
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: Value) -> Result<WireguardOptions, String> {
        WireguardOptions::decode(Some(&v)).map_err(|e| e.to_string())
    }

    #[test]
    fn upstream_defaults() {
        let o = decode(json!({"Type": "wireguard"})).unwrap();
        assert_eq!(o, WireguardOptions::default());
        assert_eq!((o.listen_port, o.listen_port_v6), (51820, 51821));
        assert_eq!(o.mode, WireguardMode::Separate);
        assert_eq!(WireguardOptions::decode(None).unwrap(), o);
    }

    #[test]
    fn keys_fold_case_and_null_keeps_the_default() {
        let o = decode(json!({
            "listenport": 1000, "LISTENPORTV6": 1001, "mtu": 1400, "psk": "",
            "PersistentKeepaliveInterval": 25, "mode": "auto", "Unknown": true,
            "ListenPort": null
        }))
        .unwrap();
        assert_eq!(o.listen_port, 1000);
        assert_eq!(o.listen_port_v6, 1001);
        assert_eq!(o.mtu, Some(1400));
        assert_eq!(o.psk, None, "an empty PSK is no PSK, as upstream");
        assert_eq!(o.persistent_keepalive, 25);
        assert_eq!(o.mode, WireguardMode::Auto);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (v, want) in [
            (json!({"Mode": "both"}), "Mode: no valid Mode configured: \"both\""),
            (json!({"Mode": "Auto"}), "Mode: no valid Mode configured"),
            (json!({"Mode": 4}), "Mode: json: cannot unmarshal number into Go struct field .Mode of type string"),
            (json!({"ListenPort": 70000}), "ListenPort: 70000 is out of range (1-65535)"),
            (json!({"ListenPort": 0}), "ListenPort: 0 is out of range"),
            (json!({"ListenPortV6": -1}), "ListenPortV6: -1 is out of range"),
            (json!({"ListenPort": "51820"}), "ListenPort: json: cannot unmarshal string into Go struct field .ListenPort of type int"),
            (json!({"ListenPort": 1.5}), "ListenPort: json: cannot unmarshal number 1.5 into Go struct field .ListenPort of type int"),
            (json!({"MTU": 100}), "MTU: 100 is out of range (148-65535)"),
            (json!({"PSK": 7}), "PSK: json: cannot unmarshal number"),
            (json!({"PersistentKeepaliveInterval": -5}), "PersistentKeepaliveInterval: -5 is out of range (0-65535)"),
            (json!({"PersistentKeepaliveInterval": "25s"}), "of type time.Duration"),
        ] {
            let e = decode(v.clone()).unwrap_err();
            assert!(e.starts_with("error decoding wireguard backend config: "), "{e}");
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}

//! A lease's BackendData / BackendV6Data, held as the compact JSON text upstream publishes,
//! and what each backend keeps in it ([`vxlan`], [`wireguard`]): the subnet layer owns these
//! types, which the backends and kube's Node annotations both read.
//!
//! A daemon keeps one lease per peer for as long as it runs; as a `serde_json::Value` the
//! two-field vxlan object costs about half a kilobyte in six allocations, as text about forty
//! bytes in one. Backends decode it when they plan a peer, which happens once per change.

mod vxlan;
mod wireguard;

pub use vxlan::{StoredMacs, VxlanLeaseData};
pub use wireguard::{KeyError, WgKey, WireguardLeaseData};

use std::fmt;

use serde_json::Value;

/// Backend-specific lease data: never JSON `null` (a lease without data has `None`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BackendData(Box<str>);

impl BackendData {
    /// Encodes `value` the way upstream stores it (compact, Go's escaping, keys in order).
    pub fn new(value: &Value) -> BackendData {
        BackendData(netconf::gojson::encode::to_string_compact(value, false).into_boxed_str())
    }

    /// The JSON text, ready to be embedded in a lease record or an annotation.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The data as a JSON value.
    pub fn value(&self) -> Value {
        // The text was produced by our own encoder from a Value, so it always parses.
        serde_json::from_str(&self.0).expect("BackendData holds JSON it encoded itself")
    }
}

impl From<Value> for BackendData {
    fn from(value: Value) -> BackendData {
        BackendData::new(&value)
    }
}

impl fmt::Debug for BackendData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_upstream_text_and_decodes_back() {
        let d = BackendData::from(json!({"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44", "x": "a<b"}));
        assert_eq!(
            d.as_json(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44","x":"a\u003cb"}"#
        );
        assert_eq!(d.value()["VNI"], 1);
        assert_eq!(d.value()["x"], "a<b");
        assert_eq!(format!("{d:?}"), d.as_json());
    }

    #[test]
    fn a_vxlan_record_fits_in_one_small_allocation() {
        let d = BackendData::from(json!({"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"}));
        assert!(d.as_json().len() < 48, "{}", d.as_json());
        assert_eq!(std::mem::size_of::<Option<BackendData>>(), 16);
    }
}

//! The vxlan BackendData / BackendV6Data carried in leases: `{"VNI":1,"VtepMAC":"..."}`.

use netops::netlink::MacAddr;
use serde::Deserialize;
use serde_json::{json, Value};

use super::BackendData;

/// VTEP MACs a previous run published (the kube node annotations), so a re-created vxlan
/// device keeps the MAC every peer already has in its ARP and FDB tables (#1795).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredMacs {
    pub v4: Option<MacAddr>,
    pub v6: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanLeaseData {
    pub vni: u32,
    pub vtep_mac: MacAddr,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "VNI", default)]
    vni: u32,
    #[serde(rename = "VtepMAC", default)]
    vtep_mac: String,
}

impl VxlanLeaseData {
    /// JSON exactly as upstream publishes it (field order VNI, VtepMAC).
    pub fn to_json(&self) -> Value {
        json!({ "VNI": self.vni, "VtepMAC": self.vtep_mac.to_string() })
    }

    /// Decodes a lease's stored data (see [`VxlanLeaseData::from_json`]).
    pub fn from_data(d: &BackendData) -> Result<VxlanLeaseData, String> {
        Self::from_json(&d.value())
    }

    /// Decodes with Go's case-insensitive key matching; a missing or malformed MAC is an
    /// error because without it no ARP or FDB entry can be built.
    pub fn from_json(v: &Value) -> Result<VxlanLeaseData, String> {
        let wire: Wire = netconf::gojson::from_value(v.clone())
            .map_err(|e| format!("cannot decode vxlan backend data: {e}"))?;
        let vtep_mac = wire
            .vtep_mac
            .parse()
            .map_err(|_| format!("backend data has no usable VtepMAC ({:?})", wire.vtep_mac))?;
        Ok(VxlanLeaseData {
            vni: wire.vni,
            vtep_mac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_upstream_field_order() {
        let d = VxlanLeaseData {
            vni: 1,
            vtep_mac: "c6:d2:32:6f:8f:44".parse().unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&d.to_json()).unwrap(),
            r#"{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}"#
        );
        assert_eq!(VxlanLeaseData::from_json(&d.to_json()).unwrap(), d);
    }

    #[test]
    fn decodes_keys_case_insensitively() {
        let v = serde_json::json!({"vni": 7, "vtepmac": "0A:58:0A:F4:01:02"});
        let d = VxlanLeaseData::from_json(&v).unwrap();
        assert_eq!(d.vni, 7);
        assert_eq!(d.vtep_mac.to_string(), "0a:58:0a:f4:01:02");
    }

    #[test]
    fn rejects_missing_or_bad_mac() {
        for v in [
            serde_json::json!({"VNI": 1}),
            serde_json::json!({"VNI": 1, "VtepMAC": "nope"}),
            serde_json::json!("string"),
        ] {
            assert!(VxlanLeaseData::from_json(&v).is_err(), "{v}");
        }
    }
}

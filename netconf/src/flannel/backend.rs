//! Typed options of the backends flannel-rs implements; other registered backends keep their
//! raw JSON.

use serde::Deserialize;
use serde_json::Value;

use super::{FlannelConfigError, NetworkConfig};
use crate::gojson;

/// Backend names upstream registers (cloud backends were removed upstream).
const REGISTERED: [&str; 9] = [
    "vxlan",
    "host-gw",
    "udp",
    "ipip",
    "wireguard",
    "alloc",
    "extension",
    "ipsec",
    "tencent-vpc",
];

#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    Vxlan(VxlanOptions),
    HostGw,
    Udp(UdpOptions),
    /// A registered backend without typed options here: its lower-cased name and raw object.
    Other {
        kind: String,
        raw: Value,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct VxlanOptions {
    #[serde(rename = "VNI")]
    pub vni: u32,
    /// 0 = the kernel default (8472).
    #[serde(rename = "Port")]
    pub port: u16,
    /// 0 = derived from the external interface's MTU.
    #[serde(rename = "MTU")]
    pub mtu: u32,
    #[serde(rename = "GBP")]
    pub gbp: bool,
    #[serde(rename = "Learning")]
    pub learning: bool,
    #[serde(rename = "DirectRouting")]
    pub direct_routing: bool,
    /// Turn off `tx-checksum-ip-generic` on the VTEPs whenever flanneld creates or adopts
    /// them: the workaround upstream documents (troubleshooting, "NAT") for kernels that send
    /// VXLAN packets with bad UDP checksums (flannel#1279, #2152). Off by default, as upstream
    /// leaves the kernel's offload alone; a flannel-rs key, ignored by upstream flanneld.
    #[serde(rename = "DisableTxChecksumOffload")]
    pub disable_tx_checksum_offload: bool,
}

impl Default for VxlanOptions {
    fn default() -> Self {
        VxlanOptions {
            vni: 1,
            port: 0,
            mtu: 0,
            gbp: false,
            learning: false,
            direct_routing: false,
            disable_tx_checksum_offload: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UdpOptions {
    #[serde(rename = "Port")]
    pub port: u16,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions { port: 8285 }
    }
}

fn options<T: serde::de::DeserializeOwned + Default>(
    raw: &Option<Value>,
    backend: &'static str,
) -> Result<T, FlannelConfigError> {
    match raw {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => gojson::from_value(v.clone()).map_err(|e| FlannelConfigError::BackendOptions {
            backend,
            reason: e.to_string(),
        }),
    }
}

impl NetworkConfig {
    /// The backend with its options decoded (Go semantics, defaults as upstream). An unknown or
    /// missing type is `unknown backend type: <type>`.
    pub fn backend_config(&self) -> Result<BackendConfig, FlannelConfigError> {
        match self.backend_type.as_str() {
            "vxlan" => Ok(BackendConfig::Vxlan(options(&self.backend, "VXLAN")?)),
            "host-gw" => Ok(BackendConfig::HostGw),
            "udp" => Ok(BackendConfig::Udp(options(&self.backend, "UDP")?)),
            kind if REGISTERED.contains(&kind) => Ok(BackendConfig::Other {
                kind: kind.to_owned(),
                raw: self.backend.clone().unwrap_or(Value::Null),
            }),
            kind => Err(FlannelConfigError::UnknownBackendType(kind.to_owned())),
        }
    }
}

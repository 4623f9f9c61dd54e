//! flannel's network configuration (`net-conf.json`, or the etcd `<prefix>/config` value).

mod backend;
mod check;
mod wireguard;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::Value;

pub use backend::{BackendConfig, UdpOptions, VxlanOptions, WireguardMode, WireguardOptions};
pub use wireguard::OVERHEAD as WIREGUARD_OVERHEAD;

use crate::gojson::{self, TypeError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlannelConfigError {
    #[error("{0}")]
    Decode(String),
    #[error("invalid IPv4 CIDR format")]
    NotIpv4Cidr,
    #[error("invalid IPv6 CIDR format")]
    NotIpv6Cidr,
    #[error("invalid CIDR address: {0}")]
    InvalidCidr(String),
    #[error("invalid IP address: {0}")]
    InvalidIp(String),
    #[error("error decoding Backend property of config: {0}")]
    BackendProperty(String),
    #[error("unknown backend type: {0}")]
    UnknownBackendType(String),
    #[error("error decoding wireguard backend config: {key}: {reason}")]
    WireguardOption { key: &'static str, reason: String },
    #[error("error decoding {backend} backend config: {reason}")]
    BackendOptions {
        backend: &'static str,
        reason: String,
    },
    #[error("please define a correct Network parameter in the flannel config")]
    NoNetwork,
    #[error("SubnetLen must be less than /31")]
    SubnetLenTooLong,
    #[error("network must be able to accommodate at least four subnets")]
    TooFewSubnets,
    #[error("network is too small. Minimum useful network prefix is /28")]
    NetworkTooSmall,
    #[error("SubnetMin is not in the range of the Network")]
    SubnetMinOutside,
    #[error("SubnetMax is not in the range of the Network")]
    SubnetMaxOutside,
    #[error("SubnetMin is not on a SubnetLen boundary: {0}")]
    SubnetMinUnaligned(Ipv4Addr),
    #[error("SubnetMax is not on a SubnetLen boundary: {0}")]
    SubnetMaxUnaligned(Ipv4Addr),
    #[error("please define a correct IPv6Network parameter in the flannel config")]
    NoIpv6Network,
    #[error("SubnetLen must be less than /127")]
    Ipv6SubnetLenTooLong,
    #[error("IPv6Network is too small. Minimum useful network prefix is /124")]
    Ipv6NetworkTooSmall,
    #[error("IPv6SubnetMin is not in the range of the IPv6Network")]
    Ipv6SubnetMinOutside,
    #[error("IPv6SubnetMax is not in the range of the IPv6Network")]
    Ipv6SubnetMaxOutside,
    #[error("IPv6SubnetMin is not on a SubnetLen boundary: {0}")]
    Ipv6SubnetMinUnaligned(Ipv6Addr),
    #[error("IPv6SubnetMax is not on a SubnetLen boundary: {0}")]
    Ipv6SubnetMaxUnaligned(Ipv6Addr),
}

/// flannel's `subnet.Config`. Addresses left unset are `None` (Go's zero value); [`check`]
/// fills in the derived defaults as upstream's `CheckNetworkConfig` does.
///
/// [`check`]: NetworkConfig::check
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub enable_ipv4: bool,
    pub enable_ipv6: bool,
    pub enable_nftables: bool,
    /// Host bits masked off, as `net.ParseCIDR` returns it.
    pub network: Option<Ipv4Net>,
    pub subnet_len: u32,
    pub subnet_min: Option<Ipv4Addr>,
    pub subnet_max: Option<Ipv4Addr>,
    pub ipv6_network: Option<Ipv6Net>,
    pub ipv6_subnet_len: u32,
    pub ipv6_subnet_min: Option<Ipv6Addr>,
    pub ipv6_subnet_max: Option<Ipv6Addr>,
    /// Lower-cased backend type; `udp` when `Backend` is absent, empty when it has no `Type`.
    pub backend_type: String,
    /// The `Backend` object as written (`None` when absent).
    pub backend: Option<Value>,
}

#[derive(Deserialize)]
#[serde(default)]
struct Wire {
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "EnableNFTables")]
    enable_nftables: bool,
    #[serde(rename = "Network")]
    network: Option<String>,
    #[serde(rename = "SubnetLen")]
    subnet_len: u64,
    #[serde(rename = "SubnetMin")]
    subnet_min: Option<String>,
    #[serde(rename = "SubnetMax")]
    subnet_max: Option<String>,
    #[serde(rename = "IPv6Network")]
    ipv6_network: Option<String>,
    #[serde(rename = "IPv6SubnetLen")]
    ipv6_subnet_len: u64,
    #[serde(rename = "IPv6SubnetMin")]
    ipv6_subnet_min: Option<String>,
    #[serde(rename = "IPv6SubnetMax")]
    ipv6_subnet_max: Option<String>,
}

impl Default for Wire {
    /// IPv4 is on unless the config turns it off.
    fn default() -> Self {
        Wire {
            enable_ipv4: true,
            enable_ipv6: false,
            enable_nftables: false,
            network: None,
            subnet_len: 0,
            subnet_min: None,
            subnet_max: None,
            ipv6_network: None,
            ipv6_subnet_len: 0,
            ipv6_subnet_min: None,
            ipv6_subnet_max: None,
        }
    }
}

fn parse_v4_net(s: &str) -> Result<Ipv4Net, FlannelConfigError> {
    match s.parse::<ipnet::IpNet>() {
        Ok(ipnet::IpNet::V4(n)) => Ok(n.trunc()),
        Ok(ipnet::IpNet::V6(_)) => Err(FlannelConfigError::NotIpv4Cidr),
        Err(_) => Err(FlannelConfigError::InvalidCidr(s.to_owned())),
    }
}

fn parse_v6_net(s: &str) -> Result<Ipv6Net, FlannelConfigError> {
    match s.parse::<ipnet::IpNet>() {
        Ok(ipnet::IpNet::V6(n)) => Ok(n.trunc()),
        Ok(ipnet::IpNet::V4(_)) => Err(FlannelConfigError::NotIpv6Cidr),
        Err(_) => Err(FlannelConfigError::InvalidCidr(s.to_owned())),
    }
}

fn parse_addr<A: std::str::FromStr>(s: &str) -> Result<A, FlannelConfigError> {
    s.parse()
        .map_err(|_| FlannelConfigError::InvalidIp(s.to_owned()))
}

fn saturating_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Go's `parseBackendType`: the last key folding to `Backend` decides, even an explicit `null`
/// (it becomes a backend without a type).
fn backend_type(
    obj: &serde_json::Map<String, Value>,
) -> Result<(String, Option<Value>), FlannelConfigError> {
    let Some(raw) = obj
        .iter()
        .rev()
        .find(|(k, _)| gojson::eq_fold(k, "Backend"))
        .map(|(_, v)| v)
    else {
        return Ok(("udp".to_owned(), None));
    };
    let kind = match raw {
        Value::Null => String::new(),
        Value::Object(b) => match gojson::get_folded(b, "Type") {
            None => String::new(),
            Some(Value::String(t)) => t.to_lowercase(),
            Some(other) => {
                return Err(FlannelConfigError::BackendProperty(
                    TypeError::new(other, "string").at("", "Type").to_string(),
                ))
            }
        },
        other => {
            return Err(FlannelConfigError::BackendProperty(
                TypeError::new(other, "struct { Type string }").to_string(),
            ))
        }
    };
    Ok((kind, Some(raw.clone())))
}

impl NetworkConfig {
    /// Upstream's `ParseConfig`: Go JSON semantics (keys case-insensitive, unknown keys
    /// ignored), `EnableIPv4` defaulting to true, networks masked to their network address.
    pub fn parse(json: &[u8]) -> Result<NetworkConfig, FlannelConfigError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| FlannelConfigError::Decode(e.to_string()))?;
        let obj = match &value {
            Value::Object(m) => m.clone(),
            Value::Null => serde_json::Map::new(),
            other => {
                return Err(FlannelConfigError::Decode(
                    TypeError::new(other, "subnet.Config").to_string(),
                ))
            }
        };
        let wire: Wire =
            gojson::from_value(value).map_err(|e| FlannelConfigError::Decode(e.to_string()))?;
        let (backend_type, backend) = backend_type(&obj)?;
        Ok(NetworkConfig {
            enable_ipv4: wire.enable_ipv4,
            enable_ipv6: wire.enable_ipv6,
            enable_nftables: wire.enable_nftables,
            network: wire.network.as_deref().map(parse_v4_net).transpose()?,
            subnet_len: saturating_u32(wire.subnet_len),
            subnet_min: wire.subnet_min.as_deref().map(parse_addr).transpose()?,
            subnet_max: wire.subnet_max.as_deref().map(parse_addr).transpose()?,
            ipv6_network: wire.ipv6_network.as_deref().map(parse_v6_net).transpose()?,
            ipv6_subnet_len: saturating_u32(wire.ipv6_subnet_len),
            ipv6_subnet_min: wire
                .ipv6_subnet_min
                .as_deref()
                .map(parse_addr)
                .transpose()?,
            ipv6_subnet_max: wire
                .ipv6_subnet_max
                .as_deref()
                .map(parse_addr)
                .transpose()?,
            backend_type,
            backend,
        })
    }
}

#[cfg(test)]
mod tests;

//! The lease model shared by every subnet manager and backend, and the two wire formats
//! upstream fixed: the etcd key of a lease and the JSON of its attributes.

pub mod acquire;
pub mod alloc;
pub mod claims;
pub mod etcd;
#[cfg(feature = "kube")]
pub mod kube;
mod lease_data;
pub mod peers;
pub mod store;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::SystemTime;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::Value;

use netconf::gojson;

pub use lease_data::{
    BackendData, KeyError, StoredMacs, VxlanLeaseData, WgKey, WireguardLeaseData,
};

/// What a node publishes about itself (upstream `lease.LeaseAttrs`).
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseAttrs {
    pub public_ip: Ipv4Addr,
    pub public_ipv6: Option<Ipv6Addr>,
    /// "vxlan", "host-gw"; empty for udp and alloc leases, which upstream never typed.
    pub backend_type: String,
    pub backend_data: Option<BackendData>,
    pub backend_v6_data: Option<BackendData>,
}

/// One node's subnet lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub enable_ipv4: bool,
    pub enable_ipv6: bool,
    pub subnet: Ipv4Net,
    pub ipv6_subnet: Option<Ipv6Net>,
    pub attrs: LeaseAttrs,
    /// When the lease runs out, for this node's own lease (from its grant or renewal). For a
    /// record read back from etcd v3 (listing, watch) the time it was read: its lifetime
    /// lives on the etcd lease and would cost a lookup per record; no decision uses it.
    /// `None`: the record has no lifetime at all (no etcd lease, no v2 TTL), a *reservation*
    /// (upstream `Documentation/reservations.md`), which only an operator removes.
    pub expiration: Option<SystemTime>,
    /// Where the record stands in its store's creation order: etcd v3's create revision, v2's
    /// `createdIndex`, kube mode's Node `creationTimestamp` (seconds); 0 while unknown. When
    /// two records hold the same subnet of one family, the earlier keeps it ([`peers`]).
    pub created: u64,
}

/// A peer lease as the daemon holds it: one allocation shared by the peer set, the backend's
/// record of what it installed and the status report, so 5,000 peers cost one copy each.
pub type SharedLease = Arc<Lease>;

/// A change in the set of peer leases, as delivered to backends.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Added(SharedLease),
    Removed(SharedLease),
}

impl Event {
    pub fn added(lease: Lease) -> Event {
        Event::Added(Arc::new(lease))
    }

    pub fn removed(lease: Lease) -> Event {
        Event::Removed(Arc::new(lease))
    }
}

impl Lease {
    /// The etcd key suffix of this lease.
    pub fn key(&self) -> String {
        subnet_key(self.subnet, self.ipv6_subnet)
    }

    /// Whether `other` is the same lease slot: the v4 subnet, the v6 one, or both, depending on
    /// which families this lease carries (upstream `sameSubnet`).
    pub fn same_subnet(&self, subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> bool {
        match (self.enable_ipv4, self.enable_ipv6) {
            (true, true) => self.subnet == subnet && self.ipv6_subnet == ipv6_subnet,
            (false, true) => self.ipv6_subnet == ipv6_subnet,
            _ => self.subnet == subnet,
        }
    }
}

/// `10.244.1.0-24`, or `10.244.1.0-24&fc00::-64` for a dual-stack lease.
pub fn subnet_key(subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> String {
    let v4 = format!("{}-{}", subnet.addr(), subnet.prefix_len());
    match ipv6_subnet {
        Some(v6) => format!("{v4}&{}-{}", v6.addr(), v6.prefix_len()),
        None => v4,
    }
}

/// Parses the last path element of a subnet key. Like upstream's pattern (which is anchored
/// only at the end), anything before the address is ignored; what does not parse is `None`.
pub fn parse_subnet_key(key: &str) -> Option<(Ipv4Net, Option<Ipv6Net>)> {
    let last = key.rsplit('/').next()?;
    let (v4, v6) = match last.split_once('&') {
        Some((a, b)) => (a, Some(b)),
        None => (last, None),
    };
    let (ip, len) = v4.rsplit_once('-')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len = parse_len(len, 31)?;
    let subnet = Ipv4Net::new(ip, len).ok()?;
    let ipv6_subnet = match v6 {
        None => None,
        Some(text) => {
            let (ip, len) = text.rsplit_once('-')?;
            if !ip
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase() || b == b':')
            {
                return None;
            }
            Some(Ipv6Net::new(ip.parse().ok()?, parse_len(len, 127)?).ok()?)
        }
    };
    Some((subnet, ipv6_subnet))
}

/// Prefix lengths are decimal and parsed into 5 (v4) or 7 (v6) bits upstream, so /32 and
/// /128 keys are rejected.
fn parse_len(s: &str, max: u8) -> Option<u8> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u8>().ok().filter(|l| *l <= max)
}

#[derive(Debug, thiserror::Error)]
pub enum AttrsError {
    #[error("invalid lease attributes: {0}")]
    Json(#[from] serde_json::Error),
    #[error("lease attributes are not a JSON object")]
    NotObject,
    #[error("invalid PublicIP {0:?}")]
    PublicIp(String),
    #[error("invalid PublicIPv6 {0:?}")]
    PublicIpv6(String),
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AttrsWire {
    #[serde(rename = "PublicIP")]
    public_ip: Option<String>,
    #[serde(rename = "PublicIPv6")]
    public_ipv6: Option<String>,
    #[serde(rename = "BackendType")]
    backend_type: String,
    #[serde(rename = "BackendData")]
    backend_data: Option<Value>,
    #[serde(rename = "BackendV6Data")]
    backend_v6_data: Option<Value>,
}

impl LeaseAttrs {
    /// The JSON upstream stores: fields in declaration order, `PublicIPv6` always present
    /// (`null` when unset), the backend fields omitted when empty, compact with Go's escaping.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"PublicIP\":");
        gojson::encode::write_string(&mut out, &self.public_ip.to_string());
        out.push_str(",\"PublicIPv6\":");
        match self.public_ipv6 {
            Some(ip) => gojson::encode::write_string(&mut out, &ip.to_string()),
            None => out.push_str("null"),
        }
        if !self.backend_type.is_empty() {
            out.push_str(",\"BackendType\":");
            gojson::encode::write_string(&mut out, &self.backend_type);
        }
        for (name, data) in [
            ("BackendData", &self.backend_data),
            ("BackendV6Data", &self.backend_v6_data),
        ] {
            if let Some(v) = data {
                out.push_str(&format!(",\"{name}\":"));
                out.push_str(v.as_json());
            }
        }
        out.push('}');
        out
    }

    /// Decodes with Go's rules: keys case-insensitive, unknown keys ignored, a missing
    /// `PublicIP` is 0.0.0.0 (Go's zero `ip.IP4`).
    pub fn from_json(b: &[u8]) -> Result<LeaseAttrs, AttrsError> {
        let value: Value = serde_json::from_slice(b)?;
        if !value.is_object() {
            return Err(AttrsError::NotObject);
        }
        let wire: AttrsWire = gojson::from_value(value)?;
        let public_ip = match wire.public_ip {
            None => Ipv4Addr::UNSPECIFIED,
            Some(s) => s.parse().map_err(|_| AttrsError::PublicIp(s))?,
        };
        let public_ipv6 = wire
            .public_ipv6
            .map(|s| s.parse().map_err(|_| AttrsError::PublicIpv6(s)))
            .transpose()?;
        Ok(LeaseAttrs {
            public_ip,
            public_ipv6,
            backend_type: wire.backend_type,
            backend_data: wire
                .backend_data
                .filter(|v| !v.is_null())
                .map(BackendData::from),
            backend_v6_data: wire
                .backend_v6_data
                .filter(|v| !v.is_null())
                .map(BackendData::from),
        })
    }
}

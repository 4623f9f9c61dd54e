//! What acquisition reads of a store's lease records: which record is this node's
//! ([`Owner`]), each record as the subnets it occupies ([`Slot`]), one read of them all
//! ([`Listing`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;

use crate::subnet::{parse_subnet_key, LeaseAttrs};

/// How acquisition recognises this node's own record: by PublicIP, or by PublicIPv6 on an
/// IPv6-only network (upstream's rule).
#[derive(Debug, Clone)]
pub struct Owner {
    by_v4: bool,
    public_ip: Ipv4Addr,
    public_ipv6: Option<Ipv6Addr>,
    /// `"<PublicIP>"`, the text an unescaped JSON string holding our address must contain.
    /// Only one spelling of an IPv4 address parses to it (leading zeros are refused), so a
    /// record without this text and without any `\` escape cannot be ours. `None` where the
    /// text rules nothing out: a record without PublicIP decodes to 0.0.0.0, and IPv6
    /// addresses have many spellings.
    needle: Option<Vec<u8>>,
}

impl Owner {
    pub fn new(cfg: &NetworkConfig, attrs: &LeaseAttrs) -> Owner {
        let needle = (cfg.enable_ipv4 && !attrs.public_ip.is_unspecified())
            .then(|| format!("\"{}\"", attrs.public_ip).into_bytes());
        Owner {
            by_v4: cfg.enable_ipv4,
            public_ip: attrs.public_ip,
            public_ipv6: attrs.public_ipv6,
            needle,
        }
    }

    /// Whether a decoded record is ours.
    pub fn owns(&self, attrs: &LeaseAttrs) -> bool {
        if self.by_v4 {
            attrs.public_ip == self.public_ip
        } else {
            attrs.public_ipv6.is_some() && attrs.public_ipv6 == self.public_ipv6
        }
    }

    /// Whether the raw value of a record might decode to one [`Owner::owns`]; `false` is
    /// certain, so the record need not be decoded at all.
    pub fn could_own(&self, raw: &[u8]) -> bool {
        if !self.by_v4 && self.public_ipv6.is_none() {
            return false;
        }
        match &self.needle {
            None => true,
            Some(n) => raw.contains(&b'\\') || raw.windows(n.len()).any(|w| w == n.as_slice()),
        }
    }
}

/// A lease record as acquisition needs it: the subnets it holds, and its attributes only if
/// the record may be this node's. Another node's record is never decoded: in a storm of
/// 5,000 nodes that decoding was most of the client's work.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub subnet: Ipv4Net,
    pub ipv6_subnet: Option<Ipv6Net>,
    pub attrs: Option<Box<LeaseAttrs>>,
    /// The record has no lifetime (no etcd lease, no v2 TTL): an operator's reservation.
    pub reserved: bool,
}

impl Slot {
    /// The slot of the record `key` = `value`; `None` for keys that are not lease keys
    /// (skipped with a warning, as upstream does). A record whose attributes do not decode
    /// still occupies its key, and a create-only write there could only fail, so it counts
    /// as taken.
    pub fn from_record(key: &str, value: &[u8], reserved: bool, owner: &Owner) -> Option<Slot> {
        let Some((subnet, ipv6_subnet)) = parse_subnet_key(key) else {
            log::warn!("Ignoring bad subnet node {key}");
            return None;
        };
        let attrs = if owner.could_own(value) {
            match LeaseAttrs::from_json(value) {
                Ok(attrs) => Some(Box::new(attrs)),
                Err(e) => {
                    log::warn!(
                        "Lease {key} has unreadable attributes ({e}); its subnet stays taken"
                    );
                    None
                }
            }
        } else {
            None
        };
        Some(Slot {
            subnet,
            ipv6_subnet,
            attrs,
            reserved,
        })
    }
}

/// One read of the lease records.
#[derive(Debug, Default)]
pub struct Listing {
    pub slots: Vec<Slot>,
    /// The store revision it was read at, for stores that can list what changed after one.
    pub revision: Option<i64>,
    /// Only the records written after the revision asked for; deletions are not in it.
    pub changes_only: bool,
}

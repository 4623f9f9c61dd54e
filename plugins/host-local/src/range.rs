//! One allocation range: a subnet with optional bounds and gateway, canonicalised exactly like
//! upstream so error messages and the default bounds agree.

use std::fmt;
use std::net::IpAddr;

use crate::error::RangeError;
use crate::ip::{self, Cidr};

/// A range as written in the config, before canonicalisation. `subnet == None` stands for Go's
/// nil `net.IP` (key absent), which upstream only notices when canonicalising.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSpec {
    pub subnet: Option<Cidr>,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A validated range; `start..=end` is what the iterator walks, `gateway` is never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub network: IpAddr,
    pub prefix: u8,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl RangeSpec {
    pub fn subnet(network: IpAddr, prefix: u8) -> RangeSpec {
        RangeSpec {
            subnet: Some(Cidr {
                addr: network,
                prefix,
                mask_bits: ip::bits(network),
            }),
            ..RangeSpec::default()
        }
    }

    /// Upstream's `Range.Canonicalize`: defaults are filled in, bounds must lie in the subnet, and
    /// an explicit `rangeEnd` already bounds the check of an explicit `rangeStart`.
    pub fn canonicalize(&self) -> Result<Range, RangeError> {
        let cidr = self.subnet.ok_or(RangeError::NilSubnet)?;
        let addr = ip::canonical(cidr.addr);
        if cidr.prefix > cidr.mask_bits - 2 {
            let (shown, len) = cidr.go_parts();
            return Err(RangeError::TooSmall(format!("{shown}/{len}")));
        }
        if ip::bits(addr) != cidr.mask_bits {
            return Err(RangeError::MaskMismatch);
        }
        let network = ip::mask(addr, cidr.prefix, cidr.mask_bits);
        if network != addr {
            return Err(RangeError::HostBitsSet {
                prefix: cidr.prefix,
                network,
            });
        }
        let prefix = cidr.prefix;
        let subnet_text = format!("{network}/{prefix}");
        let gateway = self
            .gateway
            .map(ip::canonical)
            .unwrap_or_else(|| ip::next(network));

        let explicit_end = self.range_end.map(ip::canonical);
        let start = match self.range_start.map(ip::canonical) {
            Some(s) => {
                if !bounded_contains(s, network, prefix, Some(s), explicit_end) {
                    return Err(RangeError::StartNotInNetwork {
                        ip: s,
                        network: subnet_text,
                    });
                }
                s
            }
            None => ip::next(network),
        };
        let end = match explicit_end {
            Some(e) => {
                if !bounded_contains(e, network, prefix, Some(start), Some(e)) {
                    return Err(RangeError::EndNotInNetwork {
                        ip: e,
                        network: subnet_text,
                    });
                }
                e
            }
            None => default_end(network, prefix),
        };
        Ok(Range {
            network,
            prefix,
            start,
            end,
            gateway,
        })
    }
}

/// Last allocatable address by default: IPv4 excludes broadcast, IPv6 has none to exclude.
fn default_end(network: IpAddr, prefix: u8) -> IpAddr {
    let last = ip::last(network, prefix);
    match last {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) - 1).into()),
        v6 => v6,
    }
}

fn bounded_contains(
    addr: IpAddr,
    network: IpAddr,
    prefix: u8,
    start: Option<IpAddr>,
    end: Option<IpAddr>,
) -> bool {
    let v = ip::to_u128(addr);
    let after_start = start.into_iter().all(|s| v >= ip::to_u128(s));
    let before_end = end.into_iter().all(|e| v <= ip::to_u128(e));
    ip::in_subnet(addr, network, prefix) && after_start && before_end
}

impl Range {
    /// Whether `addr` is an allocatable address of this range (bounds inclusive).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = ip::canonical(addr);
        bounded_contains(
            addr,
            self.network,
            self.prefix,
            Some(self.start),
            Some(self.end),
        )
    }

    pub fn overlaps(&self, other: &Range) -> bool {
        self.start.is_ipv4() == other.start.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: Some(Cidr::parse(subnet).unwrap()),
            ..RangeSpec::default()
        }
    }

    fn err(s: RangeSpec) -> String {
        s.canonicalize().unwrap_err().to_string()
    }

    #[test]
    fn defaults_v4_start_is_network_plus_one_and_end_skips_broadcast() {
        let r = spec("10.9.0.0/29").canonicalize().unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.9.0.1"), ip("10.9.0.6"), ip("10.9.0.1"))
        );
        assert_eq!(r.to_string(), "10.9.0.1-10.9.0.6");
    }

    #[test]
    fn defaults_v6_end_includes_last_address() {
        let r = spec("fd00:1::/120").canonicalize().unwrap();
        assert_eq!((r.start, r.end), (ip("fd00:1::1"), ip("fd00:1::ff")));
        assert_eq!(r.gateway, ip("fd00:1::1"));
    }

    #[test]
    fn explicit_bounds_and_gateway_are_kept() {
        let mut s = spec("10.1.0.0/24");
        s.range_start = Some(ip("10.1.0.0"));
        s.range_end = Some(ip("10.1.0.255"));
        s.gateway = Some(ip("192.168.0.1"));
        let r = s.canonicalize().unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.0.0"), ip("10.1.0.255"), ip("192.168.0.1"))
        );
    }

    #[test]
    fn canonicalisation_errors_match_upstream_text() {
        assert_eq!(err(RangeSpec::default()), "IP <nil> not v4 nor v6");
        assert_eq!(
            err(spec("10.1.0.0/31")),
            "Network 10.1.0.0/31 too small to allocate from"
        );
        assert_eq!(
            err(spec("10.1.0.1/32")),
            "Network 10.1.0.1/32 too small to allocate from"
        );
        assert_eq!(
            err(spec("fd00::/127")),
            "Network fd00::/127 too small to allocate from"
        );
        assert_eq!(
            err(spec("::ffff:10.0.0.0/127")),
            "Network 10.0.0.0/31 too small to allocate from"
        );
        assert_eq!(
            err(spec("::ffff:10.0.0.0/120")),
            "IPNet IP and Mask version mismatch"
        );
        assert_eq!(
            err(spec("10.1.0.1/24")),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.0.0"
        );
        let mut s = spec("10.1.0.0/24");
        s.range_start = Some(ip("10.2.0.1"));
        assert_eq!(err(s), "RangeStart 10.2.0.1 not in network 10.1.0.0/24");
        let mut s = spec("10.1.0.0/24");
        s.range_start = Some(ip("10.1.0.50"));
        s.range_end = Some(ip("10.1.0.20"));
        assert_eq!(err(s), "RangeStart 10.1.0.50 not in network 10.1.0.0/24");
        let mut s = spec("10.1.0.0/24");
        s.range_end = Some(ip("10.1.1.0"));
        assert_eq!(err(s), "RangeEnd 10.1.1.0 not in network 10.1.0.0/24");
        let mut s = spec("10.1.0.0/24");
        s.range_end = Some(ip("fd00::1"));
        assert_eq!(err(s), "RangeEnd fd00::1 not in network 10.1.0.0/24");
    }

    #[test]
    fn contains_and_overlaps() {
        let a = spec("10.1.0.0/24").canonicalize().unwrap();
        let b = spec("10.1.0.0/25").canonicalize().unwrap();
        let c = spec("10.2.0.0/24").canonicalize().unwrap();
        let v6 = spec("fd00::/64").canonicalize().unwrap();
        assert!(
            a.contains(ip("10.1.0.254"))
                && !a.contains(ip("10.1.0.255"))
                && !a.contains(ip("10.1.0.0"))
        );
        assert!(a.contains(ip("::ffff:10.1.0.9")));
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !a.overlaps(&v6));
    }
}

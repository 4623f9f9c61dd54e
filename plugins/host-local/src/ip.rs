//! Address arithmetic and parsing with Go `net` semantics.
//!
//! The store and every error message print addresses the way Go's `net.IP.String()` does, and
//! configs are parsed the way `net.ParseIP` / `net.ParseCIDR` parse them, so that a Go and a Rust
//! binary sharing one data directory agree on file names byte for byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A CIDR as Go's `types.IPNet` holds it: the address exactly as written (host bits kept) and the
/// prefix length measured against the mask width of the *notation* (32 for dotted quads, 128 for
/// any colon form, including v4-mapped addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
    pub mask_bits: u8,
}

impl Cidr {
    /// Go's `net.ParseCIDR`; `None` is reported by callers as `invalid CIDR address: <s>`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = s.split_once('/')?;
        let (addr, mask_bits) = match parse_ip(addr)? {
            ParsedIp::V4(a) => (IpAddr::V4(a), 32u8),
            ParsedIp::V6(a) => (IpAddr::V6(a), 128u8),
        };
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = len.parse().ok()?;
        if prefix > mask_bits {
            return None;
        }
        Some(Cidr {
            addr,
            prefix,
            mask_bits,
        })
    }

    /// The network address (host bits cleared), in canonical family.
    pub fn network(&self) -> IpAddr {
        mask(canonical(self.addr), self.prefix, self.mask_bits)
    }

    /// Address and prefix as Go's `(*net.IPNet).String()` prints them: the address as written
    /// (canonical family), and a v6-width mask on a v4 address cut down to its last 32 bits.
    pub fn go_parts(&self) -> (IpAddr, u8) {
        let addr = canonical(self.addr);
        let excess = self.mask_bits - bits(addr);
        (addr, self.prefix.saturating_sub(excess))
    }
}

enum ParsedIp {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

fn parse_ip(s: &str) -> Option<ParsedIp> {
    if s.contains(':') {
        s.parse::<Ipv6Addr>().ok().map(ParsedIp::V6)
    } else {
        s.parse::<Ipv4Addr>().ok().map(ParsedIp::V4)
    }
}

/// Go's `net.ParseIP` followed by the plugin's `canonicalizeIP` (v4-mapped v6 becomes v4).
pub fn parse_canonical(s: &str) -> Option<IpAddr> {
    match parse_ip(s)? {
        ParsedIp::V4(a) => Some(IpAddr::V4(a)),
        ParsedIp::V6(a) => Some(canonical(IpAddr::V6(a))),
    }
}

/// Go's `To4()` normalisation: only `::ffff:a.b.c.d` collapses to IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

pub fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// Next address in the same family; wraps like Go's `ip.NextIP` (byte-wise carry).
pub fn next(ip: IpAddr) -> IpAddr {
    let max = if ip.is_ipv4() {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    let v = to_u128(ip);
    from_u128(ip, if v == max { 0 } else { v + 1 })
}

/// Clears host bits; `mask_bits` may exceed the family width for a v4 address written in v6
/// notation, in which case the v6-width mask is applied to the v4-mapped form first.
pub fn mask(ip: IpAddr, prefix: u8, mask_bits: u8) -> IpAddr {
    let width = bits(ip);
    let host_bits = u32::from(mask_bits.saturating_sub(prefix)).min(u32::from(width));
    let v = to_u128(ip);
    let cleared = if host_bits >= 128 {
        0
    } else {
        (v >> host_bits) << host_bits
    };
    from_u128(ip, cleared)
}

/// Last address of the subnet (all host bits set).
pub fn last(network: IpAddr, prefix: u8) -> IpAddr {
    let host_bits = u32::from(bits(network) - prefix);
    let ones = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    from_u128(network, to_u128(network) | ones)
}

/// Whether `ip` is inside `network/prefix` (same family required).
pub fn in_subnet(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == network.is_ipv4() && mask(ip, prefix, bits(ip)) == network
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_cidr_keeps_host_bits_and_notation_width() {
        let c = Cidr::parse("10.1.2.3/24").unwrap();
        assert_eq!((c.addr, c.prefix, c.mask_bits), (ip("10.1.2.3"), 24, 32));
        assert_eq!(c.network(), ip("10.1.2.0"));
        let m = Cidr::parse("::ffff:10.0.0.0/120").unwrap();
        assert_eq!(m.mask_bits, 128);
        assert_eq!(canonical(m.addr), ip("10.0.0.0"));
    }

    #[test]
    fn parse_cidr_rejects_what_go_rejects() {
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/+8",
            "x/8",
            "fe80::1%eth0/64",
        ] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn arithmetic() {
        assert_eq!(next(ip("10.0.0.255")), ip("10.0.1.0"));
        assert_eq!(next(ip("255.255.255.255")), ip("0.0.0.0"));
        assert_eq!(next(ip("fd00::ffff")), ip("fd00::1:0"));
        assert_eq!(last(ip("10.0.0.0"), 29), ip("10.0.0.7"));
        assert_eq!(last(ip("fd00::"), 120), ip("fd00::ff"));
        assert_eq!(
            last(ip("::"), 0),
            ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert!(in_subnet(ip("10.0.0.7"), ip("10.0.0.0"), 29));
        assert!(!in_subnet(ip("10.0.0.8"), ip("10.0.0.0"), 29));
        assert!(!in_subnet(ip("fd00::1"), ip("10.0.0.0"), 0));
        assert_eq!(parse_canonical("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_canonical("::1.2.3.4"), Some(ip("::102:304")));
        assert_eq!(parse_canonical("1.2.3"), None);
    }
}

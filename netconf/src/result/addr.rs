//! IP address and CIDR text exactly as Go's `net` package reads and writes it in results.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

/// Go prints an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as plain IPv4.
fn as_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

/// Whether Go considers the address IPv4 (`ip.To4() != nil`).
pub fn is_v4(ip: IpAddr) -> bool {
    as_v4(ip).is_some()
}

/// Go's `net.IP.String()`.
pub fn ip_string(ip: IpAddr) -> String {
    match as_v4(ip) {
        Some(v4) => v4.to_string(),
        None => ip.to_string(),
    }
}

/// Go's `net.IPNet.String()` for an address with a prefix, host bits kept.
pub fn cidr_string(net: IpNet) -> String {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 && n.addr().to_ipv4_mapped().is_some() => {
            let v4 = n.addr().to_ipv4_mapped().expect("checked");
            Ipv4Net::new(v4, n.prefix_len() - 96)
                .expect("prefix in range")
                .to_string()
        }
        other => other.to_string(),
    }
}

/// Go's `types.ParseCIDR`: the address keeps its host bits (`10.1.2.3/24`).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map_err(|_| format!("invalid CIDR address: {s}"))
}

/// Go's `net.IP.UnmarshalText`: the empty string is "no address".
pub fn parse_ip(s: &str) -> Result<Option<IpAddr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<IpAddr>()
        .map(Some)
        .map_err(|_| format!("invalid IP address: {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_host_bits_and_prints_like_go() {
        let n = parse_cidr("10.244.1.2/24").unwrap();
        assert_eq!(cidr_string(n), "10.244.1.2/24");
        assert_eq!(
            cidr_string(parse_cidr("2001:DB8::1/64").unwrap()),
            "2001:db8::1/64"
        );
        assert_eq!(
            cidr_string(parse_cidr("::ffff:10.0.0.1/120").unwrap()),
            "10.0.0.1/24"
        );
        assert_eq!(ip_string("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert!(is_v4("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_v4("::1".parse().unwrap()));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert_eq!(
            parse_cidr("10.0.0.1").unwrap_err(),
            "invalid CIDR address: 10.0.0.1"
        );
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("").is_err());
        assert_eq!(parse_ip("").unwrap(), None);
        assert_eq!(parse_ip("nope").unwrap_err(), "invalid IP address: nope");
    }
}

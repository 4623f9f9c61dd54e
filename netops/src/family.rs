//! The IP family an operation is about.

use std::net::IpAddr;

use ipnet::IpNet;

/// IPv4 or IPv6: which addresses or routes a netlink listing returns, which iptables
/// front-end runs (`iptables` / `ip6tables`), which nftables table family a rule lives in
/// (`ip` / `ip6`), which conntrack table is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        Family::of(&net.addr())
    }

    pub fn is_v6(self) -> bool {
        self == Family::V6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_of_addresses_and_networks() {
        assert_eq!(Family::of(&"10.0.0.1".parse().unwrap()), Family::V4);
        assert_eq!(Family::of(&"::ffff:10.0.0.1".parse().unwrap()), Family::V6);
        assert_eq!(Family::of_net(&"fd00::/64".parse().unwrap()), Family::V6);
        assert!(Family::V6.is_v6() && !Family::V4.is_v6());
    }
}

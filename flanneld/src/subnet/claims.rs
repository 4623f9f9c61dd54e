//! Subnet claims: how flannel-rs keeps each family's subnet unique in etcd.
//!
//! Upstream creates a lease record only if its exact key is absent
//! (`pkg/subnet/etcd/registry.go` `createSubnet`: `Txn().If(Version(key) == 0)`), so two nodes
//! picking at once can both win with `10.244.53.0-24&fc00::2b-64` and
//! `10.244.53.0-24&fc00::40-64`: one IPv4 subnet, two holders. Our creates also check every
//! record sharing the IPv4 part (etcd v3 compares the `10.244.53.0-24` key and the
//! `10.244.53.0-24&` key range in the same transaction), and claim the parts no key range can
//! check — the IPv6 subnet in v3, both families in v2, which has no transactions — with a key
//! of their own, written with the record and living as long:
//!
//! ```text
//! <prefix>/claims/ipv6/fc00::2b-64 = "10.244.53.0-24&fc00::2b-64"
//! <prefix>/claims/ipv4/10.244.53.0-24 = "10.244.53.0-24&fc00::2b-64"   (etcd v2 only)
//! ```
//!
//! They live outside `<prefix>/subnets`, which upstream lists and watches with a plain prefix
//! (`<prefix>/subnets`, no trailing slash, so not under a sibling named `subnets…` either), so
//! upstream nodes never see them. Upstream nodes write no claims: a record such a node creates
//! racing with ours can still share a subnet, which [`crate::subnet::peers`] resolves.

use ipnet::{Ipv4Net, Ipv6Net};

use super::store::join_key;

/// The directory of claims under the etcd prefix.
const CLAIMS: &str = "claims";

pub fn v4_claim_key(prefix: &str, subnet: Ipv4Net) -> String {
    let name = format!("{}-{}", subnet.addr(), subnet.prefix_len());
    join_key(&join_key(&join_key(prefix, CLAIMS), "ipv4"), &name)
}

pub fn v6_claim_key(prefix: &str, subnet: Ipv6Net) -> String {
    let name = format!("{}-{}", subnet.addr(), subnet.prefix_len());
    join_key(&join_key(&join_key(prefix, CLAIMS), "ipv6"), &name)
}

/// Whether a record's key carries an IPv4 subnet: an IPv6-only lease's key carries the
/// zero network (`0.0.0.0-0&fc00::-64`), which nobody routes.
pub fn has_v4(subnet: Ipv4Net) -> bool {
    subnet.prefix_len() > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_sit_beside_the_records_not_under_them() {
        let prefix = "/coreos.com/network";
        let v6 = v6_claim_key(prefix, "fc00:10:0:2b::/64".parse().unwrap());
        let v4 = v4_claim_key(prefix, "10.244.53.0/24".parse().unwrap());
        assert_eq!(v6, "/coreos.com/network/claims/ipv6/fc00:10:0:2b::-64");
        assert_eq!(v4, "/coreos.com/network/claims/ipv4/10.244.53.0-24");
        // Upstream lists `path.Join(prefix, "subnets")` with a bare prefix match.
        for key in [v4, v6] {
            assert!(!key.starts_with("/coreos.com/network/subnets"));
        }
        assert!(!has_v4(Ipv4Net::default()));
        assert!(has_v4("10.0.0.0/24".parse().unwrap()));
    }
}

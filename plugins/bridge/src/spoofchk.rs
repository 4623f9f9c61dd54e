//! MAC spoof checking (`macspoofchk`): frames entering the bridge from a container's host
//! veth must carry the container's MAC. nftables, bridge family, table `nat`:
//!
//! ```text
//! chain PREROUTING { type filter hook prerouting priority -300; policy accept;
//!     iifname "<host veth>" jump cni-br-iface-<ref> comment "macspoofchk-<ref>" }
//! chain cni-br-iface-<ref> { jump cni-br-iface-<ref>-mac comment "..." }
//! chain cni-br-iface-<ref>-mac { ether saddr <mac> return comment "..."; drop comment "..." }
//! ```
//! with `<ref>` = `<container id>-<ifname>`. Each operation is one `nft -f -` transaction,
//! so a failure never leaves half a rule set.

use netops::firewall::nft::{self, NftError, TableFamily};

use netops::firewall::sigterm::SigtermIgnored;

const TABLE: &str = "bridge nat";
const BASE_CHAIN: &str = "PREROUTING";

/// The chains and comment of one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoofCheck {
    iface_chain: String,
    mac_chain: String,
    comment: String,
}

impl SpoofCheck {
    pub fn new(container_id: &str, ifname: &str) -> SpoofCheck {
        let reference = format!("{container_id}-{ifname}");
        let iface_chain = format!("cni-br-iface-{reference}");
        SpoofCheck {
            mac_chain: format!("{iface_chain}-mac"),
            iface_chain,
            comment: format!("macspoofchk-{reference}"),
        }
    }

    /// The transaction that installs the rules for `host_veth` / `mac`.
    pub fn setup_script(&self, host_veth: &str, mac: &str) -> String {
        let (i, m, c) = (&self.iface_chain, &self.mac_chain, &self.comment);
        format!(
            "add table {TABLE}\n\
             add chain {TABLE} {BASE_CHAIN} {{ type filter hook prerouting priority -300; policy accept; }}\n\
             add chain {TABLE} {i}\n\
             add chain {TABLE} {m}\n\
             flush chain {TABLE} {i}\n\
             flush chain {TABLE} {m}\n\
             add rule {TABLE} {BASE_CHAIN} iifname \"{host_veth}\" jump {i} comment \"{c}\"\n\
             add rule {TABLE} {i} jump {m} comment \"{c}\"\n\
             add rule {TABLE} {m} ether saddr {mac} return comment \"{c}\"\n\
             add rule {TABLE} {m} drop comment \"{c}\"\n"
        )
    }

    /// The transaction that removes this attachment's rules from table `bridge nat`
    /// (empty when there is nothing to remove).
    pub fn teardown_script(&self, table: &nft::Table) -> String {
        let mut script = String::new();
        for rule in table
            .rules_in(BASE_CHAIN)
            .filter(|r| r.comment.as_deref() == Some(self.comment.as_str()))
        {
            script.push_str(&format!(
                "delete rule {TABLE} {BASE_CHAIN} handle {}\n",
                rule.handle
            ));
        }
        let ours = [&self.iface_chain, &self.mac_chain];
        // The iface chain jumps to the mac chain: empty both before deleting either.
        for verb in ["flush", "delete"] {
            for chain in ours.iter().filter(|c| table.has_chain(c)) {
                script.push_str(&format!("{verb} chain {TABLE} {chain}\n"));
            }
        }
        script
    }

    pub fn setup(&self, host_veth: &str, mac: &str) -> Result<(), NftError> {
        let _hold = SigtermIgnored::new();
        nft::apply(&self.setup_script(host_veth, mac))
    }

    pub fn teardown(&self) -> Result<(), NftError> {
        let _hold = SigtermIgnored::new();
        // No table: nothing of ours can exist.
        let Some(table) = nft::list_table(TableFamily::Bridge, "nat")? else {
            return Ok(());
        };
        nft::apply(&self.teardown_script(&table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_script_is_one_transaction_with_upstream_names() {
        let sc = SpoofCheck::new("ctr1", "eth0");
        assert_eq!(
            sc.setup_script("veth0a1b2c3d", "0a:58:0a:f4:01:02"),
            "add table bridge nat\n\
             add chain bridge nat PREROUTING { type filter hook prerouting priority -300; policy accept; }\n\
             add chain bridge nat cni-br-iface-ctr1-eth0\n\
             add chain bridge nat cni-br-iface-ctr1-eth0-mac\n\
             flush chain bridge nat cni-br-iface-ctr1-eth0\n\
             flush chain bridge nat cni-br-iface-ctr1-eth0-mac\n\
             add rule bridge nat PREROUTING iifname \"veth0a1b2c3d\" jump cni-br-iface-ctr1-eth0 comment \"macspoofchk-ctr1-eth0\"\n\
             add rule bridge nat cni-br-iface-ctr1-eth0 jump cni-br-iface-ctr1-eth0-mac comment \"macspoofchk-ctr1-eth0\"\n\
             add rule bridge nat cni-br-iface-ctr1-eth0-mac ether saddr 0a:58:0a:f4:01:02 return comment \"macspoofchk-ctr1-eth0\"\n\
             add rule bridge nat cni-br-iface-ctr1-eth0-mac drop comment \"macspoofchk-ctr1-eth0\"\n"
        );
    }

    #[test]
    fn teardown_deletes_only_our_jump_and_chains() {
        let sc = SpoofCheck::new("ctr1", "eth0");
        let listing = r#"{"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "bridge", "name": "nat", "handle": 1}},
            {"chain": {"family": "bridge", "table": "nat", "name": "PREROUTING", "handle": 1}},
            {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-ctr1-eth0", "handle": 2}},
            {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-ctr1-eth0-mac", "handle": 3}},
            {"rule": {"chain": "PREROUTING", "handle": 7, "comment": "macspoofchk-ctr1-eth0"}},
            {"rule": {"chain": "PREROUTING", "handle": 8, "comment": "macspoofchk-ctr2-eth0"}},
            {"rule": {"chain": "cni-br-iface-ctr1-eth0-mac", "handle": 9, "comment": "macspoofchk-ctr1-eth0"}}
        ]}"#;
        let table = nft::parse_listing(listing).unwrap();
        assert_eq!(
            sc.teardown_script(&table),
            "delete rule bridge nat PREROUTING handle 7\n\
             flush chain bridge nat cni-br-iface-ctr1-eth0\n\
             flush chain bridge nat cni-br-iface-ctr1-eth0-mac\n\
             delete chain bridge nat cni-br-iface-ctr1-eth0\n\
             delete chain bridge nat cni-br-iface-ctr1-eth0-mac\n"
        );
        assert_eq!(sc.teardown_script(&nft::Table::default()), "");
    }
}

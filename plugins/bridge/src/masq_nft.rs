//! IP masquerade, nftables backend (upstream's `ipMasqBackend: "nftables"`): table
//! `inet cni_plugins_masquerade`, base chain `postrouting` (nat, srcnat) that skips multicast
//! and jumps to `masq_checks`, one rule per container IP there, found again by a comment
//! that starts with a hash of network + ifname + container id.

use ipnet::IpNet;
use netops::firewall::nft::{self, TableFamily};

use crate::masq::{hash_hex, MasqError};
use netops::firewall::sigterm::SigtermIgnored;

const FAMILY: TableFamily = TableFamily::Inet;
const TABLE_NAME: &str = "cni_plugins_masquerade";
const TABLE: &str = "inet cni_plugins_masquerade";
const CHECKS: &str = "masq_checks";

fn instance_hash(network: &str, ifname: &str, container_id: &str) -> String {
    format!(
        "{}-{}",
        hash_hex(network, 16),
        hash_hex(&format!("{ifname}:{container_id}"), 16)
    )
}

/// The rule comment: the instance hash (what teardown matches on) and readable context.
pub fn comment(network: &str, ifname: &str, container_id: &str) -> String {
    let clean = |s: &str| s.replace('"', "");
    format!(
        "{}, net: {}, if: {}, id: {}",
        instance_hash(network, ifname, container_id),
        clean(network),
        clean(ifname),
        clean(container_id)
    )
}

/// Handles of this instance's rules: `masq_checks` rules whose comment starts with `prefix`.
fn rules_with_prefix(table: &nft::Table, prefix: &str) -> Vec<u64> {
    table
        .rules_in(CHECKS)
        .filter(|r| r.comment.as_deref().is_some_and(|c| c.starts_with(prefix)))
        .map(|r| r.handle)
        .collect()
}

/// The setup transaction; `stale` are handles of this instance's earlier rules.
pub fn setup_script(ips: &[IpNet], comment: &str, stale: &[u64]) -> String {
    let mut s = format!(
        "add table {TABLE} {{ comment \"Masquerading for plugins from github.com/containernetworking/plugins\"; }}\n\
         add chain {TABLE} {CHECKS} {{ comment \"Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet\"; }}\n\
         add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; }}\n\
         flush chain {TABLE} postrouting\n\
         add rule {TABLE} postrouting ip daddr 224.0.0.0/4 return\n\
         add rule {TABLE} postrouting ip6 daddr ff00::/8 return\n\
         add rule {TABLE} postrouting goto {CHECKS}\n"
    );
    for h in stale {
        s.push_str(&format!("delete rule {TABLE} {CHECKS} handle {h}\n"));
    }
    for ip in ips {
        let fam = if ip.addr().is_ipv4() { "ip" } else { "ip6" };
        s.push_str(&format!(
            "add rule {TABLE} {CHECKS} {fam} saddr {} {fam} daddr != {} masquerade comment \"{comment}\"\n",
            ip.addr(),
            ip.trunc()
        ));
    }
    s
}

pub fn setup(
    ips: &[IpNet],
    network: &str,
    ifname: &str,
    container_id: &str,
) -> Result<(), MasqError> {
    let _hold = SigtermIgnored::new();
    let prefix = instance_hash(network, ifname, container_id);
    let stale = nft::list_table(FAMILY, TABLE_NAME)?
        .map_or_else(Vec::new, |t| rules_with_prefix(&t, &prefix));
    let script = setup_script(ips, &comment(network, ifname, container_id), &stale);
    Ok(nft::apply(&script)?)
}

pub fn teardown(network: &str, ifname: &str, container_id: &str) -> Result<(), MasqError> {
    let _hold = SigtermIgnored::new();
    let Some(table) = nft::list_table(FAMILY, TABLE_NAME)? else {
        return Ok(());
    };
    let script: String = rules_with_prefix(&table, &instance_hash(network, ifname, container_id))
        .iter()
        .map(|h| format!("delete rule {TABLE} {CHECKS} handle {h}\n"))
        .collect();
    Ok(nft::apply(&script)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_starts_with_instance_hash() {
        let c = comment("my\"net", "eth0", "ctr1");
        let h = instance_hash("my\"net", "eth0", "ctr1");
        assert_eq!(h.len(), 33);
        assert_eq!(c, format!("{h}, net: mynet, if: eth0, id: ctr1"));
    }

    #[test]
    fn setup_script_masquerades_outside_the_subnet() {
        let s = setup_script(
            &[
                "10.244.1.2/24".parse().unwrap(),
                "fd00::2/64".parse().unwrap(),
            ],
            "C",
            &[12],
        );
        assert!(
            s.contains("flush chain inet cni_plugins_masquerade postrouting\n"),
            "{s}"
        );
        assert!(
            s.contains("delete rule inet cni_plugins_masquerade masq_checks handle 12\n"),
            "{s}"
        );
        assert!(s.ends_with(
            "add rule inet cni_plugins_masquerade masq_checks ip saddr 10.244.1.2 ip daddr != 10.244.1.0/24 masquerade comment \"C\"\n\
             add rule inet cni_plugins_masquerade masq_checks ip6 saddr fd00::2 ip6 daddr != fd00::/64 masquerade comment \"C\"\n"
        ), "{s}");
    }

    #[test]
    fn finds_rules_by_comment_prefix() {
        let rule = |chain: &str, handle, comment: Option<&str>| nft::Rule {
            chain: chain.into(),
            handle,
            comment: comment.map(Into::into),
        };
        let table = nft::Table {
            chains: vec!["postrouting".into(), "masq_checks".into()],
            rules: vec![
                rule("masq_checks", 4, Some("aaaa-bbbb, net: n")),
                rule("masq_checks", 5, Some("aaaa-cccc, net: n")),
                rule("masq_checks", 7, None),
                rule("postrouting", 6, Some("aaaa-bbbb, net: n")),
            ],
        };
        assert_eq!(rules_with_prefix(&table, "aaaa-bbbb"), vec![4]);
    }
}

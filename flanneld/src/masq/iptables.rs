//! iptables mode: masquerading (`FLANNEL-POSTRTG` in nat) and forwarding (`FLANNEL-FWD` in
//! filter), upstream's chains, comments and order, so nodes switched between upstream and us
//! keep one rule set.
//!
//! Each rule set is written with one `iptables-restore --noflush` per table: our chain is
//! declared (created or emptied) and refilled in the same transaction, so there is no moment
//! without rules, and rules of a previous network or subnet disappear with the refill. The
//! jump from the built-in chain is added once and left where it is. [`RuleSet::ensure`] first
//! compares against `iptables-save` and writes nothing when all is in place, so it doubles as
//! the periodic check that restores rules someone flushed.

use ipnet::IpNet;
use netops::firewall::iptables::{save, Batch, IptablesError, SavedTable};
use netops::Family;

pub const MASQ_CHAIN: &str = "FLANNEL-POSTRTG";
pub const FORWARD_CHAIN: &str = "FLANNEL-FWD";
const MASQ_COMMENT: &str = "flanneld masq";
const FORWARD_COMMENT: &str = "flanneld forward";
/// kube-proxy marks packets it will masquerade itself with this bit.
const KUBE_PROXY_MARK: &str = "0x4000/0x4000";

/// One chain of ours, the rules it holds, and the jump into it from a built-in chain. Rule
/// arguments are in the canonical form `iptables-save` prints, so comparisons are exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub family: Family,
    pub table: &'static str,
    pub hook: &'static str,
    pub chain: &'static str,
    pub jump: Vec<String>,
    pub rules: Vec<Vec<String>>,
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// The masquerade rules for flannel network `network` (C) and this node's subnet `subnet` (P):
/// nothing inside the flannel network is NATed, traffic leaving it is (multicast excepted), and
/// host-to-pod traffic from outside the network is, so replies come back through this node.
pub fn masq_rules(network: IpNet, subnet: IpNet, random_fully: bool) -> RuleSet {
    let c = network.trunc().to_string();
    let p = subnet.trunc().to_string();
    let multicast = match network {
        IpNet::V4(_) => "224.0.0.0/4",
        IpNet::V6(_) => "ff00::/8",
    };
    let comment = ["-m", "comment", "--comment", MASQ_COMMENT];
    let ret =
        |head: &[&str]| -> Vec<String> { args(&[head, &comment, &["-j", "RETURN"]].concat()) };
    let mut masquerade = vec!["-j", "MASQUERADE"];
    if random_fully {
        masquerade.push("--random-fully");
    }
    let masq = |head: &[&str]| -> Vec<String> { args(&[head, &comment, &masquerade].concat()) };
    RuleSet {
        family: Family::of_net(&network),
        table: "nat",
        hook: "POSTROUTING",
        chain: MASQ_CHAIN,
        jump: args(&[&comment[..], &["-j", MASQ_CHAIN]].concat()),
        rules: vec![
            ret(&["-m", "mark", "--mark", KUBE_PROXY_MARK]),
            ret(&["-s", &p, "-d", &c]),
            ret(&["-s", &c, "-d", &p]),
            ret(&["!", "-s", &c, "-d", &p]),
            masq(&["-s", &c, "!", "-d", multicast]),
            masq(&["!", "-s", &c, "-d", &c]),
        ],
    }
}

/// Accept forwarded traffic from and to the flannel network (Docker sets FORWARD to DROP).
pub fn forward_rules(network: IpNet) -> RuleSet {
    let c = network.trunc().to_string();
    let comment = ["-m", "comment", "--comment", FORWARD_COMMENT];
    RuleSet {
        family: Family::of_net(&network),
        table: "filter",
        hook: "FORWARD",
        chain: FORWARD_CHAIN,
        jump: args(&[&comment[..], &["-j", FORWARD_CHAIN]].concat()),
        rules: vec![
            args(&[&["-s", c.as_str()][..], &comment, &["-j", "ACCEPT"]].concat()),
            args(&[&["-d", c.as_str()][..], &comment, &["-j", "ACCEPT"]].concat()),
        ],
    }
}

impl RuleSet {
    /// Whether `table` (a save of this set's table) holds this set exactly.
    pub fn in_place(&self, table: &SavedTable) -> bool {
        table.has_chain(self.chain)
            && table.has_rule(self.hook, &self.jump)
            && table
                .rules_in(self.chain)
                .eq(self.rules.iter().map(Vec::as_slice))
    }

    /// The batch that installs this set over `current`.
    pub fn batch(&self, current: SavedTable) -> Result<Batch, IptablesError> {
        let mut b = Batch::with_state(self.family, current)?;
        b.flush_chain(self.chain)?;
        for rule in &self.rules {
            b.append(self.chain, rule)?;
        }
        b.append_unique(self.hook, &self.jump)?;
        Ok(b)
    }

    /// Installs the set unless it is already in place; returns whether anything was written.
    /// Runs iptables in the calling thread's namespace (blocking).
    pub fn ensure(&self) -> Result<bool, IptablesError> {
        let current = save(self.family, self.table)?;
        if self.in_place(&current) {
            return Ok(false);
        }
        self.batch(current)?.apply()?;
        Ok(true)
    }
}

/// Whether this iptables knows `--random-fully` (added in 1.6.2), from `iptables --version`
/// output such as `iptables v1.8.9 (nf_tables)`.
pub fn supports_random_fully(version_output: &str) -> bool {
    let Some(v) = version_output
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
    else {
        return false;
    };
    let nums: Vec<u32> = v.split('.').map_while(|p| p.parse().ok()).collect();
    let [major, minor, patch] = [0, 1, 2].map(|i| nums.get(i).copied().unwrap_or(0));
    (major, minor, patch) >= (1, 6, 2)
}

/// Probes the installed iptables for `--random-fully`.
pub fn probe_random_fully(family: Family) -> bool {
    let out = std::process::Command::new(family.iptables_name())
        .arg("--version")
        .output();
    match out {
        Ok(o) if o.status.success() => supports_random_fully(&String::from_utf8_lossy(&o.stdout)),
        _ => false,
    }
}

/// Our chains and the tables they live in. (Upstream's nftables mode looks for FLANNEL-FWD in
/// nat when it cleans up; it lives in filter.)
const OUR_CHAINS: [(&str, &str); 2] = [("nat", MASQ_CHAIN), ("filter", FORWARD_CHAIN)];

fn targets(args: &[String], chain: &str) -> bool {
    args.windows(2)
        .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == chain)
}

/// The batch that deletes `chain` from `current`, after every rule that jumps into it: iptables
/// refuses to delete a chain something still refers to.
pub fn removal(family: Family, chain: &str, current: SavedTable) -> Result<Batch, IptablesError> {
    let jumps: Vec<_> = current
        .rules
        .iter()
        .filter(|r| r.chain != chain && targets(&r.args, chain))
        .cloned()
        .collect();
    let mut b = Batch::with_state(family, current)?;
    for rule in &jumps {
        b.delete_rule(&rule.chain, &rule.args)?;
    }
    b.delete_chain(chain)?;
    Ok(b)
}

/// Deletes our chains of `family` and the jumps into them, one restore per table that has
/// one (a node switching to nftables mode); returns the chains that were there.
pub fn remove_chains(family: Family) -> Result<Vec<&'static str>, IptablesError> {
    let mut removed = Vec::new();
    for (table, chain) in OUR_CHAINS {
        let current = save(family, table)?;
        if current.has_chain(chain) {
            removal(family, chain, current)?.apply()?;
            removed.push(chain);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(set: &RuleSet) -> String {
        let mut out = format!(
            "-A {} {}\n",
            set.hook,
            set.jump
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for r in &set.rules {
            out.push_str(&format!(
                "-A {} {}\n",
                set.chain,
                r.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
            ));
        }
        out
    }

    fn quote(a: &str) -> String {
        if a.contains(' ') {
            format!("\"{a}\"")
        } else {
            a.to_owned()
        }
    }

    #[test]
    fn masq_rules_match_upstream_text() {
        let set = masq_rules(
            "10.244.0.0/16".parse().unwrap(),
            "10.244.1.0/24".parse().unwrap(),
            true,
        );
        assert_eq!(
            text(&set),
            "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
             -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n\
             -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n"
        );
        assert_eq!((set.family, set.table), (Family::V4, "nat"));
    }

    #[test]
    fn masq_without_random_fully_and_for_ipv6() {
        let set = masq_rules(
            "fc00::/48".parse().unwrap(),
            "fc00:0:0:1::/64".parse().unwrap(),
            false,
        );
        assert_eq!(set.family, Family::V6);
        assert_eq!(
            set.rules[4].join(" "),
            "-s fc00::/48 ! -d ff00::/8 -m comment --comment flanneld masq -j MASQUERADE"
        );
        assert!(set
            .rules
            .iter()
            .all(|r| !r.contains(&"--random-fully".to_owned())));
    }

    #[test]
    fn forward_rules_match_upstream_text() {
        let set = forward_rules("10.244.0.0/16".parse().unwrap());
        assert_eq!(
            text(&set),
            "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n\
             -A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n\
             -A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n"
        );
    }

    #[test]
    fn in_place_detects_missing_changed_and_extra_rules() {
        let set = forward_rules("10.244.0.0/16".parse().unwrap());
        let saved = |body: &str| {
            SavedTable::parse(
                &format!("*filter\n:FORWARD ACCEPT [0:0]\n:FLANNEL-FWD - [0:0]\n{body}COMMIT\n"),
                "filter",
            )
            .unwrap()
        };
        let good = text(&set);
        assert!(set.in_place(&saved(&good)));
        assert!(!set.in_place(&saved("")), "flushed");
        let no_jump: String = good.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(!set.in_place(&saved(&no_jump)));
        let old_net = good.replace("10.244.0.0/16", "10.245.0.0/16");
        assert!(
            !set.in_place(&saved(&old_net)),
            "rules of a previous network"
        );
        let extra = format!("{good}-A FLANNEL-FWD -j DROP\n");
        assert!(!set.in_place(&saved(&extra)));
    }

    #[test]
    fn batch_refills_our_chain_and_adds_the_jump_once() {
        let set = forward_rules("10.244.0.0/16".parse().unwrap());
        let current = SavedTable::parse(
            "*filter\n:FORWARD DROP [0:0]\n:FLANNEL-FWD - [0:0]\n-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n-A FLANNEL-FWD -s 10.1.0.0/16 -j ACCEPT\nCOMMIT\n",
            "filter",
        )
        .unwrap();
        let b = set.batch(current).unwrap();
        assert_eq!(
            b.render(),
            "*filter\n:FLANNEL-FWD - [0:0]\n\
             -A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n\
             -A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n\
             COMMIT\n"
        );
        assert!(set.in_place(b.state()));
    }

    #[test]
    fn random_fully_needs_iptables_1_6_2() {
        assert!(supports_random_fully("iptables v1.8.9 (nf_tables)\n"));
        assert!(supports_random_fully("iptables v1.6.2"));
        assert!(!supports_random_fully("iptables v1.6.1"));
        assert!(!supports_random_fully("iptables v1.4.21"));
        assert!(!supports_random_fully("garbage"));
    }

    #[test]
    fn removal_drops_every_jump_then_the_chain() {
        let current = SavedTable::parse(
            "*nat\n:POSTROUTING ACCEPT [0:0]\n:FLANNEL-POSTRTG - [0:0]\n:OTHER - [0:0]\n\
             -A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
             -A POSTROUTING -j OTHER\n\
             -A OTHER -s 10.0.0.0/8 -g FLANNEL-POSTRTG\n\
             -A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
             -A FLANNEL-POSTRTG -j MASQUERADE\nCOMMIT\n",
            "nat",
        )
        .unwrap();
        let b = removal(Family::V4, MASQ_CHAIN, current).unwrap();
        assert_eq!(
            b.render(),
            "*nat\n\
             -D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
             -D OTHER -s 10.0.0.0/8 -g FLANNEL-POSTRTG\n\
             -D POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
             -F FLANNEL-POSTRTG\n-X FLANNEL-POSTRTG\nCOMMIT\n"
        );
        let left = b.state();
        assert!(!left.has_chain(MASQ_CHAIN) && left.has_chain("OTHER"));
        assert_eq!(
            left.rules
                .iter()
                .map(|r| r.args.join(" "))
                .collect::<Vec<_>>(),
            ["-j OTHER"]
        );
    }
}

//! nftables mode (`"EnableNFTables": true` in net-conf.json): tables `ip flannel-ipv4` and
//! `ip6 flannel-ipv6` with upstream's chains, hooks, priorities and comments, so a node can go
//! back and forth between upstream flanneld and this one.
//!
//! Both tables are written in one `nft -f -` transaction, each deleted and created afresh
//! inside it: the result is exact (a chain no longer wanted, rules of a previous network or
//! subnet are gone) and packets meet either the old rules or the new ones, never a gap.
//!
//! Unlike upstream, drift is repaired. nft has no cheap "is this rule there" question, so
//! right after writing, the tables are listed and the listing (chains, rule handles) kept.
//! The kernel gives every rule it adds a new handle, so a table removed (`nft flush ruleset`,
//! a firewalld reload), a chain flushed, a rule deleted or added all change the listing; the
//! periodic check compares and, on any difference, writes the tables again. A rule rewritten
//! in place (`nft replace rule`) keeps its handle and goes unnoticed: catching that needs the
//! rules' expressions, which `netops::firewall::nft::list_table` does not return.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;
use netops::firewall::nft::{self, NftError, TableFamily};
use netops::Family;

pub const V4_TABLE: &str = "flannel-ipv4";
pub const V6_TABLE: &str = "flannel-ipv6";
pub const FORWARD_CHAIN: &str = "forward";
pub const MASQ_CHAIN: &str = "postrtg";
const FORWARD_COMMENT: &str = "chain to accept flannel traffic";
const MASQ_COMMENT: &str = "chain to manage traffic masquerading by flannel";
/// kube-proxy's masquerade bit, tested under a mask as iptables mode does (`--mark
/// 0x4000/0x4000`) and as nft prints it back.
const KUBE_PROXY_MARK_TEST: &str = "meta mark & 0x00004000 == 0x00004000";
/// Scratch table of the fully-random probe; it never outlives the probe's transaction.
const PROBE_TABLE: &str = "flannel-probe";

/// Both of our tables, in the order they are written.
pub const TABLES: [(TableFamily, &str); 2] =
    [(TableFamily::Ip, V4_TABLE), (TableFamily::Ip6, V6_TABLE)];

/// One base chain of ours and its rules, each in the form `nft list` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    /// `filter` or `nat`.
    pub kind: &'static str,
    pub hook: &'static str,
    pub priority: &'static str,
    pub comment: &'static str,
    pub rules: Vec<String>,
}

/// One of our tables and the chains it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: TableFamily,
    pub name: &'static str,
    pub chains: Vec<Chain>,
}

fn selector(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

/// Accepts forwarded traffic from and to the flannel network (Docker sets FORWARD to DROP).
pub fn forward_chain(network: IpNet) -> Chain {
    let (ip, c) = (selector(&network), network.trunc());
    Chain {
        name: FORWARD_CHAIN,
        kind: "filter",
        hook: "forward",
        priority: "filter",
        comment: FORWARD_COMMENT,
        rules: vec![
            format!("{ip} saddr {c} accept"),
            format!("{ip} daddr {c} accept"),
        ],
    }
}

/// Masquerading for flannel network C (`network`) and this node's subnet P (`subnet`), the
/// rules of iptables mode: nothing inside the flannel network is NATed, traffic leaving it is
/// (multicast excepted), and so is traffic from outside the network to other nodes' pods, so
/// their replies come back through this node. Upstream's fourth rule here is
/// `saddr != P daddr C return`, which returns that last kind of traffic too and leaves the
/// final rule unreachable; ours is iptables' `saddr != C daddr P return`.
pub fn masq_chain(network: IpNet, subnet: IpNet, random_fully: bool) -> Chain {
    let (ip, c, p) = (selector(&network), network.trunc(), subnet.trunc());
    let multicast = match network {
        IpNet::V4(_) => "224.0.0.0/4",
        IpNet::V6(_) => "ff00::/8",
    };
    let masquerade = if random_fully {
        "masquerade fully-random"
    } else {
        "masquerade"
    };
    Chain {
        name: MASQ_CHAIN,
        kind: "nat",
        hook: "postrouting",
        priority: "srcnat",
        comment: MASQ_COMMENT,
        rules: vec![
            format!("{KUBE_PROXY_MARK_TEST} return"),
            format!("{ip} saddr {p} {ip} daddr {c} return"),
            format!("{ip} saddr {c} {ip} daddr {p} return"),
            format!("{ip} saddr != {c} {ip} daddr {p} return"),
            format!("{ip} saddr {c} {ip} daddr != {multicast} {masquerade}"),
            format!("{ip} saddr != {c} {ip} daddr {c} {masquerade}"),
        ],
    }
}

/// Both tables, as upstream always creates both; a table's chains follow the flags and
/// whether that family has a network (`networks`: flannel network and this node's subnet).
pub fn tables(
    networks: &[(IpNet, IpNet)],
    ip_masq: bool,
    forward: bool,
    random_fully: bool,
) -> Vec<Table> {
    TABLES
        .iter()
        .map(|&(family, name)| {
            let mut chains = Vec::new();
            let own = networks
                .iter()
                .filter(|(net, _)| TableFamily::from(Family::of_net(net)) == family);
            for &(network, subnet) in own {
                if forward {
                    chains.push(forward_chain(network));
                }
                if ip_masq {
                    chains.push(masq_chain(network, subnet, random_fully));
                }
            }
            Table {
                family,
                name,
                chains,
            }
        })
        .collect()
}

impl Table {
    /// Appends the commands that replace this table, whatever it holds now, with ours. The
    /// leading `add` makes the `delete` valid when the table does not exist yet.
    pub fn write_script(&self, out: &mut String) {
        let (family, name) = (self.family, self.name);
        let _ = writeln!(out, "add table {family} {name}");
        let _ = writeln!(out, "delete table {family} {name}");
        let _ = writeln!(
            out,
            "add table {family} {name} {{ comment \"rules for {name}\" ; }}"
        );
        for c in &self.chains {
            let _ = writeln!(
                out,
                "add chain {family} {name} {} {{ type {} hook {} priority {} ; policy accept ; comment \"{}\" ; }}",
                c.name, c.kind, c.hook, c.priority, c.comment
            );
            for rule in &c.rules {
                let _ = writeln!(out, "add rule {family} {name} {} {rule}", c.name);
            }
        }
    }
}

/// What `nft -j list table` showed for each of our tables (`None`: no such table).
type Listing = Vec<Option<nft::Table>>;

/// Our tables plus what the kernel listed right after we last wrote them. Clones share that
/// record: the daemon hands clones to blocking threads for the periodic check.
#[derive(Debug, Clone)]
pub struct Tables {
    tables: Vec<Table>,
    written: Arc<Mutex<Option<Listing>>>,
}

impl Tables {
    pub fn new(tables: Vec<Table>) -> Tables {
        Tables {
            tables,
            written: Arc::default(),
        }
    }

    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The whole transaction.
    pub fn script(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            t.write_script(&mut out);
        }
        out
    }

    fn list(&self) -> Result<Listing, NftError> {
        self.tables
            .iter()
            .map(|t| nft::list_table(t.family, t.name))
            .collect()
    }

    /// Whether the kernel holds what this value last wrote. Blocking; runs nft in the calling
    /// thread's namespace.
    pub fn in_place(&self) -> Result<bool, NftError> {
        let current = self.list()?;
        Ok(self.record().as_ref() == Some(&current))
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Option<Listing>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the tables unless what was last written is still there untouched; returns
    /// whether it wrote. The first call always writes, so a restart replaces whatever an
    /// earlier run (ours, upstream's, another network's) left. Blocking.
    pub fn ensure(&self) -> Result<bool, NftError> {
        let current = self.list()?;
        let mut record = self.record();
        if record.as_ref() == Some(&current) {
            return Ok(false);
        }
        nft::apply(&self.script())?;
        *record = Some(self.list()?);
        Ok(true)
    }
}

/// Whether the kernel and nft here accept `masquerade fully-random`, asked by a transaction
/// that builds a scratch nat chain for each family and deletes it again, so nothing is ever
/// visible. `Err` carries nft's reason.
pub fn probe_fully_random(families: &[TableFamily]) -> Result<(), NftError> {
    let mut s = String::new();
    for family in families {
        let _ = writeln!(s, "add table {family} {PROBE_TABLE}");
        let _ = writeln!(s, "delete table {family} {PROBE_TABLE}");
        let _ = writeln!(s, "add table {family} {PROBE_TABLE}");
        let _ = writeln!(
            s,
            "add chain {family} {PROBE_TABLE} masq {{ type nat hook postrouting priority srcnat ; }}"
        );
        let _ = writeln!(
            s,
            "add rule {family} {PROBE_TABLE} masq masquerade fully-random"
        );
        let _ = writeln!(s, "delete table {family} {PROBE_TABLE}");
    }
    nft::apply(&s)
}

/// Deletes our tables (a node back in iptables mode) in one transaction; returns the ones
/// that were there. Without a usable nft there can be none, and nothing is done.
pub fn remove_tables() -> Result<Vec<String>, NftError> {
    match nft::probe() {
        Ok(()) => {}
        Err(NftError::NotInstalled(_) | NftError::KernelUnsupported(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut script = String::new();
    let mut removed = Vec::new();
    for (family, name) in TABLES {
        if nft::list_table(family, name)?.is_some() {
            let _ = writeln!(script, "delete table {family} {name}");
            removed.push(format!("{family} {name}"));
        }
    }
    nft::apply(&script)?;
    Ok(removed)
}

#[cfg(test)]
#[path = "nftables_tests.rs"]
mod tests;

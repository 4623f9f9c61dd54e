//! What the `inet flannel-netpol` table should hold — its named sets with their elements and
//! its chains with their rules — and the `nft -f -` scripts that put it there: a whole-table
//! replacement (at start, after drift) and the difference between two states (every other
//! change). Either script is one nft transaction, so packets meet the old table or the new
//! one, never a half-written or empty one.
//!
//! Sets hold pod addresses, so a pod coming, going or changing labels changes elements only;
//! rules change only when policies do.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

/// The table's name; its family is `inet` (see the module docs of [`super`] for why).
pub const TABLE: &str = "flannel-netpol";
/// The chains, in the order they are created.
pub const CHAINS: [&str; 4] = [EGRESS, INGRESS, FORWARD, INPUT];
pub const FORWARD: &str = "forward";
pub const INPUT: &str = "input";
pub const EGRESS: &str = "egress";
pub const INGRESS: &str = "ingress";
/// Named counters on the final drop of each direction.
pub const DENIED_INGRESS: &str = "denied-ingress";
pub const DENIED_EGRESS: &str = "denied-egress";
/// Elements per `add element` command: nft parses one command at a time, and a few hundred
/// elements keep each line and its error message readable.
const ELEMENTS_PER_COMMAND: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// nft's payload keyword for the family's header.
    pub fn ip(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
}

/// What a set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// Pod addresses.
    Addr,
    /// Address ranges (ipBlocks), an interval set.
    Net,
    /// Pod address and port (a named port resolved on that pod).
    AddrPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Addr(IpAddr),
    Net(IpNet),
    AddrPort(IpAddr, u16),
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Element::Addr(a) => write!(f, "{a}"),
            Element::Net(n) => write!(f, "{n}"),
            Element::AddrPort(a, p) => write!(f, "{a} . {p}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    pub family: Family,
    pub kind: SetKind,
    pub elements: BTreeSet<Element>,
}

impl NftSet {
    pub fn new(family: Family, kind: SetKind) -> NftSet {
        NftSet {
            family,
            kind,
            elements: BTreeSet::new(),
        }
    }

    fn declaration(&self) -> String {
        let addr = self.family.addr_type();
        match self.kind {
            SetKind::Addr => format!("type {addr};"),
            SetKind::Net => format!("type {addr}; flags interval;"),
            SetKind::AddrPort => format!("type {addr} . inet_service;"),
        }
    }
}

/// The whole desired content of the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NftSet>,
    /// Rules of each chain in [`CHAINS`], in order.
    pub chains: BTreeMap<&'static str, Vec<String>>,
}

impl Ruleset {
    pub fn rules(&self, chain: &str) -> &[String] {
        self.chains.get(chain).map_or(&[], Vec::as_slice)
    }

    /// Rules in every chain.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }

    /// Elements in every set.
    pub fn element_count(&self) -> usize {
        self.sets.values().map(|s| s.elements.len()).sum()
    }
}

fn base_chain_spec(chain: &str) -> Option<&'static str> {
    match chain {
        FORWARD => Some("{ type filter hook forward priority filter; policy accept; }"),
        INPUT => Some("{ type filter hook input priority filter; policy accept; }"),
        _ => None,
    }
}

fn add_elements<'a>(
    out: &mut String,
    verb: &str,
    set: &str,
    elements: impl Iterator<Item = &'a Element>,
) {
    let elements: Vec<&Element> = elements.collect();
    for chunk in elements.chunks(ELEMENTS_PER_COMMAND) {
        let _ = write!(out, "{verb} element inet {TABLE} {set} {{ ");
        for (i, e) in chunk.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{e}");
        }
        out.push_str(" }\n");
    }
}

fn add_set(out: &mut String, name: &str, set: &NftSet) {
    let _ = writeln!(
        out,
        "add set inet {TABLE} {name} {{ {} }}",
        set.declaration()
    );
    add_elements(out, "add", name, set.elements.iter());
}

fn add_rules(out: &mut String, chain: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(out, "add rule inet {TABLE} {chain} {r}");
    }
}

fn add_chain(out: &mut String, chain: &str) {
    match base_chain_spec(chain) {
        Some(spec) => {
            let _ = writeln!(out, "add chain inet {TABLE} {chain} {spec}");
        }
        None => {
            let _ = writeln!(out, "add chain inet {TABLE} {chain}");
        }
    }
}

/// Replaces whatever the table holds (or creates it) with `rs`, in one transaction. The
/// leading `add` makes the `delete` valid when there is no table yet.
pub fn full_script(rs: &Ruleset) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add table inet {TABLE}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    let _ = writeln!(out, "add table inet {TABLE}");
    for counter in [DENIED_INGRESS, DENIED_EGRESS] {
        let _ = writeln!(out, "add counter inet {TABLE} {counter}");
    }
    for (name, set) in &rs.sets {
        add_set(&mut out, name, set);
    }
    for chain in CHAINS {
        add_chain(&mut out, chain);
    }
    for chain in CHAINS {
        add_rules(&mut out, chain, rs.rules(chain));
    }
    out
}

/// The commands that turn `old` (what the kernel holds) into `new`; empty when they are the
/// same. Order matters inside the transaction: new sets exist before rules use them, and a
/// set is deleted only after the rules that used it were flushed.
pub fn diff_script(old: &Ruleset, new: &Ruleset) -> String {
    // Set names encode family and kind, so a name never changes type; if one ever did, a
    // whole-table replacement is still exact.
    let retyped = new.sets.iter().any(|(name, set)| {
        old.sets
            .get(name)
            .is_some_and(|was| (was.family, was.kind) != (set.family, set.kind))
    });
    if retyped {
        return full_script(new);
    }
    let mut out = String::new();
    for (name, set) in &new.sets {
        match old.sets.get(name) {
            Some(was) => {
                add_elements(
                    &mut out,
                    "delete",
                    name,
                    was.elements.difference(&set.elements),
                );
                add_elements(
                    &mut out,
                    "add",
                    name,
                    set.elements.difference(&was.elements),
                );
            }
            None => add_set(&mut out, name, set),
        }
    }
    for chain in CHAINS {
        let now = new.rules(chain);
        if old.rules(chain) != now {
            let _ = writeln!(out, "flush chain inet {TABLE} {chain}");
            add_rules(&mut out, chain, now);
        }
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(out, "delete set inet {TABLE} {name}");
    }
    out
}

/// Removes the table, if it exists (`--network-policy` turned off).
pub fn delete_script() -> String {
    format!("add table inet {TABLE}\ndelete table inet {TABLE}\n")
}

#[cfg(test)]
#[path = "ruleset_tests.rs"]
mod tests;

//! From the cluster's policies and pods to the table's content ([`Ruleset`]) for one node.
//!
//! Every node compiles every policy (so rules do not depend on which pods happen to run
//! here), but target sets hold only this node's pods: a node judges ingress to and egress
//! from its own pods. Peer sets hold pods of every node.
//!
//! Layout (per enabled family; `4`/`6` suffixes):
//! - `t…` target sets: this node's pods a policy's podSelector picks (one set per distinct
//!   namespace + selector, shared by policies that select alike);
//! - `s…` peer sets: pods a `podSelector`/`namespaceSelector` peer picks, cluster-wide;
//! - `b…` interval sets: an `ipBlock`'s cidr without its excepts;
//! - `n…` address . port sets: the pods of a scope (a policy's targets, a peer, or every pod)
//!   that have a named port, with the number it has there;
//! - `iso-in`/`iso-eg`: this node's pods isolated for ingress / egress.
//!
//! Chain `ingress` holds, per policy, rule and port entry, `ip daddr @t… ip saddr @s… <port>
//! return`, and finally `ip daddr @iso-in drop`; `egress` mirrors it with source and
//! destination swapped. `forward` (pod traffic, same-node traffic included through
//! br_netfilter) accepts established flows and runs `egress` for sources in `iso-eg`, then
//! `ingress` for destinations in `iso-in`; `input` (pod to this node) runs `egress` likewise.
//! A `return` ends a direction's check as allowed, so a connection passes when some policy
//! allows it on each side that is isolated; traffic of pods no policy isolates costs one set
//! lookup per direction.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;

use super::cluster::{Cluster, PodInfo};
use super::policy::{IpBlock, Namespaces, Peer, Policy, PolicyKey, Port, PortMatch, Rule};
use super::ruleset::{
    Element, Family, NftSet, Ruleset, SetKind, DENIED_EGRESS, DENIED_INGRESS, EGRESS, FORWARD,
    INGRESS, INPUT,
};
use super::selector::{Labels, Selector};

/// Sets of this node's pods isolated for ingress / egress.
pub const ISOLATED_INGRESS: &str = "iso-in";
pub const ISOLATED_EGRESS: &str = "iso-eg";

/// The address families the flannel network carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    fn list(self) -> Vec<Family> {
        let mut out = Vec::new();
        if self.v4 {
            out.push(Family::V4);
        }
        if self.v6 {
            out.push(Family::V6);
        }
        out
    }
}

/// A pod of this node and the policies that select it, per direction (for `/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub ingress: Vec<PolicyKey>,
    pub egress: Vec<PolicyKey>,
}

#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub ruleset: Ruleset,
    /// This node's pods that take part in policy, sorted by namespace and name.
    pub local_pods: Vec<LocalPod>,
    /// Policies that could not be understood and fail closed, with why.
    pub errors: Vec<(PolicyKey, String)>,
}

/// This node's pods `(namespace, name)` → the policies isolating them for (ingress, egress).
type Selection<'a> = BTreeMap<(&'a str, &'a str), (Vec<PolicyKey>, Vec<PolicyKey>)>;

/// Which pods a rule's port entry is about, for named ports.
#[derive(Clone, Copy)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// `(own, peer)`: the header field of the policy's pod and of the other side.
    fn fields(self) -> (&'static str, &'static str) {
        match self {
            Direction::Ingress => ("daddr", "saddr"),
            Direction::Egress => ("saddr", "daddr"),
        }
    }
}

struct Builder<'a> {
    cluster: &'a Cluster,
    node: &'a str,
    families: Vec<Family>,
    ns_labels: BTreeMap<&'a str, Labels>,
    sets: BTreeMap<String, NftSet>,
    /// Set key → base name, and back (to settle hash collisions deterministically).
    names: HashMap<String, String>,
    keys: HashMap<String, String>,
}

fn hashed(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// nft comments are limited to 128 bytes; policy names are DNS names, so no quoting needed.
fn comment(key: &PolicyKey) -> String {
    let mut text = key.to_string();
    text.truncate(120);
    format!("comment \"{text}\"")
}

fn ns_key(n: &Namespaces) -> String {
    match n {
        Namespaces::Own(ns) => format!("={ns}"),
        Namespaces::Matching(sel) => format!("~{}", sel.canonical()),
    }
}

fn block_key(b: &IpBlock) -> String {
    let mut key = format!("b\0{}", b.cidr);
    for e in &b.except {
        key.push_str(&format!("\0{e}"));
    }
    key
}

/// `net` without `except`, as disjoint prefixes.
pub fn subtract(net: IpNet, except: &[IpNet]) -> Vec<IpNet> {
    if except.iter().any(|e| e.contains(&net)) {
        return Vec::new();
    }
    if !except.iter().any(|e| net.contains(e)) {
        return vec![net];
    }
    match net.subnets(net.prefix_len() + 1) {
        Ok(halves) => halves.flat_map(|h| subtract(h, except)).collect(),
        Err(_) => vec![net],
    }
}

impl<'a> Builder<'a> {
    fn new(cluster: &'a Cluster, node: &'a str, families: Families) -> Builder<'a> {
        let ns_labels = cluster
            .pods
            .keys()
            .map(|ns| (ns.as_str(), cluster.namespace_labels(ns)))
            .collect();
        Builder {
            cluster,
            node,
            families: families.list(),
            ns_labels,
            sets: BTreeMap::new(),
            names: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// The base name for `key` (`prefix` + hash), created on first use. Returns whether it
    /// is new (its content still has to be filled in).
    fn name(&mut self, prefix: char, key: &str) -> (String, bool) {
        if let Some(n) = self.names.get(key) {
            return (n.clone(), false);
        }
        let mut name = format!("{prefix}{:016x}", hashed(key));
        let mut n = 0;
        while self.keys.contains_key(&name) {
            n += 1;
            name = format!("{prefix}{:016x}x{n}", hashed(key));
        }
        self.names.insert(key.to_owned(), name.clone());
        self.keys.insert(name.clone(), key.to_owned());
        (name, true)
    }

    fn fill(&mut self, base: &str, kind: SetKind, elements: impl IntoIterator<Item = Element>) {
        for f in &self.families {
            self.sets
                .entry(format!("{base}-{}", f.suffix()))
                .or_insert_with(|| NftSet::new(*f, kind));
        }
        for e in elements {
            let family = match e {
                Element::Addr(a) | Element::AddrPort(a, _) => Family::of(a),
                Element::Net(n) => Family::of(n.addr()),
            };
            if let Some(set) = self.sets.get_mut(&format!("{base}-{}", family.suffix())) {
                set.elements.insert(e);
            }
        }
    }

    /// Pods of every node that take part, with their namespace.
    fn all_pods(&self) -> impl Iterator<Item = (&'a str, &'a str, &'a PodInfo)> + 'a {
        self.cluster.pods.iter().flat_map(|(ns, pods)| {
            pods.iter()
                .filter(|(_, p)| p.takes_part())
                .map(move |(name, p)| (ns.as_str(), name.as_str(), p))
        })
    }

    fn namespace_matches(&self, ns: &str, which: &Namespaces) -> bool {
        match which {
            Namespaces::Own(own) => own == ns,
            Namespaces::Matching(sel) => self.ns_labels.get(ns).is_some_and(|l| sel.matches(l)),
        }
    }

    /// The pods a peer selector picks, anywhere.
    fn peer_pods(&self, namespaces: &Namespaces, pods: &Selector) -> Vec<&'a PodInfo> {
        self.all_pods()
            .filter(|(ns, _, p)| self.namespace_matches(ns, namespaces) && pods.matches(&p.labels))
            .map(|(_, _, p)| p)
            .collect()
    }

    /// This node's pods `policy` selects, as `(name, pod)`.
    fn targets(&self, policy: &Policy) -> Vec<(&'a str, &'a PodInfo)> {
        let Some(pods) = self.cluster.pods.get(&policy.key.namespace) else {
            return Vec::new();
        };
        pods.iter()
            .filter(|(_, p)| {
                p.takes_part() && p.node == self.node && policy.pod_selector.matches(&p.labels)
            })
            .map(|(n, p)| (n.as_str(), p))
            .collect()
    }

    /// The address set named after `key`; `pods` is asked only the first time.
    fn addr_set<'p>(
        &mut self,
        prefix: char,
        key: &str,
        pods: impl FnOnce(&Self) -> Vec<&'p PodInfo>,
    ) -> String {
        let (name, new) = self.name(prefix, key);
        if new {
            let elements: Vec<Element> = pods(self)
                .iter()
                .flat_map(|p| p.ips.iter().map(|ip| Element::Addr(*ip)))
                .collect();
            self.fill(&name, SetKind::Addr, elements);
        }
        name
    }

    /// A set with a fixed name (the isolation sets).
    fn fixed_set(&mut self, name: &str, pods: &[&PodInfo]) {
        let elements: Vec<Element> = pods
            .iter()
            .flat_map(|p| p.ips.iter().map(|ip| Element::Addr(*ip)))
            .collect();
        self.fill(name, SetKind::Addr, elements);
    }

    fn block_set(&mut self, block: &IpBlock) -> String {
        let (name, new) = self.name('b', &block_key(block));
        if new {
            let elements: Vec<Element> = subtract(block.cidr, &block.except)
                .into_iter()
                .map(Element::Net)
                .collect();
            self.fill(&name, SetKind::Net, elements);
        }
        name
    }

    /// `(address . port)` of the pods in a scope that have the named port; `pods` is asked
    /// only the first time.
    fn named_set<'p>(
        &mut self,
        scope: &str,
        port: &Port,
        name: &str,
        pods: impl FnOnce(&Self) -> Vec<&'p PodInfo>,
    ) -> String {
        let key = format!("n\0{scope}\0{:?}\0{name}", port.protocol);
        let (set, new) = self.name('n', &key);
        if new {
            let elements: Vec<Element> = pods(self)
                .iter()
                .filter_map(|p| p.named_port(name, port.protocol).map(|n| (p, n)))
                .flat_map(|(p, n)| p.ips.iter().map(move |ip| Element::AddrPort(*ip, n)))
                .collect();
            self.fill(&set, SetKind::AddrPort, elements);
        }
        set
    }
}

/// One peer alternative of a rule: a set of the other side's addresses, or anyone.
enum PeerRef<'p> {
    Any,
    Pods {
        set: String,
        key: String,
        namespaces: &'p Namespaces,
        pods: &'p Selector,
    },
    Block {
        set: String,
        key: String,
        block: &'p IpBlock,
    },
}

fn peer_ref<'p>(b: &mut Builder<'_>, peer: &'p Peer) -> PeerRef<'p> {
    match peer {
        Peer::Pods { namespaces, pods } => {
            let key = format!("s\0{}\0{}", ns_key(namespaces), pods.canonical());
            let set = b.addr_set('s', &key, |b| b.peer_pods(namespaces, pods));
            PeerRef::Pods {
                set,
                key,
                namespaces,
                pods,
            }
        }
        Peer::Block(block) => PeerRef::Block {
            set: b.block_set(block),
            key: block_key(block),
            block,
        },
    }
}

/// The port part of a rule, `""` for every port and protocol. A named port is resolved on
/// the destination: the policy's own pods for ingress, the peer's pods (or every pod) for
/// egress.
fn port_match(
    b: &mut Builder<'_>,
    port: Option<&Port>,
    dir: Direction,
    peer: &PeerRef<'_>,
    target: (&str, &[&PodInfo]),
    family: Family,
) -> String {
    let Some(p) = port else {
        return String::new();
    };
    let proto = p.protocol.nft();
    match &p.port {
        PortMatch::Any => format!(" meta l4proto {proto}"),
        PortMatch::Range(a, z) if a == z => format!(" meta l4proto {proto} th dport {a}"),
        PortMatch::Range(a, z) => format!(" meta l4proto {proto} th dport {a}-{z}"),
        PortMatch::Named(name) => {
            let set = match (dir, peer) {
                (Direction::Ingress, _) => {
                    let (key, pods) = target;
                    b.named_set(key, p, name, |_| pods.to_vec())
                }
                (Direction::Egress, PeerRef::Any) => {
                    b.named_set("*", p, name, |b| b.all_pods().map(|(_, _, p)| p).collect())
                }
                (
                    Direction::Egress,
                    PeerRef::Pods {
                        key,
                        namespaces,
                        pods,
                        ..
                    },
                ) => b.named_set(key, p, name, |b| b.peer_pods(namespaces, pods)),
                (Direction::Egress, PeerRef::Block { key, block, .. }) => {
                    b.named_set(key, p, name, |b| {
                        b.all_pods()
                            .filter(|(_, _, p)| p.ips.iter().any(|ip| block.contains(*ip)))
                            .map(|(_, _, p)| p)
                            .collect()
                    })
                }
            };
            format!(
                " meta l4proto {proto} {} daddr . th dport @{set}-{}",
                family.ip(),
                family.suffix()
            )
        }
    }
}

fn compile_rules(
    b: &mut Builder<'_>,
    policy: &Policy,
    rules: &[Rule],
    dir: Direction,
    target: (&str, &str, &[&PodInfo]),
    out: &mut Vec<String>,
) {
    let (own, other) = dir.fields();
    let (target_set, target_key, target_pods) = target;
    let note = comment(&policy.key);
    for rule in rules {
        let peers: Vec<PeerRef<'_>> = match &rule.peers {
            None => vec![PeerRef::Any],
            Some(list) => list.iter().map(|p| peer_ref(b, p)).collect(),
        };
        let ports: Vec<Option<&Port>> = if rule.ports.is_empty() {
            vec![None]
        } else {
            rule.ports.iter().map(Some).collect()
        };
        for family in b.families.clone() {
            let (ip, sfx) = (family.ip(), family.suffix());
            for port in &ports {
                for peer in &peers {
                    let peer_match = match peer {
                        PeerRef::Any => String::new(),
                        PeerRef::Pods { set, .. } => format!(" {ip} {other} @{set}-{sfx}"),
                        PeerRef::Block { set, block, .. }
                            if Family::of(block.cidr.addr()) == family =>
                        {
                            format!(" {ip} {other} @{set}-{sfx}")
                        }
                        PeerRef::Block { .. } => continue,
                    };
                    let ports = port_match(b, *port, dir, peer, (target_key, target_pods), family);
                    out.push(format!(
                        "{ip} {own} @{target_set}-{sfx}{peer_match}{ports} return {note}"
                    ));
                }
            }
        }
    }
}

/// Compiles the whole table for `node`.
pub fn compile(cluster: &Cluster, node: &str, families: Families) -> Compiled {
    let mut b = Builder::new(cluster, node, families);
    let mut ingress_rules = Vec::new();
    let mut egress_rules = Vec::new();
    let mut isolated_in: Vec<&PodInfo> = Vec::new();
    let mut isolated_eg: Vec<&PodInfo> = Vec::new();
    let mut selection: Selection<'_> = BTreeMap::new();
    let mut errors = Vec::new();
    for policy in cluster.policies.values() {
        if let Some(e) = &policy.error {
            errors.push((policy.key.clone(), e.clone()));
        }
        let targets = b.targets(policy);
        let target_pods: Vec<&PodInfo> = targets.iter().map(|(_, p)| *p).collect();
        let target_key = format!(
            "t\0{}\0{}",
            policy.key.namespace,
            policy.pod_selector.canonical()
        );
        let target_set = b.addr_set('t', &target_key, |_| target_pods.clone());
        for (name, _) in &targets {
            let entry = selection
                .entry((policy.key.namespace.as_str(), name))
                .or_default();
            if policy.ingress.is_some() {
                entry.0.push(policy.key.clone());
            }
            if policy.egress.is_some() {
                entry.1.push(policy.key.clone());
            }
        }
        let target = (
            target_set.as_str(),
            target_key.as_str(),
            target_pods.as_slice(),
        );
        if let Some(rules) = &policy.ingress {
            isolated_in.extend(&target_pods);
            compile_rules(
                &mut b,
                policy,
                rules,
                Direction::Ingress,
                target,
                &mut ingress_rules,
            );
        }
        if let Some(rules) = &policy.egress {
            isolated_eg.extend(&target_pods);
            compile_rules(
                &mut b,
                policy,
                rules,
                Direction::Egress,
                target,
                &mut egress_rules,
            );
        }
    }
    b.fixed_set(ISOLATED_INGRESS, &isolated_in);
    b.fixed_set(ISOLATED_EGRESS, &isolated_eg);
    let families = b.families.clone();
    for f in &families {
        let (ip, sfx) = (f.ip(), f.suffix());
        ingress_rules.push(format!(
            "{ip} daddr @{ISOLATED_INGRESS}-{sfx} counter name \"{DENIED_INGRESS}\" drop"
        ));
        egress_rules.push(format!(
            "{ip} saddr @{ISOLATED_EGRESS}-{sfx} counter name \"{DENIED_EGRESS}\" drop"
        ));
    }
    let mut front = vec!["ct state established,related accept".to_owned()];
    if families.contains(&Family::V6) {
        // Neighbour discovery between pods is bridged and would meet the drops.
        front.push(
            "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept"
                .to_owned(),
        );
    }
    // Only this node's isolated pods are judged: everything else (pods no policy isolates,
    // and on `input` the overlay's own packets, which conntrack sees as new for as long as
    // the flow is one-way) leaves after one set lookup instead of walking every rule.
    let mut egress_jumps = Vec::new();
    let mut ingress_jumps = Vec::new();
    for f in &families {
        let (ip, sfx) = (f.ip(), f.suffix());
        egress_jumps.push(format!("{ip} saddr @{ISOLATED_EGRESS}-{sfx} jump {EGRESS}"));
        ingress_jumps.push(format!(
            "{ip} daddr @{ISOLATED_INGRESS}-{sfx} jump {INGRESS}"
        ));
    }
    let mut forward = front.clone();
    forward.extend(egress_jumps.iter().cloned());
    forward.extend(ingress_jumps);
    let mut input = front;
    input.extend(egress_jumps);

    let mut ruleset = Ruleset {
        sets: std::mem::take(&mut b.sets),
        chains: BTreeMap::new(),
    };
    ruleset.chains.insert(FORWARD, forward);
    ruleset.chains.insert(INPUT, input);
    ruleset.chains.insert(INGRESS, ingress_rules);
    ruleset.chains.insert(EGRESS, egress_rules);

    let local_pods = local_pods(cluster, node, selection);
    Compiled {
        ruleset,
        local_pods,
        errors,
    }
}

fn local_pods<'a>(cluster: &'a Cluster, node: &str, mut selection: Selection<'a>) -> Vec<LocalPod> {
    cluster
        .pods
        .iter()
        .flat_map(|(ns, pods)| pods.iter().map(move |(name, p)| (ns, name, p)))
        .filter(|(_, _, p)| p.takes_part() && p.node == node)
        .map(|(ns, name, p)| {
            let (ingress, egress) = selection
                .remove(&(ns.as_str(), name.as_str()))
                .unwrap_or_default();
            LocalPod {
                namespace: ns.clone(),
                name: name.clone(),
                ips: p.ips.clone(),
                ingress,
                egress,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;

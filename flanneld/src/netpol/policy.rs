//! `networking.k8s.io/v1` NetworkPolicy, parsed from the object's `spec` into what the compiler
//! needs, with the API's defaulting and validation applied (references: the API reference for
//! NetworkPolicySpec, NetworkPolicyPeer, IPBlock and NetworkPolicyPort;
//! `pkg/apis/networking/v1/defaults.go`; `pkg/apis/networking/validation/validation.go`).
//!
//! The spec is read from raw JSON rather than through serde types on purpose: one malformed
//! policy must not fail the decoding of the whole list (kube-rs's watcher would then stall on
//! it), and must become a policy that *fails closed* instead — see [`Policy::error`].

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use super::selector::Selector;

/// `namespace/name` of a policy; ordered so that rules come out in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API's spelling (`TCP`, `UDP`, `SCTP`); anything else is refused, as by validation.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's name for `meta l4proto`.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// What a `ports` entry says about the destination port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// No `port`: every port of the protocol.
    Any,
    /// `port`, or `port`..=`endPort`.
    Range(u16, u16),
    /// A container port name, resolved on each destination pod by name and protocol.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub protocol: Protocol,
    pub port: PortMatch,
}

/// An `ipBlock`: `cidr` without the `except` ranges.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

/// Which namespaces a pod peer may live in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Namespaces {
    /// Only `podSelector` was given: the policy's own namespace.
    Own(String),
    /// `namespaceSelector` (`{}`: every namespace).
    Matching(Selector),
}

/// One `from`/`to` entry. `namespaceSelector` and `podSelector` in one entry are ANDed;
/// separate entries are ORed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Pods {
        namespaces: Namespaces,
        /// Absent `podSelector` with a `namespaceSelector`: every pod of those namespaces.
        pods: Selector,
    },
    Block(IpBlock),
}

/// One ingress or egress rule. `peers: None` (no or empty `from`/`to`) matches every peer;
/// an empty `ports` matches every port and protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Vec<Port>,
}

/// A policy as the compiler uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub key: PolicyKey,
    /// The pods (in `key.namespace`) the policy selects.
    pub pod_selector: Selector,
    /// `Some` when the policy isolates its pods for ingress (`Ingress` in policyTypes): the
    /// rules that allow traffic in. `Some(vec![])` denies everything.
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    /// Why the policy could not be understood. Such a policy fails closed: it isolates the
    /// pods it selects in the directions its policyTypes name (both when those are unreadable
    /// too; every pod of its namespace when its podSelector is) and allows nothing.
    pub error: Option<String>,
}

impl Policy {
    /// Parses one NetworkPolicy's `spec`. Never fails: what cannot be understood becomes a
    /// fail-closed policy carrying the reason.
    pub fn parse(key: PolicyKey, spec: &Value) -> Policy {
        match parse_spec(&key.namespace, spec) {
            Ok((pod_selector, ingress, egress)) => Policy {
                key,
                pod_selector,
                ingress,
                egress,
                error: None,
            },
            Err(e) => fail_closed(key, spec, e),
        }
    }
}

fn fail_closed(key: PolicyKey, spec: &Value, reason: String) -> Policy {
    let pod_selector = spec
        .get("podSelector")
        .and_then(|s| Selector::parse(s).ok())
        .unwrap_or_else(Selector::everything);
    let (ingress, egress) = match policy_types(spec) {
        Ok((i, e)) => (i, e),
        Err(_) => (true, true),
    };
    Policy {
        key,
        pod_selector,
        ingress: ingress.then(Vec::new),
        egress: egress.then(Vec::new),
        error: Some(reason),
    }
}

type Parsed = (Selector, Option<Vec<Rule>>, Option<Vec<Rule>>);

fn parse_spec(namespace: &str, spec: &Value) -> Result<Parsed, String> {
    if !spec.is_object() {
        return Err(format!("spec must be an object, not {spec}"));
    }
    // Required by validation; a missing one would select every pod, so treat it as the
    // error it is.
    let pod_selector = match spec.get("podSelector") {
        None | Some(Value::Null) => return Err("spec.podSelector is missing".into()),
        Some(s) => Selector::parse(s).map_err(|e| format!("spec.podSelector: {e}"))?,
    };
    let (ingress, egress) = policy_types(spec)?;
    let rules = |field: &str, peers_field: &str| -> Result<Vec<Rule>, String> {
        match spec.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    parse_rule(namespace, r, peers_field)
                        .map_err(|e| format!("spec.{field}[{i}]: {e}"))
                })
                .collect(),
            Some(other) => Err(format!("spec.{field} must be a list, not {other}")),
        }
    };
    // Rules of a direction the policy does not isolate are ignored, as by every
    // implementation: policyTypes decides.
    let ingress_rules = rules("ingress", "from")?;
    let egress_rules = rules("egress", "to")?;
    Ok((
        pod_selector,
        ingress.then_some(ingress_rules),
        egress.then_some(egress_rules),
    ))
}

/// `(ingress, egress)` from `policyTypes`, defaulted as the API server does: `Ingress`, plus
/// `Egress` when the spec has a non-empty `egress` list.
fn policy_types(spec: &Value) -> Result<(bool, bool), String> {
    let listed = match spec.get("policyTypes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(l)) => l.clone(),
        Some(other) => return Err(format!("spec.policyTypes must be a list, not {other}")),
    };
    if listed.is_empty() {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|l| !l.is_empty());
        return Ok((true, has_egress));
    }
    let (mut ingress, mut egress) = (false, false);
    for t in &listed {
        match t.as_str() {
            Some("Ingress") => ingress = true,
            Some("Egress") => egress = true,
            _ => {
                return Err(format!(
                    "unknown policyType {t} (known: \"Ingress\", \"Egress\")"
                ))
            }
        }
    }
    Ok((ingress, egress))
}

fn parse_rule(namespace: &str, rule: &Value, peers_field: &str) -> Result<Rule, String> {
    if !rule.is_object() {
        return Err(format!("a rule must be an object, not {rule}"));
    }
    let peers = match rule.get(peers_field) {
        None | Some(Value::Null) => None,
        Some(Value::Array(l)) if l.is_empty() => None,
        Some(Value::Array(l)) => Some(
            l.iter()
                .enumerate()
                .map(|(i, p)| {
                    parse_peer(namespace, p).map_err(|e| format!("{peers_field}[{i}]: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => return Err(format!("{peers_field} must be a list, not {other}")),
    };
    let ports = match rule.get("ports") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(l)) => l
            .iter()
            .enumerate()
            .map(|(i, p)| parse_port(p).map_err(|e| format!("ports[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(format!("ports must be a list, not {other}")),
    };
    Ok(Rule { peers, ports })
}

fn parse_peer(namespace: &str, peer: &Value) -> Result<Peer, String> {
    let get = |f: &str| peer.get(f).filter(|v| !v.is_null());
    let (pods, namespaces, block) = (get("podSelector"), get("namespaceSelector"), get("ipBlock"));
    match (pods, namespaces, block) {
        (None, None, None) => Err("a peer needs podSelector, namespaceSelector or ipBlock".into()),
        (None, None, Some(b)) => parse_block(b).map(Peer::Block),
        (_, _, Some(_)) => Err(
            "ipBlock cannot be combined with podSelector or namespaceSelector in one peer".into(),
        ),
        (pods, namespaces, None) => {
            let pods = match pods {
                Some(s) => Selector::parse(s).map_err(|e| format!("podSelector: {e}"))?,
                None => Selector::everything(),
            };
            let namespaces = match namespaces {
                Some(s) => Namespaces::Matching(
                    Selector::parse(s).map_err(|e| format!("namespaceSelector: {e}"))?,
                ),
                None => Namespaces::Own(namespace.to_owned()),
            };
            Ok(Peer::Pods { namespaces, pods })
        }
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    match s.parse::<IpNet>() {
        Ok(n) => Ok(n.trunc()),
        // A bare address is not a CIDR for the API either.
        Err(_) => Err(format!("invalid CIDR {s:?}")),
    }
}

fn parse_block(b: &Value) -> Result<IpBlock, String> {
    let cidr = b
        .get("cidr")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("ipBlock needs a cidr: {b}"))?;
    let cidr = parse_cidr(cidr).map_err(|e| format!("ipBlock.cidr: {e}"))?;
    let except = match b.get("except") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(l)) => l
            .iter()
            .map(|e| {
                let text = e
                    .as_str()
                    .ok_or_else(|| format!("ipBlock.except entries must be strings, not {e}"))?;
                let net = parse_cidr(text).map_err(|e| format!("ipBlock.except: {e}"))?;
                // Validation: every except lies strictly inside the cidr.
                if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                    return Err(format!(
                        "ipBlock.except {net} is not strictly inside cidr {cidr}"
                    ));
                }
                Ok(net)
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(format!("ipBlock.except must be a list, not {other}")),
    };
    Ok(IpBlock { cidr, except })
}

/// `IANA_SVC_NAME`: 1-15 lowercase letters, digits and inner single hyphens, with a letter.
fn valid_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn port_number(v: &Value, what: &str) -> Result<u16, String> {
    v.as_u64()
        .filter(|n| (1..=65535).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| format!("{what} {v} is not a port number (1-65535)"))
}

fn parse_port(p: &Value) -> Result<Port, String> {
    if !p.is_object() {
        return Err(format!("a port must be an object, not {p}"));
    }
    let protocol = match p.get("protocol") {
        None | Some(Value::Null) => Protocol::Tcp,
        Some(Value::String(s)) => Protocol::parse(s)
            .ok_or_else(|| format!("unsupported protocol {s:?} (TCP, UDP or SCTP)"))?,
        Some(other) => return Err(format!("protocol must be a string, not {other}")),
    };
    let end = p.get("endPort").filter(|v| !v.is_null());
    let port = match (p.get("port").filter(|v| !v.is_null()), end) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => return Err("endPort needs a numeric port".into()),
        (Some(Value::String(name)), end) => {
            if end.is_some() {
                return Err(format!("endPort cannot go with the named port {name:?}"));
            }
            // An int-or-string holding a string is a name, and names need a letter: "80"
            // is refused, as by validation.
            if !valid_port_name(name) {
                return Err(format!("{name:?} is not a valid port name"));
            }
            PortMatch::Named(name.clone())
        }
        (Some(n), end) => {
            let start = port_number(n, "port")?;
            let stop = match end {
                None => start,
                Some(e) => {
                    let stop = port_number(e, "endPort")?;
                    if stop < start {
                        return Err(format!("endPort {stop} is below port {start}"));
                    }
                    stop
                }
            };
            PortMatch::Range(start, stop)
        }
    };
    Ok(Port { protocol, port })
}

/// Whether `addr` lies in the block (in its cidr and in none of its excepts).
impl IpBlock {
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.cidr.contains(&addr) && !self.except.iter().any(|e| e.contains(&addr))
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

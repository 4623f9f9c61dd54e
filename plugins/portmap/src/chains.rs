//! The iptables chains portmap maintains (upstream `portmap_iptables.go`), as pure data.
//!
//! Every rule is spelled in the canonical form `iptables-save` prints (`-s 10.0.0.5/32`,
//! `-p tcp -m tcp --dport`, `-m multiport --dports`, `/0` sources omitted), so that rules can
//! be found again in a saved table and re-running ADD never duplicates them.

use ipnet::IpNet;
use netconf::gofmt;
use netops::Family;
use sha2::{Digest, Sha512};

use crate::config::{PortMapConf, PortMapping};

pub const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
pub const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
pub const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
/// iptables' limit on chain names, which upstream's hashed names fill exactly.
const MAX_CHAIN_LEN: usize = 28;
/// xt_comment's limit (256 bytes including the terminating NUL).
const MAX_COMMENT_LEN: usize = 255;
/// xt_multiport accepts at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;

/// A chain, the rules it holds, and the rules in other chains that jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<Vec<String>>,
    /// Chains holding the jumps; every entry rule goes into each of them.
    pub entry_chains: Vec<&'static str>,
    /// Match arguments of the jumps, without the trailing `-j <name>`.
    pub entry_rules: Vec<Vec<String>>,
    /// Insert jumps at the top instead of appending them.
    pub prepend_entry: bool,
}

impl Chain {
    /// An entry rule with its `-j <name>` jump.
    pub fn jump(&self, entry_rule: &[String]) -> Vec<String> {
        let mut r = entry_rule.to_vec();
        r.extend(["-j".to_owned(), self.name.clone()]);
        r
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// `CNI-<prefix>` + the hex SHA-512 of `network + container_id`, cut to 28 characters.
pub fn chain_name(prefix: &str, network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let mut name = format!("CNI-{prefix}");
    for b in digest.iter() {
        if name.len() >= MAX_CHAIN_LEN {
            break;
        }
        name.push_str(&format!("{b:02x}"));
    }
    name.truncate(MAX_CHAIN_LEN);
    name
}

pub fn dnat_chain_name(network: &str, container_id: &str) -> String {
    chain_name("DN-", network, container_id)
}

/// Per-container SNAT chain of portmap releases before 0.7; DEL still removes it.
pub fn legacy_snat_chain_name(network: &str, container_id: &str) -> String {
    chain_name("SN-", network, container_id)
}

pub fn setmark_chain(conf: &PortMapConf) -> Chain {
    Chain {
        name: SETMARK_CHAIN.into(),
        rules: vec![strings(&[
            "-m",
            "comment",
            "--comment",
            "CNI portfwd masquerade mark",
            "-j",
            "MARK",
            "--set-xmark",
            &conf.mark(),
        ])],
        entry_chains: vec![],
        entry_rules: vec![],
        prepend_entry: false,
    }
}

pub fn masq_chain(conf: &PortMapConf) -> Chain {
    Chain {
        name: MASQ_CHAIN.into(),
        rules: vec![strings(&[
            "-m",
            "mark",
            "--mark",
            &conf.mark(),
            "-j",
            "MASQUERADE",
        ])],
        entry_chains: vec!["POSTROUTING"],
        entry_rules: vec![strings(&[
            "-m",
            "comment",
            "--comment",
            "CNI portfwd requiring masquerade",
        ])],
        prepend_entry: true,
    }
}

pub fn toplevel_dnat_chain() -> Chain {
    Chain {
        name: DNAT_CHAIN.into(),
        rules: vec![],
        entry_chains: vec!["PREROUTING", "OUTPUT"],
        entry_rules: vec![strings(&["-m", "addrtype", "--dst-type", "LOCAL"])],
        prepend_entry: false,
    }
}

fn trim_comment(mut s: String) -> String {
    if s.len() > MAX_COMMENT_LEN {
        let mut end = MAX_COMMENT_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Protocols in sorted order, each with its host ports (in mapping order) in chunks that
/// multiport accepts.
fn ports_by_protocol(mappings: &[PortMapping]) -> Vec<(String, Vec<String>)> {
    let mut protos: Vec<&str> = mappings.iter().map(|m| m.protocol.as_str()).collect();
    protos.sort_unstable();
    protos.dedup();
    let mut out = Vec::new();
    for proto in protos {
        let ports: Vec<String> = mappings
            .iter()
            .filter(|m| m.protocol == proto)
            .map(|m| m.host_port.to_string())
            .collect();
        for chunk in ports.chunks(MULTIPORT_MAX) {
            out.push((proto.to_owned(), chunk.to_vec()));
        }
    }
    out
}

/// iptables prints a host address as `/32` (`/128`) and omits a `0.0.0.0/0` source.
fn host_cidr(ip: std::net::IpAddr) -> String {
    IpNet::from(ip).to_string()
}

/// `ip:port`, `[ip6]:port`.
fn ip_port(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The per-container chain: jumps from CNI-HOSTPORT-DNAT per protocol, then for each
/// mapping of this family the hairpin and localhost mark rules (with snat) and the DNAT.
pub fn container_dnat_chain(conf: &PortMapConf, container_id: &str, container: IpNet) -> Chain {
    let family = Family::of_net(&container);
    let comment = trim_comment(format!(
        "dnat name: {} id: {}",
        gofmt::quote(&conf.name),
        gofmt::quote(container_id)
    ));
    let conditions = conf.conditions(family);
    let entry_rules = ports_by_protocol(&conf.mappings)
        .into_iter()
        .map(|(proto, ports)| {
            let mut r = strings(&[
                "-p",
                &proto,
                "-m",
                "comment",
                "--comment",
                &comment,
                "-m",
                "multiport",
                "--dports",
            ]);
            r.push(ports.join(","));
            r.extend(conditions.iter().cloned());
            r
        })
        .collect();
    let set_mark = conf
        .external_set_mark_chain
        .clone()
        .unwrap_or_else(|| SETMARK_CHAIN.to_owned());
    let mut rules = Vec::new();
    for m in &conf.mappings {
        let dst = match m.host_ip {
            Some(ip) if Family::of(&ip) != family => continue,
            Some(ip) if !ip.is_unspecified() => vec!["-d".to_owned(), host_cidr(ip)],
            _ => vec![],
        };
        let matches = |src: Option<String>| -> Vec<String> {
            let mut r: Vec<String> = src.map(|s| vec!["-s".to_owned(), s]).unwrap_or_default();
            r.extend(dst.iter().cloned());
            r.extend(strings(&[
                "-p",
                &m.protocol,
                "-m",
                &m.protocol,
                "--dport",
                &m.host_port.to_string(),
            ]));
            r
        };
        if conf.snat {
            // The hairpin source is the container's whole subnet (iptables masks the
            // address); with masqAll it is "anywhere", which iptables prints as no `-s`.
            let hairpin_src = (!conf.masq_all).then(|| container.trunc().to_string());
            rules.push([matches(hairpin_src), strings(&["-j", &set_mark])].concat());
            if family == Family::V4 && !conf.masq_all {
                rules.push(
                    [
                        matches(Some("127.0.0.1/32".into())),
                        strings(&["-j", &set_mark]),
                    ]
                    .concat(),
                );
            }
        }
        let to = ip_port(container.addr(), m.container_port);
        rules.push(
            [
                matches(None),
                strings(&["-j", "DNAT", "--to-destination", &to]),
            ]
            .concat(),
        );
    }
    Chain {
        name: dnat_chain_name(&conf.name, container_id),
        rules,
        entry_chains: vec![DNAT_CHAIN],
        entry_rules,
        prepend_entry: false,
    }
}

#[cfg(test)]
#[path = "chains_tests.rs"]
pub(crate) mod tests;

//! The nftables backend (upstream `portmap_nftables.go`): table `cni_hostport` per family,
//! one rule per mapping tagged with the container ID as comment. Every ADD or DEL is a single
//! `nft -f -` transaction, planned against one JSON listing of the table.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde_json::Value;

use crate::config::PortMapConf;
use crate::error::PortmapError;

pub const TABLE: &str = "cni_hostport";
const HOSTPORTS: &str = "hostports";
const MASQ: &str = "masquerading";

/// A rule already in the table, as far as planning needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

fn nft_family(v6: bool) -> &'static str {
    if v6 {
        "ip6"
    } else {
        "ip"
    }
}

/// Parses `nft -j list table <family> cni_hostport`.
pub fn parse_listing(json: &str) -> Result<Vec<ExistingRule>, PortmapError> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| PortmapError::Nft(format!("cannot parse nft JSON listing: {e}")))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| PortmapError::Nft("nft JSON listing has no \"nftables\" array".into()))?;
    Ok(items
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter_map(|r| {
            Some(ExistingRule {
                chain: r.get("chain")?.as_str()?.to_owned(),
                handle: r.get("handle")?.as_u64()?,
                comment: r.get("comment").and_then(Value::as_str).map(str::to_owned),
            })
        })
        .collect())
}

fn dnat_target(container: IpNet, port: u16) -> String {
    match container.addr() {
        std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

/// The container's rules for one family: `(chain, rule text)`; rule texts carry no comment.
pub fn container_rules(conf: &PortMapConf, container: IpNet) -> Vec<(&'static str, String)> {
    let v6 = container.addr().is_ipv6();
    let fam = nft_family(v6);
    let mut rules = Vec::new();
    for m in &conf.mappings {
        let daddr = match m.host_ip {
            Some(ip) if ip.is_ipv6() != v6 => continue,
            Some(ip) if !ip.is_unspecified() => format!("{fam} daddr {ip} "),
            _ => String::new(),
        };
        let to = dnat_target(container, m.container_port);
        rules.push((
            HOSTPORTS,
            format!("{daddr}{} dport {} dnat to {to}", m.protocol, m.host_port),
        ));
    }
    if conf.snat {
        let ip = container.addr();
        let any = if v6 { "::/0" } else { "0.0.0.0/0" };
        let src = if conf.masq_all {
            any.to_owned()
        } else {
            ip.to_string()
        };
        rules.push((
            MASQ,
            format!("{fam} saddr {src} {fam} daddr {ip} masquerade"),
        ));
        if !v6 && !conf.masq_all {
            rules.push((MASQ, format!("ip saddr 127.0.0.1 ip daddr {ip} masquerade")));
        }
    }
    rules
}

/// The ADD transaction for one family: the table skeleton (base chains re-created so their
/// jump rules stay unique), this container's stale rules removed, its rules added.
pub fn plan_add(
    conf: &PortMapConf,
    container_id: &str,
    container: IpNet,
    existing: &[ExistingRule],
) -> String {
    let v6 = container.addr().is_ipv6();
    let t = format!("{} {TABLE}", nft_family(v6));
    let conds = conf.conditions(v6).join(" ");
    let conds = if conds.is_empty() {
        String::new()
    } else {
        format!("{conds} ")
    };
    let mut s = String::new();
    s.push_str(&format!(
        "add table {t} {{ comment \"CNI portmap plugin\" ; }}\n"
    ));
    for chain in [HOSTPORTS, "hostip_hostports", "hostports_all"] {
        s.push_str(&format!("add chain {t} {chain}\n"));
    }
    s.push_str(&format!("flush chain {t} hostports_all\n"));
    s.push_str(&format!(
        "add rule {t} hostports_all jump hostip_hostports\n"
    ));
    s.push_str(&format!("add rule {t} hostports_all jump hostports\n"));
    // `dstnat` is only accepted on the prerouting hook by nft 1.0.6; -100 is its value.
    for (chain, hook, prio) in [
        ("prerouting", "prerouting", "dstnat"),
        ("output", "output", "-100"),
    ] {
        s.push_str(&format!(
            "add chain {t} {chain} {{ type nat hook {hook} priority {prio} ; }}\n"
        ));
        s.push_str(&format!("flush chain {t} {chain}\n"));
        s.push_str(&format!(
            "add rule {t} {chain} {conds}fib daddr type local jump hostports_all\n"
        ));
    }
    if conf.snat {
        s.push_str(&format!(
            "add chain {t} {MASQ} {{ type nat hook postrouting priority srcnat ; }}\n"
        ));
    }
    push_deletes(&mut s, &t, container_id, existing);
    for (chain, rule) in container_rules(conf, container) {
        s.push_str(&format!(
            "add rule {t} {chain} {rule} comment \"{container_id}\"\n"
        ));
    }
    s
}

fn push_deletes(s: &mut String, t: &str, container_id: &str, existing: &[ExistingRule]) {
    for r in existing
        .iter()
        .filter(|r| r.comment.as_deref() == Some(container_id))
    {
        s.push_str(&format!(
            "delete rule {t} {} handle {}\n",
            r.chain, r.handle
        ));
    }
}

/// The DEL transaction for one family (empty when nothing is tagged with the container).
pub fn plan_del(v6: bool, container_id: &str, existing: &[ExistingRule]) -> String {
    let mut s = String::new();
    push_deletes(
        &mut s,
        &format!("{} {TABLE}", nft_family(v6)),
        container_id,
        existing,
    );
    s
}

/// CHECK against a listing: the container's tagged rules per chain match what ADD creates.
pub fn check_listing(
    conf: &PortMapConf,
    container_id: &str,
    container: IpNet,
    existing: &[ExistingRule],
) -> Result<(), PortmapError> {
    let fam = nft_family(container.addr().is_ipv6());
    let expected = container_rules(conf, container);
    for chain in [HOSTPORTS, MASQ] {
        let want = expected.iter().filter(|(c, _)| *c == chain).count();
        let have = existing
            .iter()
            .filter(|r| r.chain == chain && r.comment.as_deref() == Some(container_id))
            .count();
        if want != have {
            return Err(PortmapError::Nft(format!(
                "expected {want} rules for container {container_id} in chain {chain} of table {fam} {TABLE}, found {have}"
            )));
        }
    }
    Ok(())
}

fn nft(args: &[&str], input: Option<&str>) -> Result<String, PortmapError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PortmapError::Nft(format!("failed to run nft: {e}")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // nft reads the whole script before it prints anything, so writing first is safe.
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| PortmapError::Nft(format!("failed to feed nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| PortmapError::Nft(format!("failed to run nft: {e}")))?;
    if !out.status.success() {
        return Err(PortmapError::Nft(format!(
            "nft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether nft works here (the backend auto-selection probe).
pub fn usable() -> bool {
    nft(&["list", "tables"], None).is_ok()
}

/// The table's rules; a missing table has none.
fn list(v6: bool) -> Result<Vec<ExistingRule>, PortmapError> {
    let fam = nft_family(v6);
    let tables = nft(&["-j", "list", "tables", fam], None)?;
    let present = serde_json::from_str::<Value>(&tables)
        .ok()
        .and_then(|v| v.get("nftables").and_then(Value::as_array).cloned())
        .is_some_and(|items| {
            items
                .iter()
                .any(|i| i.pointer("/table/name").and_then(Value::as_str) == Some(TABLE))
        });
    if !present {
        return Ok(Vec::new());
    }
    parse_listing(&nft(&["-j", "list", "table", fam, TABLE], None)?)
}

fn apply(script: &str) -> Result<(), PortmapError> {
    if script.is_empty() {
        return Ok(());
    }
    nft(&["-f", "-"], Some(script)).map(drop)
}

pub fn add(conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    for container in [conf.container_v4, conf.container_v6].into_iter().flatten() {
        let existing = list(container.addr().is_ipv6())?;
        apply(&plan_add(conf, container_id, container, &existing))?;
    }
    Ok(())
}

pub fn del(container_id: &str) -> Result<(), PortmapError> {
    let mut script = String::new();
    for v6 in [false, true] {
        script.push_str(&plan_del(v6, container_id, &list(v6)?));
    }
    apply(&script)
}

pub fn check(conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    for container in [conf.container_v4, conf.container_v6].into_iter().flatten() {
        check_listing(
            conf,
            container_id,
            container,
            &list(container.addr().is_ipv6())?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "nft_backend_tests.rs"]
mod tests;

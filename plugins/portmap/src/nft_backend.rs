//! The nftables backend (upstream `portmap_nftables.go`): table `cni_hostport` per family,
//! one rule per mapping tagged with the container ID as comment. Every ADD or DEL is a single
//! `nft -f -` transaction, planned against one JSON listing of the table.

use ipnet::IpNet;
use netops::firewall::nft::{self, NftError, Rule, TableFamily};
use netops::Family;

use crate::config::PortMapConf;
use crate::error::PortmapError;

pub const TABLE: &str = "cni_hostport";
const HOSTPORTS: &str = "hostports";
const MASQ: &str = "masquerading";

fn dnat_target(container: IpNet, port: u16) -> String {
    match container.addr() {
        std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

/// The container's rules for one family: `(chain, rule text)`; rule texts carry no comment.
pub fn container_rules(conf: &PortMapConf, container: IpNet) -> Vec<(&'static str, String)> {
    let family = Family::of_net(&container);
    let fam = TableFamily::from(family);
    let mut rules = Vec::new();
    for m in &conf.mappings {
        let daddr = match m.host_ip {
            Some(ip) if Family::of(&ip) != family => continue,
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
        let any = match family {
            Family::V4 => "0.0.0.0/0",
            Family::V6 => "::/0",
        };
        let src = if conf.masq_all {
            any.to_owned()
        } else {
            ip.to_string()
        };
        rules.push((
            MASQ,
            format!("{fam} saddr {src} {fam} daddr {ip} masquerade"),
        ));
        if family == Family::V4 && !conf.masq_all {
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
    existing: &[Rule],
) -> String {
    let family = Family::of_net(&container);
    let t = format!("{} {TABLE}", TableFamily::from(family));
    let conds = conf.conditions(family).join(" ");
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

fn push_deletes(s: &mut String, t: &str, container_id: &str, existing: &[Rule]) {
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
pub fn plan_del(family: Family, container_id: &str, existing: &[Rule]) -> String {
    let mut s = String::new();
    push_deletes(
        &mut s,
        &format!("{} {TABLE}", TableFamily::from(family)),
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
    existing: &[Rule],
) -> Result<(), PortmapError> {
    let fam = TableFamily::from(Family::of_net(&container));
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

fn nft_err(e: NftError) -> PortmapError {
    PortmapError::Nft(e.to_string())
}

/// The table's rules; a missing table has none.
fn list(family: Family) -> Result<Vec<Rule>, PortmapError> {
    Ok(nft::list_table(family.into(), TABLE)
        .map_err(nft_err)?
        .map(|t| t.rules)
        .unwrap_or_default())
}

fn apply(script: &str) -> Result<(), PortmapError> {
    nft::apply(script).map_err(nft_err)
}

pub fn add(conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    for container in [conf.container_v4, conf.container_v6].into_iter().flatten() {
        let existing = list(Family::of_net(&container))?;
        apply(&plan_add(conf, container_id, container, &existing))?;
    }
    Ok(())
}

pub fn del(container_id: &str) -> Result<(), PortmapError> {
    let mut script = String::new();
    for family in Family::ALL {
        script.push_str(&plan_del(family, container_id, &list(family)?));
    }
    apply(&script)
}

pub fn check(conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    for container in [conf.container_v4, conf.container_v6].into_iter().flatten() {
        check_listing(
            conf,
            container_id,
            container,
            &list(Family::of_net(&container))?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "nft_backend_tests.rs"]
mod tests;

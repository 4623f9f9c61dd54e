//! The iptables backend: each ADD or DEL is one `iptables-restore --noflush` per family,
//! planned against one `iptables-save -t nat` snapshot (upstream runs one `iptables`
//! process per rule check and change, taking the xtables lock each time).

use ipnet::IpNet;
use netops::firewall::iptables::{self, Batch, IptablesError, SavedTable};
use netops::Family;

use crate::chains::{self, Chain};
use crate::config::PortMapConf;
use crate::error::PortmapError;

const TABLE: &str = "nat";

/// Creates `chain` if needed and adds its rules and jumps unless present (upstream
/// `chain.setup`).
fn setup(batch: &mut Batch, chain: &Chain) -> Result<(), IptablesError> {
    batch.ensure_chain(&chain.name)?;
    for rule in &chain.rules {
        batch.append_unique(&chain.name, rule)?;
    }
    for entry_chain in &chain.entry_chains {
        for rule in &chain.entry_rules {
            let jump = chain.jump(rule);
            if chain.prepend_entry {
                batch.insert_unique(entry_chain, &jump)?;
            } else {
                batch.append_unique(entry_chain, &jump)?;
            }
        }
    }
    Ok(())
}

/// Removes every rule that jumps to `name` (wherever it is and however it was spelled),
/// then the chain itself (upstream `chain.teardown`).
fn teardown(batch: &mut Batch, name: &str) -> Result<(), IptablesError> {
    let jumps: Vec<(String, Vec<String>)> = batch
        .state()
        .rules
        .iter()
        .filter(|r| {
            r.args
                .windows(2)
                .any(|w| matches!(w[0].as_str(), "-j" | "-g") && w[1] == name)
        })
        .map(|r| (r.chain.clone(), r.args.clone()))
        .collect();
    for (chain, args) in jumps {
        batch.delete_rule(&chain, &args)?;
    }
    batch.delete_chain(name)?;
    Ok(())
}

/// Adds to `batch` everything ADD needs for one container address.
pub fn plan_add(
    batch: &mut Batch,
    conf: &PortMapConf,
    container_id: &str,
    container: IpNet,
) -> Result<(), IptablesError> {
    // The mark and masquerade chains first: the container chain's rules jump to them.
    if conf.snat && conf.external_set_mark_chain.is_none() {
        setup(batch, &chains::setmark_chain(conf))?;
        setup(batch, &chains::masq_chain(conf))?;
    }
    setup(batch, &chains::toplevel_dnat_chain())?;
    let chain = chains::container_dnat_chain(conf, container_id, container);
    // Start from a clean chain in case an earlier ADD left different rules behind.
    teardown(batch, &chain.name)?;
    setup(batch, &chain)
}

/// Adds to `batch` the removal of the container's chains (current and legacy SNAT).
/// Top-level chains stay: other containers use them.
pub fn plan_del(batch: &mut Batch, network: &str, container_id: &str) -> Result<(), IptablesError> {
    teardown(batch, &chains::dnat_chain_name(network, container_id))?;
    teardown(
        batch,
        &chains::legacy_snat_chain_name(network, container_id),
    )
}

fn has_entry(
    state: &SavedTable,
    chain: &Chain,
    entry_chain: &str,
    rule: &[String],
    conditions: bool,
) -> bool {
    if state.has_rule(entry_chain, &chain.jump(rule)) {
        return true;
    }
    // User conditions may print differently from how they were written (iptables moves
    // `-s` to the front, adds `/32`): then accept a jump with the same protocol, comment
    // and port list.
    let (proto, comment, ports) = (&rule[1], &rule[5], &rule[9]);
    conditions
        && state.rules_in(entry_chain).any(|args| {
            args.ends_with(&["-j".to_owned(), chain.name.clone()])
                && args.windows(2).any(|w| w[0] == "-p" && &w[1] == proto)
                && args.contains(comment)
                && args.contains(ports)
        })
}

/// Upstream `chain.check` for the container chain: present, with every rule and jump.
pub fn check_state(
    state: &SavedTable,
    conf: &PortMapConf,
    container_id: &str,
    container: IpNet,
) -> Result<(), PortmapError> {
    let chain = chains::container_dnat_chain(conf, container_id, container);
    if !state.has_chain(&chain.name) {
        return Err(PortmapError::CheckChainMissing(chain.name));
    }
    let missing = |rule: &[String], in_chain: &str| PortmapError::CheckRuleMissing {
        rule: rule.join(" "),
        chain: in_chain.to_owned(),
    };
    for rule in &chain.rules {
        if !state.has_rule(&chain.name, rule) {
            return Err(missing(rule, &chain.name));
        }
    }
    let conditions = !conf.conditions(Family::of_net(&container)).is_empty();
    for entry_chain in &chain.entry_chains {
        for rule in &chain.entry_rules {
            if !has_entry(state, &chain, entry_chain, rule, conditions) {
                return Err(missing(&chain.jump(rule), entry_chain));
            }
        }
    }
    Ok(())
}

/// How often ADD plans and restores before giving up; see [`retry_lost_races`].
const RESTORE_ATTEMPTS: u32 = 5;

/// Runs `attempt` until it succeeds, fails other than by a rejected restore, or has failed
/// [`RESTORE_ATTEMPTS`] times. Concurrent ADDs race to create the shared chains
/// (CNI-HOSTPORT-DNAT, -SETMARK, -MASQ): plans made from snapshots taken before either
/// restore both declare them, and the later restore fails with "Chain already exists". A
/// restore is one transaction, so the failed one changed nothing, and a plan on a fresh
/// snapshot sees the winner's chains and jumps (upstream's portmap has the same race between
/// its existence check and `iptables -N`, and fails the ADD).
fn retry_lost_races(
    mut attempt: impl FnMut() -> Result<(), PortmapError>,
) -> Result<(), PortmapError> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(PortmapError::Setup(IptablesError::Failed { .. })) if tries < RESTORE_ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(2 * u64::from(tries)));
                tries += 1;
            }
            other => return other,
        }
    }
}

/// ADD: one restore per container family.
pub fn add(conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    for container in [conf.container_v4, conf.container_v6].into_iter().flatten() {
        retry_lost_races(|| {
            let mut batch = Batch::load(Family::of_net(&container), TABLE)
                .map_err(PortmapError::OpenIptables)?;
            plan_add(&mut batch, conf, container_id, container).map_err(PortmapError::Setup)?;
            batch.apply().map_err(PortmapError::Setup)
        })?;
    }
    Ok(())
}

/// DEL: both families that work here; one of them may be missing (no IPv6 in the kernel).
/// Loading a family's table doubles as upstream's "is it usable" probe. A family where the
/// kernel says neither of the container's chains exists is skipped without a save: every
/// rule DEL removes is in, or jumps to, one of them, and the answer proves it usable.
pub fn del(conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    let dnat = chains::dnat_chain_name(&conf.name, container_id);
    let snat = chains::legacy_snat_chain_name(&conf.name, container_id);
    let mut loaded = Vec::new();
    let mut failed = Vec::new();
    for (family, label) in [(Family::V4, "ipv4"), (Family::V6, "ipv6")] {
        if iptables::chain_absent(family, TABLE, &dnat)
            && iptables::chain_absent(family, TABLE, &snat)
        {
            continue;
        }
        match Batch::load(family, TABLE) {
            Ok(batch) => loaded.push((batch, label)),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if let [v4, v6] = &failed[..] {
        return Err(PortmapError::NoIptables {
            v4: v4.clone(),
            v6: v6.clone(),
        });
    }
    for (mut batch, label) in loaded {
        let teardown = |source| PortmapError::Teardown {
            family: label,
            source,
        };
        plan_del(&mut batch, &conf.name, container_id).map_err(teardown)?;
        batch.apply().map_err(teardown)?;
    }
    Ok(())
}

/// CHECK: every container family's chain is complete.
pub fn check(conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    for container in [conf.container_v4, conf.container_v6].into_iter().flatten() {
        let state = iptables::save(Family::of_net(&container), TABLE)
            .map_err(PortmapError::OpenIptables)?;
        check_state(&state, conf, container_id, container)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "iptables_backend_tests.rs"]
mod tests;

//! Executes a set of object installs and removals as one netlink batch.

use std::collections::HashSet;

use netops::netlink::{Client, Handle, NetlinkError};

use super::objects::Object;

/// One object to install or remove, with the index of the peer it belongs to (for messages
/// and for rolling back a peer whose installation failed half-way).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    pub peer: usize,
    pub object: Object,
}

/// Extra advice appended to a failed install (host-gw explains the same-segment rule).
pub(crate) type Hint = fn(&Object, &NetlinkError) -> Option<&'static str>;

#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Objects installed and still in place after rollbacks.
    pub installed: usize,
    /// Objects that existed and were deleted.
    pub removed: usize,
    /// Peers at least one of whose installs failed; their other installs were rolled back.
    pub failed_peers: HashSet<usize>,
    pub errors: Vec<String>,
}

/// Removals go first (routes before the entries they rely on), then installs (neighbours, FDB
/// entries, routes), all in one batch. A removal of something already gone is not an error.
/// When any install of a peer fails, the peer's other installs are undone in a second batch, so
/// no route is left pointing at a VTEP the kernel cannot reach without ARP.
pub(crate) fn apply<C: Client>(
    nl: &mut Handle<C>,
    labels: &[String],
    mut removals: Vec<Job>,
    mut installs: Vec<Job>,
    hint: Option<Hint>,
) -> Outcome {
    removals.sort_by_key(|j| std::cmp::Reverse(j.object.stage()));
    installs.sort_by_key(|j| j.object.stage());
    let requests: Vec<_> = removals
        .iter()
        .map(|j| j.object.remove())
        .chain(installs.iter().map(|j| j.object.install()))
        .collect();
    let mut results = nl.batch(&requests).into_iter();
    let mut out = Outcome::default();

    for (job, result) in removals.iter().zip(results.by_ref()) {
        match result {
            Ok(()) => out.removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => out.errors.push(format!("{}: {e}", labels[job.peer])),
        }
    }
    let mut installed = Vec::new();
    for (job, result) in installs.iter().zip(results) {
        match result {
            Ok(()) => installed.push(*job),
            Err(e) => {
                let advice = hint
                    .and_then(|h| h(&job.object, &e))
                    .map(|a| format!(": {a}"))
                    .unwrap_or_default();
                out.errors
                    .push(format!("{}: {e}{advice}", labels[job.peer]));
                out.failed_peers.insert(job.peer);
            }
        }
    }
    let (undo, kept): (Vec<Job>, Vec<Job>) = installed
        .into_iter()
        .partition(|j| out.failed_peers.contains(&j.peer));
    out.installed = kept.len();
    if !undo.is_empty() {
        let rollback = apply(nl, labels, undo, Vec::new(), None);
        out.errors.extend(rollback.errors);
    }
    out
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

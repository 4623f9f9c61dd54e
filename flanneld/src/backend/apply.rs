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

/// How many requests are built and sent at a time. A start-up reconcile with 5,000 peers has
/// 15,000 objects; building every message up front held megabytes that the daemon's peak
/// memory then kept, while a netlink window is far smaller than this anyway.
const CHUNK: usize = 1024;

/// Removals go first (routes before the entries they rely on), then installs (neighbours, FDB
/// entries, routes), in netlink batches. A removal of something already gone is not an error.
/// When any install of a peer fails, the peer's other installs are undone in a second pass, so
/// no route is left pointing at a VTEP the kernel cannot reach without ARP. `label` names a
/// peer index in messages.
pub(crate) fn apply<C: Client>(
    nl: &mut Handle<C>,
    label: &dyn Fn(usize) -> String,
    mut removals: Vec<Job>,
    mut installs: Vec<Job>,
    hint: Option<Hint>,
) -> Outcome {
    removals.sort_by_key(|j| std::cmp::Reverse(j.object.stage()));
    installs.sort_by_key(|j| j.object.stage());
    let mut out = Outcome::default();
    let mut installed = Vec::new();
    // One stream, removals first, so a small change still goes out as one datagram.
    let mut stream = removals
        .iter()
        .map(|j| (false, *j))
        .chain(installs.iter().map(|j| (true, *j)))
        .peekable();
    while stream.peek().is_some() {
        let chunk: Vec<(bool, Job)> = stream.by_ref().take(CHUNK).collect();
        let requests: Vec<_> = chunk
            .iter()
            .map(|(install, j)| match install {
                true => j.object.install(),
                false => j.object.remove(),
            })
            .collect();
        for (&(install, job), result) in chunk.iter().zip(nl.batch(&requests)) {
            match (install, result) {
                (false, Ok(())) => out.removed += 1,
                (false, Err(e)) if e.is_not_found() => {}
                (false, Err(e)) => out.errors.push(format!("{}: {e}", label(job.peer))),
                (true, Ok(())) => installed.push(job),
                (true, Err(e)) => {
                    let advice = hint
                        .and_then(|h| h(&job.object, &e))
                        .map(|a| format!(": {a}"))
                        .unwrap_or_default();
                    out.errors.push(format!("{}: {e}{advice}", label(job.peer)));
                    out.failed_peers.insert(job.peer);
                }
            }
        }
    }
    if out.failed_peers.is_empty() {
        out.installed = installed.len();
        return out;
    }
    let (undo, kept): (Vec<Job>, Vec<Job>) = installed
        .into_iter()
        .partition(|j| out.failed_peers.contains(&j.peer));
    out.installed = kept.len();
    if !undo.is_empty() {
        let rollback = apply(nl, label, undo, Vec::new(), None);
        out.errors.extend(rollback.errors);
    }
    out
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;

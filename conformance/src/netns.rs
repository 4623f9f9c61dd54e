//! Named network namespaces that clean up after themselves.
//!
//! Every namespace is called `fr<tag>-<pid>-<n>`. The pid in the name lets a
//! later run recognise namespaces leaked by a test process that was killed
//! before it could clean up (SIGKILL, Ctrl-C), and remove them. Within a
//! process, cleanup happens in `Drop` (which also runs while a failing test
//! unwinds) and, for anything still registered when the process exits, in an
//! `atexit` hook.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use crate::cmd::{self, CmdError};

const PREFIX: &str = "fr";
const NETNS_DIR: &str = "/run/netns";
const MAX_TAG_LEN: usize = 8;

static COUNTER: AtomicU32 = AtomicU32::new(0);
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static INIT: Once = Once::new();

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns tag {0:?} must be 1-{MAX_TAG_LEN} lowercase ASCII letters or digits")]
    BadTag(String),
    #[error(transparent)]
    Cmd(#[from] CmdError),
}

/// A network namespace created with `ip netns add`, deleted on drop together
/// with every process still running in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates `fr<tag>-<pid>-<n>`. The tag only makes names readable in
    /// `ip netns list` while debugging; uniqueness comes from pid and counter.
    pub fn new(tag: &str) -> Result<Netns, NetnsError> {
        if tag.is_empty()
            || tag.len() > MAX_TAG_LEN
            || !tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(NetnsError::BadTag(tag.to_owned()));
        }
        INIT.call_once(|| {
            sweep_stale();
            // SAFETY: registering a plain extern "C" function with no captured state.
            unsafe { libc::atexit(cleanup_at_exit) };
        });
        let name = format!(
            "{PREFIX}{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // Registered before creation so a process exiting in between still
        // tries to delete it; deleting a missing namespace is harmless.
        live().insert(name.clone());
        if let Err(e) = cmd::run(Command::new("ip").args(["netns", "add", &name])) {
            live().remove(&name);
            return Err(e.into());
        }
        let path = Path::new(NETNS_DIR).join(&name);
        Ok(Netns { name, path })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the path a runtime passes as `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command that runs `program` inside this namespace (`ip netns exec`).
    /// `ip` execs the program in place, so the child's pid is the program's.
    /// Panics if `program` is not one `scripts/setup.sh` installs (see [`crate::programs`]).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        crate::programs::require(program.as_ref());
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `argv` inside the namespace and returns its output whatever the
    /// exit status. Panics if `ip` itself cannot be started.
    pub fn exec(&self, argv: &[&str]) -> Output {
        let (program, args) = argv.split_first().expect("exec needs a program");
        cmd::output(self.command(program).args(args)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `argv` inside the namespace, requires success, returns stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String, CmdError> {
        let (program, args) = argv.split_first().expect("exec_ok needs a program");
        cmd::run_stdout(self.command(program).args(args))
    }

    /// Runs a shell snippet inside the namespace. Meant for a test's own
    /// convenience commands (pipelines, loops), never for the code under test.
    pub fn sh(&self, script: &str) -> Output {
        for program in crate::programs::shell_programs(script) {
            crate::programs::require(OsStr::new(&program));
        }
        self.exec(&["sh", "-c", script])
    }

    /// Brings `lo` up, as a container runtime's loopback plugin would.
    pub fn set_loopback_up(&self) -> Result<(), CmdError> {
        self.exec_ok(&["ip", "link", "set", "lo", "up"]).map(drop)
    }

    /// Pids of processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = destroy(&self.name) {
            // Cannot fail a test from Drop (it may already be unwinding);
            // the root-namespace snapshot in scripts/test.sh catches leaks.
            eprintln!("conformance: cleaning up netns {}: {e}", self.name);
        }
        live().remove(&self.name);
    }
}

fn live() -> MutexGuard<'static, BTreeSet<String>> {
    // A test that panicked while holding the lock must not stop every other
    // namespace from being cleaned up.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn pids_in(name: &str) -> Vec<i32> {
    match cmd::run_stdout(Command::new("ip").args(["netns", "pids", name])) {
        Ok(out) => out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Kills everything left in the namespace, then deletes it.
fn destroy(name: &str) -> Result<(), CmdError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = pids_in(name);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !Path::new(NETNS_DIR).join(name).exists() {
        return Ok(());
    }
    cmd::run(Command::new("ip").args(["netns", "delete", name])).map(drop)
}

extern "C" fn cleanup_at_exit() {
    // try_lock: a thread frozen mid-update at exit must not hang the process.
    let names = match LIVE.try_lock() {
        Ok(mut set) => std::mem::take(&mut *set),
        Err(std::sync::TryLockError::Poisoned(p)) => std::mem::take(&mut *p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for name in names {
        if let Err(e) = destroy(&name) {
            eprintln!("conformance: cleaning up netns {name} at exit: {e}");
        }
    }
}

/// The pid embedded in a name this module generated, if it is one.
fn owner_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let counter = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    let valid_tag = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid_tag || counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes namespaces left behind by test processes that no longer exist.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let me = std::process::id() as i32;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        if pid != me && !process_alive(pid) {
            eprintln!("conformance: removing netns {name} leaked by dead process {pid}");
            if let Err(e) = destroy(&name) {
                eprintln!("conformance: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_accepts_only_generated_names() {
        assert_eq!(owner_pid("frhost-1234-0"), Some(1234));
        assert_eq!(owner_pid("frpod2-77-15"), Some(77));
        assert_eq!(owner_pid("frhost-1234"), None);
        assert_eq!(owner_pid("fr-1234-0"), None);
        assert_eq!(owner_pid("xxhost-1234-0"), None);
        assert_eq!(owner_pid("frHost-1234-0"), None);
        assert_eq!(owner_pid("frhost-12a4-0"), None);
        assert_eq!(owner_pid("frhost-1234-x"), None);
        assert_eq!(owner_pid("cni-1234-0"), None);
    }

    #[test]
    fn bad_tags_are_rejected_before_touching_the_kernel() {
        for tag in ["", "Host", "with-dash", "muchtoolongtag"] {
            assert!(
                matches!(Netns::new(tag), Err(NetnsError::BadTag(_))),
                "{tag:?}"
            );
        }
    }

    #[test]
    fn a_dead_pid_is_not_alive_and_our_own_is() {
        assert!(process_alive(std::process::id() as i32));
        // pid_max is at most 2^22 on Linux, so this pid cannot exist.
        assert!(!process_alive(i32::MAX - 1));
    }
}

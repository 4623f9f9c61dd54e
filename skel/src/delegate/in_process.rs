//! A delegate that is this very executable, run in this process: the environment it would
//! have been started with, the same stdin bytes, its stdout captured and its exit code turned
//! into a result or an error by the same rules as a child's (`exec::plugin_error`).
//!
//! It runs on the calling thread, so in the caller's network namespace, as a child would
//! start there. Its stderr is ours, as a child's is copied to ours. A panic in it is caught
//! and reported as the exit of a panicking child (status 101) would be, so the caller's own
//! cleanup still runs.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};

use netconf::{CniEnv, CniError, Command};

use super::exec::{cni_vars, plugin_error};
use crate::multicall::run_applet;
use crate::process_env;

/// Exit code of a Rust process that panicked.
const PANIC_EXIT: i32 = 101;

/// In-process delegations running at once in this process. A real chain nests two deep
/// (flannel → bridge → host-local); a config whose delegate is itself would otherwise recurse
/// until the stack overflows and the process aborts, skipping every caller's cleanup.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
const MAX_ACTIVE: usize = 16;

/// Counts one running in-process delegation for as long as it lives.
struct Active;

impl Active {
    fn enter(name: &str) -> Result<Active, CniError> {
        if ACTIVE.fetch_add(1, Ordering::SeqCst) >= MAX_ACTIVE {
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
            return Err(CniError::internal(format!(
                "delegating to {name:?}: more than {MAX_ACTIVE} plugins run inside one another in \
                 this process; does a delegate's config name the delegating plugin itself?"
            )));
        }
        Ok(Active)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs applet `name` (the delegate's file name, as a child's `argv[0]` would be).
pub(super) fn run(
    name: &str,
    command: Command,
    stdin: &[u8],
    env: &CniEnv,
) -> Result<Vec<u8>, CniError> {
    let _active = Active::enter(name)?;
    let vars = cni_vars(command, env);
    let get = |key: &str| match vars.iter().find(|(k, _)| *k == key) {
        Some((_, value)) => value.as_ref().map(lossy),
        None => process_env(key),
    };
    let mut stdout = Vec::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        run_applet(name, get, stdin, &mut stdout, io::stderr())
    }));
    let (code, stderr) = match outcome {
        Ok(0) => return Ok(stdout),
        Ok(code) => (code, String::new()),
        // The panic hook has printed the message to stderr already, as a child's would.
        Err(payload) => (PANIC_EXIT, format!("panicked: {}", panic_text(&*payload))),
    };
    Err(plugin_error(
        ExitStatus::from_raw(code << 8),
        &stdout,
        stderr.as_bytes(),
    ))
}

fn lossy(v: &OsString) -> String {
    v.to_string_lossy().into_owned()
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>")
}

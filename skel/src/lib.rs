//! The CNI plugin process edge, behaving like Go's `pkg/skel` (dispatch) and `pkg/invoke`
//! (delegation): read `CNI_*` and stdin, gate on the config version, call the [`Plugin`], print
//! the result or the error JSON on stdout and return the exit code. Logs go to stderr only.

pub mod delegate;
mod dispatch;
pub mod multicall;
mod netns;

use std::io;

use netconf::{CniEnv, CniError, CniResult, NetConf};

pub use dispatch::{run_with, MAX_STDIN_BYTES};

/// One invocation: the validated environment, the raw stdin bytes (for delegation) and the
/// parsed config.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: CniEnv,
    pub stdin: Vec<u8>,
    pub conf: NetConf,
}

/// A CNI plugin. Errors are returned as [`CniError`]s and printed by the skel verbatim.
pub trait Plugin {
    /// Printed to stderr when `CNI_COMMAND` is empty; an empty string prints the missing-variable
    /// error instead, as Go's skel does.
    fn about(&self) -> String;
    /// The skel prints the result in `req.conf.cni_version`.
    fn add(&self, req: &Request) -> Result<CniResult, CniError>;
    fn del(&self, req: &Request) -> Result<(), CniError>;
    fn check(&self, req: &Request) -> Result<(), CniError>;
    fn status(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn gc(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

/// The whole process edge; `main` is `std::process::exit(skel::run(&MyPlugin))`.
///
/// stdout and stderr are not locked for the whole call: plugins log from scoped threads and
/// run delegates in-process on them, and a lock held here would make those writes wait for
/// the call to end, which waits for them.
pub fn run<P: Plugin + ?Sized>(p: &P) -> i32 {
    run_with(
        process_env,
        io::stdin().lock(),
        io::stdout(),
        io::stderr(),
        p,
    )
}

/// A variable of this process's environment, as the skel reads it (lossy UTF-8, like Go's
/// `os.Getenv` on Linux, which hands bytes through).
pub(crate) fn process_env(key: &str) -> Option<String> {
    std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
}

//! The CNI plugin process edge, behaving like Go's `pkg/skel` (dispatch) and `pkg/invoke`
//! (delegation): read `CNI_*` and stdin, gate on the config version, call the [`Plugin`], print
//! the result or the error JSON on stdout and return the exit code. Logs go to stderr only.

pub mod delegate;
mod dispatch;
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
pub fn run<P: Plugin>(p: &P) -> i32 {
    let get = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    run_with(
        get,
        io::stdin().lock(),
        io::stdout().lock(),
        io::stderr().lock(),
        p,
    )
}

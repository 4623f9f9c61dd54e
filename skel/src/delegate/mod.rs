//! Executing another plugin (typically IPAM) the way libcni's `invoke` package does: same
//! environment with `CNI_COMMAND` overridden, identical stdin bytes, stdout captured, stderr
//! passed through, the child's error JSON returned verbatim.
//!
//! When the plugin found on `CNI_PATH` is the multicall executable this process runs
//! ([`crate::multicall`]), it runs in this process instead ([`in_process`]), with what an
//! exec would have given it and the same outcome, minus a process start.

mod exec;
mod in_process;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use netconf::{gofmt, CniEnv, CniError, CniResult, CniVersion, Command};

pub use exec::exec_plugin;

/// Finds `<dir>/<plugin_type>` in the first directory of `cni_path` where it is a regular,
/// executable file.
pub fn find(plugin_type: &str, cni_path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if plugin_type.is_empty() {
        return Err(CniError::internal("no plugin name provided"));
    }
    if plugin_type.contains('/') {
        return Err(CniError::internal(format!(
            "invalid plugin name: {plugin_type}"
        )));
    }
    if cni_path.is_empty() {
        return Err(CniError::internal("no paths provided"));
    }
    cni_path
        .iter()
        .map(|dir| dir.join(plugin_type))
        .find(|p| is_executable_file(p))
        .ok_or_else(|| {
            let dirs: Vec<String> = cni_path
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            CniError::internal(format!(
                "failed to find plugin {} in path {}",
                gofmt::quote(plugin_type),
                gofmt::list(&dirs)
            ))
        })
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run(
    plugin_type: &str,
    command: Command,
    stdin: &[u8],
    env: &CniEnv,
) -> Result<Vec<u8>, CniError> {
    let path = find(plugin_type, &env.path)?;
    if crate::multicall::is_this_executable(&path) {
        return in_process::run(plugin_type, command, stdin, env);
    }
    exec_plugin(&path, command, stdin, env)
}

/// Delegated ADD; the result is parsed in any version, `version` (the config's) standing in
/// when the plugin printed none.
pub fn add(
    plugin_type: &str,
    stdin: &[u8],
    env: &CniEnv,
    version: CniVersion,
) -> Result<CniResult, CniError> {
    let out = run(plugin_type, Command::Add, stdin, env)?;
    CniResult::parse(&out, version)
}

pub fn del(plugin_type: &str, stdin: &[u8], env: &CniEnv) -> Result<(), CniError> {
    run(plugin_type, Command::Del, stdin, env).map(drop)
}

pub fn check(plugin_type: &str, stdin: &[u8], env: &CniEnv) -> Result<(), CniError> {
    run(plugin_type, Command::Check, stdin, env).map(drop)
}

pub fn status(plugin_type: &str, stdin: &[u8], env: &CniEnv) -> Result<(), CniError> {
    run(plugin_type, Command::Status, stdin, env).map(drop)
}

pub fn gc(plugin_type: &str, stdin: &[u8], env: &CniEnv) -> Result<(), CniError> {
    run(plugin_type, Command::Gc, stdin, env).map(drop)
}

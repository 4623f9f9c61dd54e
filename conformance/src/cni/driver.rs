//! Calls plugins through libcni by running `cnidriver` in a host namespace.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::Value;
use tempfile::TempDir;

use super::failure::CniFailure;
use super::plugin_dir::PluginDir;
use crate::cmd;
use crate::netns::Netns;

/// Overrides the driver binary (default: built into `target/cnidriver`).
pub const DRIVER_ENV: &str = "FLANNEL_RS_CNIDRIVER";

/// cnidriver's exit status for misuse of its own command line.
const EXIT_USAGE: i32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Check,
    Del,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "add",
            Verb::Check => "check",
            Verb::Del => "del",
        }
    }
}

/// One attachment of a container to a network, as a runtime describes it.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    /// The namespace the runtime (and thus the plugin) runs in.
    pub host: &'a Netns,
    /// `CNI_NETNS`; may be empty or name a deleted namespace (DEL tests).
    pub netns: PathBuf,
    pub ifname: String,
    pub container_id: String,
    /// Capability arguments (`portMappings`, `ipRanges`, ...).
    pub cap_args: Option<Value>,
    /// `CNI_ARGS` pairs.
    pub cni_args: Vec<(String, String)>,
}

impl<'a> Attachment<'a> {
    pub fn new(host: &'a Netns, pod: &Netns, ifname: &str, container_id: &str) -> Attachment<'a> {
        Attachment {
            host,
            netns: pod.path().to_owned(),
            ifname: ifname.to_owned(),
            container_id: container_id.to_owned(),
            cap_args: None,
            cni_args: Vec::new(),
        }
    }

    /// [`Attachment::new`] with libcni capability arguments (portMappings and the like).
    pub fn with_caps(
        host: &'a Netns,
        pod: &Netns,
        ifname: &str,
        container_id: &str,
        cap_args: Option<&Value>,
    ) -> Attachment<'a> {
        Attachment {
            cap_args: cap_args.cloned(),
            ..Attachment::new(host, pod, ifname, container_id)
        }
    }
}

/// A successful call: stdout (the result for ADD) and the plugins' stderr,
/// which libcni forwards on success.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub stdout: String,
    pub stderr: String,
}

/// Drives plugins from one [`PluginDir`] with a private libcni result cache,
/// so tests never touch `/var/lib/cni` or each other's state.
///
/// Malfunctions of the bed itself (driver cannot be built or started, bad
/// driver arguments) panic: they are never the outcome under test, and
/// returning them as a [`CniFailure`] could let a test expecting a failure
/// pass for the wrong reason.
#[derive(Debug)]
pub struct Driver {
    bin: PathBuf,
    plugins: PluginDir,
    scratch: TempDir,
    seq: AtomicU32,
}

impl Driver {
    pub fn new(plugins: PluginDir) -> Driver {
        let scratch = tempfile::Builder::new()
            .prefix("fr-cni-")
            .tempdir()
            .expect("creating driver scratch dir");
        Driver {
            bin: driver_binary().to_owned(),
            plugins,
            scratch,
            seq: AtomicU32::new(0),
        }
    }

    pub fn plugins(&self) -> &PluginDir {
        &self.plugins
    }

    /// libcni's cache dir; results live under `results/<net>-<id>-<if>`.
    pub fn cache_dir(&self) -> PathBuf {
        self.scratch.path().join("cache")
    }

    /// ADD; returns the final result JSON as libcni hands it to the runtime.
    pub fn add(
        &self,
        conflist: &str,
        host: &Netns,
        pod: &Netns,
        ifname: &str,
        container_id: &str,
        cap_args: Option<&Value>,
    ) -> Result<Value, CniFailure> {
        let att = Attachment::with_caps(host, pod, ifname, container_id, cap_args);
        self.add_with(conflist, &att)
    }

    pub fn check(
        &self,
        conflist: &str,
        host: &Netns,
        pod: &Netns,
        ifname: &str,
        container_id: &str,
        cap_args: Option<&Value>,
    ) -> Result<(), CniFailure> {
        let att = Attachment::with_caps(host, pod, ifname, container_id, cap_args);
        self.run(Verb::Check, conflist, &att).map(drop)
    }

    pub fn del(
        &self,
        conflist: &str,
        host: &Netns,
        pod: &Netns,
        ifname: &str,
        container_id: &str,
        cap_args: Option<&Value>,
    ) -> Result<(), CniFailure> {
        let att = Attachment::with_caps(host, pod, ifname, container_id, cap_args);
        self.run(Verb::Del, conflist, &att).map(drop)
    }

    /// ADD for a fully described attachment; parses the result.
    pub fn add_with(&self, conflist: &str, att: &Attachment<'_>) -> Result<Value, CniFailure> {
        let inv = self.run(Verb::Add, conflist, att)?;
        // libcni re-encodes every result it returns, so non-JSON here means
        // the driver itself is broken.
        Ok(serde_json::from_str(&inv.stdout).unwrap_or_else(|e| {
            panic!("cnidriver printed a non-JSON result ({e}):\n{}", inv.stdout)
        }))
    }

    /// Any verb for a fully described attachment.
    pub fn run(
        &self,
        verb: Verb,
        conflist: &str,
        att: &Attachment<'_>,
    ) -> Result<Invocation, CniFailure> {
        let file = self.scratch.path().join(format!(
            "conflist-{}.json",
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&file, conflist)
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        let mut c = att.host.command(&self.bin);
        c.arg(verb.as_str())
            .arg("--conflist")
            .arg(&file)
            .arg("--netns")
            .arg(&att.netns)
            .args(["--ifname", &att.ifname, "--containerid", &att.container_id])
            .arg("--cachedir")
            .arg(self.cache_dir())
            .arg("--path")
            .arg(self.plugins.path());
        if let Some(cap) = &att.cap_args {
            c.arg("--capargs").arg(cap.to_string());
        }
        if !att.cni_args.is_empty() {
            c.arg("--cniargs").arg(format_cni_args(&att.cni_args));
        }
        let out = cmd::output(&mut c).unwrap_or_else(|e| panic!("{e}"));
        let result = outcome(verb.as_str(), &out);
        if let Err(f) = &result {
            check_not_usage(&out, &c, f);
        }
        result
    }

    /// The plugin's answer to VERSION, as libcni decodes it.
    pub fn version(&self, host: &Netns, plugin_type: &str) -> Result<Value, CniFailure> {
        let mut c = host.command(&self.bin);
        c.args(["version", "--plugin", plugin_type])
            .arg("--path")
            .arg(self.plugins.path());
        let out = cmd::output(&mut c).unwrap_or_else(|e| panic!("{e}"));
        let inv = outcome("version", &out).inspect_err(|f| check_not_usage(&out, &c, f))?;
        Ok(serde_json::from_str(&inv.stdout).unwrap_or_else(|e| {
            panic!(
                "cnidriver printed non-JSON version info ({e}):\n{}",
                inv.stdout
            )
        }))
    }
}

fn outcome(verb: &str, out: &Output) -> Result<Invocation, CniFailure> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(Invocation { stdout, stderr })
    } else {
        Err(CniFailure::parse(verb, &stderr))
    }
}

fn check_not_usage(out: &Output, c: &std::process::Command, f: &CniFailure) {
    if out.status.code() == Some(EXIT_USAGE) {
        panic!(
            "cnidriver rejected its arguments: `{}`\n{}",
            cmd::describe(c),
            f.stderr
        );
    }
}

fn format_cni_args(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The cnidriver binary: `$FLANNEL_RS_CNIDRIVER`, else `target/cnidriver`
/// brought up to date by `conformance/cnidriver/build.sh` once per process
/// (a no-op when sources are unchanged; it locks against parallel builds).
pub fn driver_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os(DRIVER_ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let script = crate::workspace_root().join("conformance/cnidriver/build.sh");
        if let Err(e) = cmd::run(std::process::Command::new("bash").arg(&script)) {
            panic!(
                "building the libcni driver failed (see scripts/setup.sh for prerequisites): {e}"
            );
        }
        crate::target_dir().join("cnidriver")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_are_joined_like_cni_args_env() {
        let pairs = vec![
            ("IgnoreUnknown".to_owned(), "1".to_owned()),
            ("IP".to_owned(), "10.1.0.5".to_owned()),
        ];
        assert_eq!(format_cni_args(&pairs), "IgnoreUnknown=1;IP=10.1.0.5");
    }
}

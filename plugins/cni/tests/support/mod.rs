//! Runs a host-local binary the way a runtime does (CNI_* environment, config on stdin) and
//! snapshots its store directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Our host-local: the multicall executable started under the name `host-local`, through a
/// symlink in cargo's scratch directory for integration tests.
pub fn ours() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| named_link("host-local").to_str().unwrap().to_owned())
}

/// A symlink called `name` to the multicall executable, (re)made atomically so that parallel
/// test processes never see it missing.
pub fn named_link(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("multicall");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_flannel-rs-cni"), &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    link
}

pub const REFERENCE: &str = "/usr/lib/cni/host-local";
/// host-local never enters the namespace; skel only needs the variable set.
pub const NETNS: &str = "/run/netns/host-local-test-unused";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit: i32,
    pub stdout: String,
}

impl Outcome {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }
}

#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub cni_args: &'a str,
}

impl<'a> Call<'a> {
    pub fn new(command: &'a str, container_id: &'a str) -> Call<'a> {
        Call {
            command,
            container_id,
            ifname: "eth0",
            cni_args: "",
        }
    }

    pub fn ifname(mut self, ifname: &'a str) -> Self {
        self.ifname = ifname;
        self
    }
}

/// Executes `binary` with `call` and `stdin`, in an otherwise empty environment.
pub fn run(binary: &str, call: &Call<'_>, stdin: &str) -> Outcome {
    let mut child = Command::new(binary)
        .env_clear()
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", NETNS)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", call.cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {binary}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
    }
}

/// Every file of a network's store directory, name → content; `None` if the directory is absent.
pub fn snapshot(data_dir: &Path, network: &str) -> Option<BTreeMap<String, String>> {
    let dir = data_dir.join(network);
    let entries = std::fs::read_dir(&dir).ok()?;
    Some(
        entries
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect(),
    )
}

/// One binary with its own data directory; `DIR` in configs is replaced by that directory.
pub struct Side {
    pub binary: &'static str,
    pub dir: tempfile::TempDir,
}

impl Side {
    pub fn new(binary: &'static str) -> Side {
        Side {
            binary,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn run(&self, call: &Call<'_>, config: &str) -> Outcome {
        // Without its own dataDir a config would make the plugins write to /var/lib/cni.
        assert!(
            config.contains(r#""dataDir":"DIR"#),
            "config without test dataDir: {config}"
        );
        run(
            self.binary,
            call,
            &config.replace("DIR", self.dir.path().to_str().unwrap()),
        )
    }
}

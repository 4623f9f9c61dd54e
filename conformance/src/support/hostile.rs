//! A node for hostile-input tests: a host and a pod namespace, the plugins' files in one
//! temp dir, direct execution of our plugin binaries (no libcni in front, which would
//! validate ids and names before the plugin sees them), and a snapshot of everything a
//! plugin could touch, to prove a refused invocation left no trace.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cni::our_bin_dir;
use crate::Netns;
use serde_json::{json, Value};

pub const NET: &str = "hostile";
pub const SUBNET_ENV: &str =
    "FLANNEL_NETWORK=10.246.0.0/16\nFLANNEL_SUBNET=10.246.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

pub struct Bed {
    pub host: Netns,
    pub pod: Netns,
    /// Holds `work/` (the plugins' files and their working directory) and nothing else, so
    /// a write that escaped `work/` through `..` shows up as a new entry here.
    pub root: tempfile::TempDir,
}

/// What a plugin printed and how it exited.
#[derive(Debug)]
pub struct Reply {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// A CNI error with `code` whose message contains `msg`; exit status 1.
    pub fn assert_error(&self, code: u64, msg: &str) -> Value {
        assert_eq!(self.status, Some(1), "must exit 1: {self:?}");
        let v = self.json();
        assert_eq!(v["code"].as_u64(), Some(code), "wrong code: {self:?}");
        let text = v["msg"].as_str().expect("msg is a string");
        assert!(text.contains(msg), "msg {text:?} lacks {msg:?}: {self:?}");
        v
    }
}

/// Everything outside the plugin process that an ADD could change.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub files: BTreeSet<String>,
    pub host_links: String,
    pub pod_links: String,
    host_rules: String,
    host_nft: String,
}

impl Bed {
    pub fn new(tag: &str) -> Bed {
        let host = Netns::new(tag).expect("host netns");
        let pod = Netns::new(tag).expect("pod netns");
        let root = tempfile::Builder::new()
            .prefix("fr-hostile-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir(root.path().join("work")).unwrap();
        std::fs::write(root.path().join("work/subnet.env"), SUBNET_ENV).unwrap();
        std::fs::write(root.path().join("work/regular-file"), b"not a namespace").unwrap();
        Bed { host, pod, root }
    }

    /// The directories (and host-local's lock file) a node that has run pods already has:
    /// creating those is not what a refused ADD must avoid, writing inside them is.
    pub fn with_dirs(self) -> Bed {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(self.flannel_dir())
            .unwrap();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(self.ipam_dir().join(NET))
            .unwrap();
        std::fs::write(self.ipam_dir().join(NET).join("lock"), b"").unwrap();
        self
    }

    pub fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.work().join("ipam")
    }

    pub fn flannel_dir(&self) -> PathBuf {
        self.work().join("flannel")
    }

    pub fn regular_file(&self) -> PathBuf {
        self.work().join("regular-file")
    }

    /// A config for `plugin` whose every path points into `work/`.
    pub fn conf(&self, plugin: &str) -> Value {
        let ipam =
            json!({"type": "host-local", "subnet": "10.246.1.0/24", "dataDir": self.ipam_dir()});
        let mut c = match plugin {
            "bridge" => {
                json!({"type": "bridge", "bridge": "hbr0", "isGateway": true, "ipMasq": true, "ipam": ipam})
            }
            "host-local" => json!({"type": "bridge", "ipam": ipam}),
            "flannel" => json!({
                "type": "flannel",
                "subnetFile": self.work().join("subnet.env"),
                "dataDir": self.flannel_dir(),
                "delegate": {"bridge": "hbr0"},
                "ipam": {"dataDir": self.ipam_dir()}
            }),
            "portmap" => json!({
                "type": "portmap",
                "backend": "nftables",
                "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                "prevResult": {
                    "cniVersion": "1.0.0",
                    "interfaces": [{"name": "eth0", "sandbox": self.pod.path()}],
                    "ips": [{"address": "10.246.1.5/24", "interface": 0}]
                }
            }),
            other => panic!("no config for {other}"),
        };
        c["cniVersion"] = json!("1.0.0");
        c["name"] = json!(NET);
        c
    }

    /// The standard environment for `command`, with `overrides` replacing or adding variables.
    pub fn env(&self, command: &str, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let pod = self.pod.path().display().to_string();
        let mut env: Vec<(String, String)> = vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), "hostile-ctr".into()),
            ("CNI_NETNS".into(), pod),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_PATH".into(), our_bin_dir().display().to_string()),
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ];
        for (k, v) in overrides {
            env.retain(|(n, _)| n != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// Runs our `plugin` binary in the host namespace, from `work/`, with exactly `env`.
    pub fn invoke(&self, plugin: &str, env: &[(String, String)], stdin: &[u8]) -> Reply {
        self.invoke_cmd(self.host.command(our_bin_dir().join(plugin)), env, stdin)
    }

    /// `invoke` for a command already built (e.g. wrapped to run in another mount namespace).
    pub fn invoke_cmd(&self, mut cmd: Command, env: &[(String, String)], stdin: &[u8]) -> Reply {
        let plugin = cmd.get_program().to_string_lossy().into_owned();
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.work())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {plugin}: {e}"));
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        // The plugin may refuse before reading everything: a broken pipe is its answer.
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait for plugin");
        writer.join().unwrap();
        Reply {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `invoke` with the config of `plugin` and only `overrides` changed in the env.
    pub fn add(&self, plugin: &str, overrides: &[(&str, &str)]) -> Reply {
        let conf = self.conf(plugin).to_string();
        self.invoke(plugin, &self.env("ADD", overrides), conf.as_bytes())
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut files = BTreeSet::new();
        walk(self.root.path(), self.root.path(), &mut files);
        let links = |ns: &Netns| {
            let out = ns.exec(&["ip", "-o", "link", "show"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let rules = self.host.exec(&["iptables-save"]);
        let nft = self.host.exec(&["nft", "list", "ruleset"]);
        Snapshot {
            files,
            host_links: links(&self.host),
            pod_links: links(&self.pod),
            host_rules: strip_comments(&String::from_utf8_lossy(&rules.stdout)),
            host_nft: String::from_utf8_lossy(&nft.stdout).into_owned(),
        }
    }

    /// Runs `f` and asserts that it changed nothing a plugin could touch.
    pub fn untouched<R>(&self, what: &str, f: impl FnOnce() -> R) -> R {
        let before = self.snapshot();
        let r = f();
        let after = self.snapshot();
        assert_eq!(before, after, "{what} left traces");
        r
    }
}

fn strip_comments(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        out.insert(p.strip_prefix(root).unwrap().display().to_string());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, &p, out);
        }
    }
}

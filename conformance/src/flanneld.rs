//! One harness for our `flanneld` on a host of the bed, in etcd or kube mode: the tests, the
//! daemon's own binary tests and the benchmarks all start, wait for, restart and stop the
//! daemon through it.
//!
//! Every daemon gets a private temp dir for its subnet.env, log, kube files and WireGuard key,
//! because all hosts of the bed share one filesystem: upstream's defaults (`/run/flannel`)
//! would make every node read and write the same files, and leak into the machine.
//!
//! ```no_run
//! # use conformance::{flanneld::Flanneld, Etcd, EtcdOptions, Segment, Underlay};
//! # use std::time::Duration;
//! # let underlay = Underlay::new().unwrap();
//! # let etcd = Etcd::start(EtcdOptions::loopback()).unwrap();
//! let host = underlay.add_host(Segment::A, "h1").unwrap();
//! let mut node = Flanneld::etcd(host, &etcd.endpoint())
//!     .unwrap()
//!     .args(&["--ip-masq"])
//!     .lease_ttl(60)
//!     .start()
//!     .unwrap();
//! let env = node.wait_ready(Duration::from_secs(60)).unwrap();
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde_json::Value;
use tempfile::TempDir;

use crate::cmd::{self, CmdError};
use crate::cni::{kube_flannel_conflist, our_bin_dir};
use crate::kubeapi::KubeApi;
use crate::netns::Netns;
use crate::reach::in_netns;
use crate::topology::Host;

/// flanneld's test hook for short lease lifetimes (see flanneld's `options` module).
pub const LEASE_TTL_ENV: &str = "FLANNEL_RS_TEST_LEASE_TTL";
/// flanneld's default etcd prefix.
pub const ETCD_PREFIX: &str = "/coreos.com/network";
/// Where flanneld keeps its lease records under [`ETCD_PREFIX`].
pub const LEASES_PREFIX: &str = "/coreos.com/network/subnets/";
/// Where [`Flanneld::health`] makes the daemon serve `/healthz`, `/metrics` and `/status`
/// (on 127.0.0.1 inside its host).
pub const HEALTHZ_PORT: u16 = 18471;
/// How long SIGTERM may take before the daemon counts as hung.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The log line flanneld writes each time it (re)writes subnet.env.
const READY_LINE: &str = "Wrote subnet file";

/// The value of `key` in a subnet.env text, read by hand: the bed checks what the daemon
/// wrote without the daemon's own parser.
fn subnet_env_value<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

/// `target/release/flanneld` (or `$FLANNEL_RS_BIN_DIR/flanneld`).
pub fn flanneld_bin() -> PathBuf {
    our_bin_dir().join("flanneld")
}

#[derive(Debug, thiserror::Error)]
pub enum FlanneldError {
    #[error("{path} is missing: build it with `cargo build --release -p flanneld`")]
    MissingBinary { path: PathBuf },
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("flanneld on {host} exited ({status}) before writing its subnet file; log:\n{log}")]
    Exited {
        host: String,
        status: ExitStatus,
        log: String,
    },
    #[error("flanneld on {host} wrote no subnet file within {waited:?}; log:\n{log}")]
    NotReady {
        host: String,
        waited: Duration,
        log: String,
    },
    #[error("flanneld on {host} is not running")]
    NotRunning { host: String },
    #[error("flanneld on {host} ignored SIGTERM for {STOP_TIMEOUT:?} (killed); log:\n{log}")]
    IgnoredSigterm { host: String, log: String },
    #[error("{path}: no usable FLANNEL_SUBNET in {text:?}")]
    SubnetEnv { path: PathBuf, text: String },
}

/// What a daemon runs inside: a bare namespace, a host of the underlay, or a borrowed one.
pub trait OnNetns {
    fn netns(&self) -> &Netns;
}

impl OnNetns for Netns {
    fn netns(&self) -> &Netns {
        self
    }
}

impl OnNetns for Host {
    fn netns(&self) -> &Netns {
        Host::netns(self)
    }
}

impl<T: OnNetns> OnNetns for &T {
    fn netns(&self) -> &Netns {
        (*self).netns()
    }
}

/// One flanneld process (and its restarts) on `host`. Built in etcd or kube mode, adjusted
/// with the builder methods, then [`start`](Flanneld::start)ed. Drop kills it, and prints its
/// log when a test is panicking.
pub struct Flanneld<H: OnNetns = Host> {
    pub host: H,
    /// The node name in messages (`NODE_NAME` in kube mode, the namespace's otherwise).
    pub name: String,
    dir: TempDir,
    /// The mode's essentials, in order (the subnet file is added at spawn).
    essentials: Vec<String>,
    /// The caller's flags, after the essentials.
    args: Vec<String>,
    env: Vec<(String, OsString)>,
    subnet_file: PathBuf,
    /// The subnet file given as `FLANNELD_SUBNET_FILE` instead of a flag.
    subnet_file_in_env: bool,
    /// A program (and its arguments) flanneld is started through, e.g. `setpriv`.
    wrapper: Vec<String>,
    bin: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl<H: OnNetns> Flanneld<H> {
    fn new(host: H, name: String, essentials: Vec<String>) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("fr-flanneld-").tempdir()?;
        let subnet_file = dir.path().join("subnet.env");
        let wgkey = dir.path().join("wgkey");
        Ok(Flanneld {
            host,
            name,
            dir,
            essentials,
            args: Vec::new(),
            // Each node its own WireGuard key, as on separate machines: the default path is
            // shared by every host of the bed (and is the machine's /run/flannel).
            env: vec![("WIREGUARD_KEY_FILE".to_owned(), wgkey.into())],
            subnet_file,
            subnet_file_in_env: false,
            wrapper: Vec::new(),
            bin: flanneld_bin(),
            child: None,
            starts: 0,
        })
    }

    /// etcd mode against `endpoints`, on the host's `eth0`.
    pub fn etcd(host: H, endpoints: &str) -> io::Result<Self> {
        let name = host.netns().name().to_owned();
        let essentials = vec![
            format!("--etcd-endpoints={endpoints}"),
            "--iface=eth0".to_owned(),
        ];
        Self::new(host, name, essentials)
    }

    /// No flags of the harness's own, only the caller's [`args`](Flanneld::args), as a systemd
    /// unit line starts it; the subnet file (still the private one) comes as
    /// `FLANNELD_SUBNET_FILE`, as from the unit's `EnvironmentFile`.
    pub fn bare(host: H) -> io::Result<Self> {
        let name = host.netns().name().to_owned();
        let mut f = Self::new(host, name, Vec::new())?;
        f.subnet_file_in_env = true;
        Ok(f)
    }

    /// Kube mode as node `node_name` of `api` (`--kube-subnet-mgr`, a kubeconfig for `api`,
    /// `net_conf` as the net-conf.json file, `NODE_NAME`), on `eth0`, masquerading on as
    /// kube-flannel's manifest runs it.
    pub fn kube(host: H, api: &KubeApi, node_name: &str, net_conf: &Value) -> io::Result<Self> {
        let mut f = Self::new(host, node_name.to_owned(), Vec::new())?;
        api.write_kubeconfig(&f.path("kubeconfig"))?;
        std::fs::write(f.path("net-conf.json"), net_conf.to_string())?;
        f.essentials = vec![
            "--kube-subnet-mgr".to_owned(),
            format!("--kubeconfig-file={}", f.path("kubeconfig").display()),
            format!("--net-config-path={}", f.path("net-conf.json").display()),
            "--iface=eth0".to_owned(),
            "--ip-masq".to_owned(),
        ];
        f.env.push(("NODE_NAME".to_owned(), node_name.into()));
        Ok(f)
    }

    /// Flags after the mode's essentials.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for every start.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Leases that live `secs` seconds ([`LEASE_TTL_ENV`]).
    pub fn lease_ttl(self, secs: u64) -> Self {
        self.env(LEASE_TTL_ENV, secs.to_string())
    }

    /// subnet.env somewhere else than the private directory.
    pub fn subnet_file_at(mut self, path: PathBuf) -> Self {
        self.subnet_file = path;
        self
    }

    /// Started through `wrapper` (a program and its arguments, e.g. `setpriv ...`).
    pub fn through(mut self, wrapper: &[&str]) -> Self {
        self.wrapper = wrapper.iter().map(|w| (*w).to_owned()).collect();
        self
    }

    /// Another flanneld executable than [`flanneld_bin`], e.g. cargo's
    /// `CARGO_BIN_EXE_flanneld` in the daemon's own tests.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = path.into();
        self
    }

    /// `/healthz`, `/metrics` and `/status` on 127.0.0.1:[`HEALTHZ_PORT`] inside the host.
    pub fn health(self) -> Self {
        self.args(&Self::health_args())
    }

    /// The flags [`health`](Flanneld::health) adds.
    pub fn health_args() -> Vec<String> {
        vec![
            "--healthz-ip=127.0.0.1".to_owned(),
            format!("--healthz-port={HEALTHZ_PORT}"),
        ]
    }

    /// Starts the process (see [`spawn`](Flanneld::spawn)).
    pub fn start(mut self) -> Result<Self, FlanneldError> {
        self.spawn()?;
        Ok(self)
    }

    /// Starts another run with the same flags and files; when it started.
    pub fn spawn(&mut self) -> Result<Instant, FlanneldError> {
        let bin = &self.bin;
        if !bin.is_file() {
            return Err(FlanneldError::MissingBinary { path: bin.clone() });
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let ns = self.host.netns();
        let mut c = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = ns.command(program);
                c.args(args).arg(bin);
                c
            }
            None => ns.command(bin),
        };
        c.args(self.argv());
        if self.subnet_file_in_env {
            c.env("FLANNELD_SUBNET_FILE", &self.subnet_file);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let started = Instant::now();
        let child = c.spawn().map_err(|source| CmdError::Spawn {
            cmd: cmd::describe(&c),
            source,
        })?;
        self.child = Some(child);
        self.starts += 1;
        Ok(started)
    }

    /// flanneld's arguments (after the program name): the mode's essentials, the subnet file
    /// and the caller's flags.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = self.essentials.clone();
        if !self.subnet_file_in_env {
            argv.push(format!("--subnet-file={}", self.subnet_file.display()));
        }
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// The flags of the next start after the essentials, replaced.
    pub fn set_args<S: AsRef<str>>(&mut self, args: &[S]) {
        self.args = args.iter().map(|a| a.as_ref().to_owned()).collect();
    }

    /// The node's private directory (subnet.env, log, kube files, key files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `file` in the private directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn subnet_file(&self) -> &Path {
        &self.subnet_file
    }

    fn log_path(&self) -> PathBuf {
        self.path("flanneld.log")
    }

    /// Everything every run logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How often `needle` is in the log.
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// subnet.env once this run wrote it; `None` while it has not; an error if it exited.
    pub fn poll_ready(&mut self) -> Result<Option<String>, FlanneldError> {
        if self.count(READY_LINE) >= self.starts {
            return Ok(Some(std::fs::read_to_string(&self.subnet_file)?));
        }
        let exited = self.child.as_mut().map(Child::try_wait).transpose()?;
        if let Some(Some(status)) = exited {
            self.child = None;
            return Err(FlanneldError::Exited {
                host: self.name.clone(),
                status,
                log: self.log(),
            });
        }
        Ok(None)
    }

    /// Waits until this run wrote subnet.env (with `--network-policy`, only after the first
    /// policy sync); returns its content.
    pub fn wait_ready(&mut self, within: Duration) -> Result<String, FlanneldError> {
        let started = Instant::now();
        loop {
            if let Some(env) = self.poll_ready()? {
                return Ok(env);
            }
            if started.elapsed() > within {
                return Err(FlanneldError::NotReady {
                    host: self.name.clone(),
                    waited: started.elapsed(),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => {
                    self.child = None;
                    return Some(status);
                }
                None => return None,
                _ => {}
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait; a daemon that ignores it is killed and reported.
    pub fn stop(&mut self) -> Result<ExitStatus, FlanneldError> {
        let Some(mut child) = self.child.take() else {
            return Err(FlanneldError::NotRunning {
                host: self.name.clone(),
            });
        };
        match cmd::terminate(&mut child, STOP_TIMEOUT)? {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(FlanneldError::IgnoredSigterm {
                    host: self.name.clone(),
                    log: self.log(),
                })
            }
        }
    }

    /// SIGKILL, as a crash or an OOM kill would end it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it (if running) and starts it again with the same flags and files (subnet.env is
    /// kept, as on tmpfs).
    pub fn restart(&mut self) -> Result<(), FlanneldError> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn().map(drop)
    }

    /// The lease network from subnet.env (FLANNEL_SUBNET holds the gateway address).
    pub fn subnet(&self) -> Result<Ipv4Net, FlanneldError> {
        let text = std::fs::read_to_string(&self.subnet_file)?;
        subnet_env_value(&text, "FLANNEL_SUBNET")
            .and_then(|v| v.parse::<Ipv4Net>().ok())
            .map(|n| n.trunc())
            .ok_or_else(|| FlanneldError::SubnetEnv {
                path: self.subnet_file.clone(),
                text,
            })
    }

    /// FLANNEL_MTU from subnet.env; `None` before the file is written or without the key.
    pub fn mtu(&self) -> Option<u32> {
        let text = std::fs::read_to_string(&self.subnet_file).ok()?;
        subnet_env_value(&text, "FLANNEL_MTU")?.parse().ok()
    }

    /// The kube-flannel conflist, upstream's except for where files go: every host of the bed
    /// shares one filesystem, so flannel's `subnetFile` and `dataDir` and its `ipam` point
    /// each node at its own directory.
    pub fn conflist(&self) -> String {
        kube_flannel_conflist("0.3.1", &self.subnet_file, self.dir.path()).to_string()
    }

    /// `ip -4 route show <dst>` on the host, trimmed.
    pub fn route_to(&self, dst: impl std::fmt::Display) -> String {
        let out = self
            .host
            .netns()
            .exec(&["ip", "-4", "route", "show", &dst.to_string()]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `GET path` from the [`health`](Flanneld::health) endpoint, over a connection made
    /// inside the host's namespace; the whole response.
    pub fn http_get(&self, path: &str) -> io::Result<String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: flanneld\r\nConnection: close\r\n\r\n");
        in_netns(self.host.netns().path(), move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", HEALTHZ_PORT))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(request.as_bytes())?;
            let mut response = String::new();
            s.read_to_string(&mut response)?;
            Ok(response)
        })?
    }

    /// `/status` (the JSON body), when the daemon answers.
    pub fn status(&self) -> Option<Value> {
        let response = self.http_get("/status").ok()?;
        let body = response.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    }

    /// The value of one sample of `/metrics` (`name{labels}` exactly as printed).
    pub fn metric(&self, sample: &str) -> Option<f64> {
        self.http_get("/metrics").ok()?.lines().find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }
}

impl<H: OnNetns> Drop for Flanneld<H> {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- flanneld log ({}) ---\n{}", self.name, self.log());
        }
    }
}

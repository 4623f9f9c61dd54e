//! A throw-away etcd server (Debian's `/usr/bin/etcd`, v3.4) for daemon tests.
//!
//! Placed either inside a namespace on one of its addresses (the normal
//! multi-host setup: standard ports, nothing else can collide there) or on
//! the root namespace's loopback with free ports. The data directory lives in
//! a temp dir, so `restart` keeps the data and `Drop` removes it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

use crate::cmd::{self, CmdError};
use crate::netns::Netns;

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Loopback ports are picked by binding port 0 and releasing it; another
/// process can grab one in between, so a bind failure earns a retry.
const LOOPBACK_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd scratch files: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error("etcd exited during startup ({status}); log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("etcd at {endpoint} not healthy after {waited:?}: {last_error}\nlog:\n{log}")]
    NotHealthy {
        endpoint: String,
        waited: Duration,
        last_error: String,
        log: String,
    },
    #[error("etcd is not running")]
    NotRunning,
    #[error("unexpected etcdctl output for {what}: {detail}")]
    Decode { what: String, detail: String },
}

/// Certificates for a TLS client endpoint (peer traffic stays plain: there
/// is only ever one member).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Require clients to present a certificate signed by `ca`.
    pub client_cert_auth: bool,
    /// Certificate and key `etcdctl` presents (needed with `client_cert_auth`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct EtcdOptions {
    netns: Option<String>,
    ip: IpAddr,
    enable_v2: bool,
    tls: Option<EtcdTls>,
}

impl EtcdOptions {
    /// On 127.0.0.1 of the root namespace, on free ports.
    pub fn loopback() -> EtcdOptions {
        EtcdOptions {
            netns: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            enable_v2: false,
            tls: None,
        }
    }

    /// Inside `netns`, listening on `ip` (an address of that namespace) at
    /// the standard ports 2379/2380. The server dies with the namespace.
    pub fn in_netns(netns: &Netns, ip: IpAddr) -> EtcdOptions {
        EtcdOptions {
            netns: Some(netns.name().to_owned()),
            ip,
            enable_v2: false,
            tls: None,
        }
    }

    /// Also serve the v2 API (`--enable-v2`), for tests of v2-era clients.
    pub fn enable_v2(mut self, on: bool) -> EtcdOptions {
        self.enable_v2 = on;
        self
    }

    pub fn tls(mut self, tls: EtcdTls) -> EtcdOptions {
        self.tls = Some(tls);
        self
    }
}

#[derive(Debug)]
pub struct Etcd {
    opts: EtcdOptions,
    client: SocketAddr,
    peer: SocketAddr,
    dir: TempDir,
    child: Option<Child>,
}

impl Etcd {
    /// Starts etcd and waits until `etcdctl endpoint health` succeeds.
    pub fn start(opts: EtcdOptions) -> Result<Etcd, EtcdError> {
        if let Some(ns) = &opts.netns {
            // Connections to a namespace's own address go through `lo`.
            cmd::run(
                Command::new("ip").args(["netns", "exec", ns, "ip", "link", "set", "lo", "up"]),
            )?;
            let etcd = Etcd::launch_at(opts.clone(), CLIENT_PORT, PEER_PORT)?;
            return Ok(etcd);
        }
        let mut attempt = 1;
        loop {
            let (client_port, peer_port) = free_loopback_ports()?;
            match Etcd::launch_at(opts.clone(), client_port, peer_port) {
                Err(EtcdError::Exited { log, .. })
                    if attempt < LOOPBACK_ATTEMPTS && log.contains("address already in use") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn launch_at(opts: EtcdOptions, client_port: u16, peer_port: u16) -> Result<Etcd, EtcdError> {
        let dir = tempfile::Builder::new().prefix("fr-etcd-").tempdir()?;
        let mut etcd = Etcd {
            client: SocketAddr::new(opts.ip, client_port),
            peer: SocketAddr::new(opts.ip, peer_port),
            opts,
            dir,
            child: None,
        };
        etcd.launch()?;
        Ok(etcd)
    }

    /// The client URL, e.g. `http://192.168.1.1:2379`.
    pub fn endpoint(&self) -> String {
        client_url(self.opts.tls.is_some(), self.client)
    }

    /// The client address [`Etcd::endpoint`] names, for clients that speak to it directly
    /// (the HTTP gateway, the metrics page).
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything etcd has logged since it was first started.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Graceful stop (SIGTERM), escalating to SIGKILL after a timeout.
    pub fn stop(&mut self) -> Result<(), EtcdError> {
        let Some(mut child) = self.child.take() else {
            return Err(EtcdError::NotRunning);
        };
        if cmd::terminate(&mut child, STOP_TIMEOUT)?.is_none() {
            cmd::signal(&child, libc::SIGKILL);
            child.wait()?;
        }
        Ok(())
    }

    /// Abrupt death (SIGKILL), as in a crashed or partitioned-away server.
    pub fn kill(&mut self) -> Result<(), EtcdError> {
        let Some(mut child) = self.child.take() else {
            return Err(EtcdError::NotRunning);
        };
        cmd::signal(&child, libc::SIGKILL);
        child.wait()?;
        Ok(())
    }

    /// Stops the server if it runs, then starts it again on the same data
    /// and addresses.
    pub fn restart(&mut self) -> Result<(), EtcdError> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.launch()
    }

    pub fn put(&self, key: &str, value: &str) -> Result<(), EtcdError> {
        self.etcdctl(&["put", "--", key, value]).map(drop)
    }

    /// The value of `key`, or `None` if it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<String>, EtcdError> {
        let out = self.etcdctl(&["get", "-w", "json", "--", key])?;
        decode_get(key, &out)
    }

    pub fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.etcdctl(&["del", "--", key]).map(drop)
    }

    /// The keys under `prefix` (v3), in etcd's order.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, EtcdError> {
        let out = self.etcdctl(&["get", "--prefix", "--keys-only", prefix])?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Runs `etcdctl` (API v3) against this server with its TLS settings,
    /// from inside its namespace if it has one; returns stdout.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, EtcdError> {
        Ok(cmd::run_stdout(self.etcdctl_command().args(args))?)
    }

    /// Runs `etcdctl` with the v2 API (a server started with `enable_v2`, without TLS),
    /// from inside its namespace if it has one; returns stdout.
    pub fn etcdctl_v2(&self, args: &[&str]) -> Result<String, EtcdError> {
        let mut c = self.in_place(ETCDCTL);
        c.env("ETCDCTL_API", "2")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(args);
        Ok(cmd::run_stdout(&mut c)?)
    }

    fn etcdctl_command(&self) -> Command {
        let mut c = self.in_place(ETCDCTL);
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(["--dial-timeout=2s", "--command-timeout=5s"]);
        if let Some(tls) = &self.opts.tls {
            c.arg("--cacert").arg(&tls.ca);
            if let Some((cert, key)) = &tls.client_cert {
                c.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        c
    }

    /// A command for `program` in the server's namespace (or the root one).
    fn in_place(&self, program: &str) -> Command {
        match &self.opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn launch(&mut self) -> Result<(), EtcdError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let client_url = self.endpoint();
        let peer_url = format!("http://{}", self.peer);
        let mut c = self.in_place(ETCD);
        c.arg("--name=fr")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=fr={peer_url}"))
            .arg("--initial-cluster-state=new")
            .args(["--logger=zap", "--log-outputs=stderr"]);
        if self.opts.enable_v2 {
            c.arg("--enable-v2=true");
        }
        if let Some(tls) = &self.opts.tls {
            c.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key);
            c.arg("--trusted-ca-file").arg(&tls.ca);
            if tls.client_cert_auth {
                c.arg("--client-cert-auth");
            }
        }
        c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let child = c.spawn().map_err(|source| CmdError::Spawn {
            cmd: cmd::describe(&c),
            source,
        })?;
        self.child = Some(child);
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> Result<(), EtcdError> {
        let started = Instant::now();
        let mut last_error = String::new();
        while started.elapsed() < START_TIMEOUT {
            let child = self.child.as_mut().ok_or(EtcdError::NotRunning)?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Err(EtcdError::Exited {
                    status,
                    log: self.log(),
                });
            }
            match cmd::run(self.etcdctl_command().args(["endpoint", "health"])) {
                Ok(_) => return Ok(()),
                Err(e) => last_error = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = self.log();
        if let Some(mut child) = self.child.take() {
            cmd::signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
        Err(EtcdError::NotHealthy {
            endpoint: self.endpoint(),
            waited: started.elapsed(),
            last_error,
            log,
        })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            cmd::signal(&child, libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

fn client_url(tls: bool, addr: SocketAddr) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

fn free_loopback_ports() -> std::io::Result<(u16, u16)> {
    // Both listeners are held at once so the two ports differ.
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn decode_get(key: &str, out: &str) -> Result<Option<String>, EtcdError> {
    let bad = |detail: String| EtcdError::Decode {
        what: format!("get {key}"),
        detail,
    };
    let v: serde_json::Value = serde_json::from_str(out).map_err(|e| bad(format!("{e}: {out}")))?;
    let Some(kv) = v["kvs"].as_array().and_then(|kvs| kvs.first()) else {
        return Ok(None);
    };
    let b64 = kv["value"].as_str().unwrap_or("");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("value: {e}")))?;
    String::from_utf8(raw)
        .map(Some)
        .map_err(|e| bad(format!("value is not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_get_reads_base64_value_and_missing_key() {
        let found = r#"{"header":{"revision":2},"kvs":[{"key":"L2E=","value":"aGVsbG8gd29ybGQ=","version":1}],"count":1}"#;
        assert_eq!(
            decode_get("/a", found).unwrap().as_deref(),
            Some("hello world")
        );
        let missing = r#"{"header":{"revision":2}}"#;
        assert_eq!(decode_get("/a", missing).unwrap(), None);
        assert!(matches!(
            decode_get("/a", "nope"),
            Err(EtcdError::Decode { .. })
        ));
    }

    #[test]
    fn free_ports_are_distinct_and_nonzero() {
        let (a, b) = free_loopback_ports().unwrap();
        assert_ne!(a, 0);
        assert_ne!(a, b);
    }

    #[test]
    fn client_url_brackets_ipv6_and_follows_tls() {
        let v6 = SocketAddr::new("fd00::1".parse().unwrap(), 2379);
        assert_eq!(client_url(false, v6), "http://[fd00::1]:2379");
        let v4 = SocketAddr::new(Ipv4Addr::new(192, 168, 1, 1).into(), 2379);
        assert_eq!(client_url(true, v4), "https://192.168.1.1:2379");
    }
}

//! An independent WireGuard on a bed host: Debian's `wireguard-go`, configured with `wg`
//! from `wireguard-tools`, the way an upstream flannel node configures its kernel device.
//!
//! wireguard-go keeps its control socket in `/run/wireguard/<dev>.sock`. Every host runs it
//! under a private tmpfs over `/run` in the mount namespace `ip netns exec` made for it, so
//! two hosts never share a socket and nothing appears in the machine's `/run`; each `wg`
//! call enters that mount namespace with `nsenter`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::cmd::{self, CmdError};
use crate::netns::Netns;

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A private key made as `wg genkey` makes it, written without a newline as upstream
/// flanneld writes its key file; returns the public key.
pub fn genkey(path: &Path) -> Result<String, CmdError> {
    let key = cmd::run_stdout(Command::new("wg").arg("genkey"))?;
    std::fs::write(path, key.trim_end()).map_err(|source| CmdError::Spawn {
        cmd: format!("writing {}", path.display()),
        source,
    })?;
    public_key(path)
}

/// `wg pubkey` of a key file.
pub fn public_key(path: &Path) -> Result<String, CmdError> {
    let file = std::fs::File::open(path).map_err(|source| CmdError::Spawn {
        cmd: format!("reading {}", path.display()),
        source,
    })?;
    let mut c = Command::new("wg");
    c.arg("pubkey").stdin(file);
    Ok(cmd::run_stdout(&mut c)?.trim().to_owned())
}

/// One peer as upstream's `addPeer` sets it.
#[derive(Debug, Clone)]
pub struct WgPeer {
    pub public_key: String,
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<IpNet>,
    pub psk_file: Option<PathBuf>,
}

/// A running wireguard-go device on a host.
pub struct WireguardGo {
    netns: String,
    device: String,
    child: Option<Child>,
}

impl WireguardGo {
    /// Starts `wireguard-go -f <device>` in `ns` and waits for its control socket.
    pub fn start(ns: &Netns, device: &str) -> Result<WireguardGo, CmdError> {
        let child = cmd::spawn_quiet(ns.command("bash").args([
            "-c",
            &format!(
                "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/wireguard && exec wireguard-go -f {device}"
            ),
        ]))?;
        let dev = WireguardGo {
            netns: ns.name().to_owned(),
            device: device.to_owned(),
            child: Some(child),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !dev.wg(&["show", device])?.status.success() {
            if Instant::now() > deadline {
                return Err(CmdError::Spawn {
                    cmd: format!("wireguard-go {device} in {}", ns.name()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "its control socket did not appear",
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(dev)
    }

    /// `wg <args>` inside the device's mount and network namespaces; its output whatever
    /// the status.
    pub fn wg(&self, args: &[&str]) -> Result<Output, CmdError> {
        let pid = self
            .child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default();
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.netns,
            "nsenter",
            "-t",
            &pid,
            "-m",
            "-n",
            "wg",
        ])
        .args(args);
        cmd::output(&mut c)
    }

    fn wg_ok(&self, args: &[&str]) -> Result<(), CmdError> {
        let mut c = Command::new("wg");
        c.args(args);
        let out = self.wg(args)?;
        if out.status.success() {
            return Ok(());
        }
        Err(CmdError::Failed {
            cmd: cmd::describe(&c),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// What upstream's `newWGDevice` and `Configure` do: key and port, the lease's subnet
    /// address as /32, the MTU, up, and one route for the network through the device.
    pub fn configure(
        &self,
        ns: &Netns,
        key_file: &Path,
        port: u16,
        address: IpNet,
        mtu: u32,
        network: IpNet,
    ) -> Result<(), CmdError> {
        let key = key_file.display().to_string();
        self.wg_ok(&[
            "set",
            &self.device,
            "listen-port",
            &port.to_string(),
            "private-key",
            &key,
        ])?;
        let dev = self.device.as_str();
        let (addr, mtu, net) = (address.to_string(), mtu.to_string(), network.to_string());
        ns.exec_ok(&["ip", "addr", "replace", &addr, "dev", dev])?;
        ns.exec_ok(&["ip", "link", "set", dev, "mtu", &mtu, "up"])?;
        ns.exec_ok(&["ip", "route", "replace", &net, "dev", dev, "scope", "link"])?;
        Ok(())
    }

    /// What upstream's `addPeer` does for one lease.
    pub fn add_peer(&self, p: &WgPeer) -> Result<(), CmdError> {
        let endpoint = p.endpoint.to_string();
        let allowed: Vec<String> = p.allowed_ips.iter().map(|n| n.to_string()).collect();
        let allowed = allowed.join(",");
        let mut args = vec![
            "set",
            self.device.as_str(),
            "peer",
            p.public_key.as_str(),
            "endpoint",
            &endpoint,
            "allowed-ips",
            &allowed,
        ];
        let psk = p.psk_file.as_ref().map(|f| f.display().to_string());
        if let Some(f) = &psk {
            args.extend(["preshared-key", f.as_str()]);
        }
        self.wg_ok(&args)
    }

    /// The last handshake with `peer` in Unix seconds (0: none yet).
    pub fn latest_handshake(&self, peer: &str) -> Result<u64, CmdError> {
        let out = self.wg(&["show", &self.device, "latest-handshakes"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                let (k, t) = l.split_once('\t')?;
                (k == peer).then(|| t.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0))
    }

    /// Kills the process; its TUN device goes with it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        self.stop();
    }
}

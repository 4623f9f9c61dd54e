//! The kernel's WireGuard device, created over rtnetlink and configured over generic netlink
//! (`netops::wireguard`), as upstream does with `netlink.LinkAdd` and `wgctrl`
//! (flannel-io/flannel `pkg/backend/wireguard/device.go`): an existing device of that name is
//! deleted and created again, the private key and listen port are set with every peer
//! replaced, and the device is removed when flanneld stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use netops::netlink::Handle;
use netops::wireguard::{WgDeviceConfig, WgPeerConfig, WgPeerState, WireguardClient};

use super::plan::PeerConfig;
use super::{Device, Observed, Observer, PeerChanges, WireguardError};
use crate::metrics::wireguard::{DeviceStats, Implementation, PeerStats};
use crate::subnet::WgKey;

pub(crate) struct KernelDevice {
    name: String,
    index: u32,
    port: u16,
    nl: Handle,
    client: WireguardClient,
    /// What each peer was last configured with: an endpoint the kernel moved (roaming) is
    /// left alone until the lease changes it.
    configured: HashMap<WgKey, PeerConfig>,
}

impl KernelDevice {
    /// Creates the device. [`WireguardError::KernelUnavailable`] when this kernel has no
    /// WireGuard, so the caller can run the userspace device instead.
    pub fn create(
        name: &str,
        mtu: u32,
        private: &WgKey,
        port: u16,
        mut nl: Handle,
    ) -> Result<KernelDevice, WireguardError> {
        let unavailable = |why: String| WireguardError::KernelUnavailable(why);
        let created = match nl.add_wireguard(name, Some(mtu)) {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.errno().map(|e| e as i32),
                    Some(libc::EOPNOTSUPP | libc::EINVAL)
                ) =>
            {
                return Err(unavailable(format!(
                    "creating a link of kind wireguard: {e}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if !created {
            log::warn!("{name:?} already exists; recreating device");
            if let Some(old) = nl.link_by_name(name)? {
                nl.delete_link(old.index)?;
            }
            nl.add_wireguard(name, Some(mtu))?;
        }
        let link = nl
            .link_by_name(name)?
            .ok_or_else(|| WireguardError::DeviceVanished(name.to_owned()))?;
        let client = match WireguardClient::connect() {
            Ok(Some(c)) => c,
            Ok(None) => {
                let _ = nl.delete_link(link.index);
                return Err(unavailable(
                    "the generic netlink family \"wireguard\" is not registered".into(),
                ));
            }
            Err(e) => {
                let _ = nl.delete_link(link.index);
                return Err(e.into());
            }
        };
        let mut dev = KernelDevice {
            name: name.to_owned(),
            index: link.index,
            port,
            nl,
            client,
            configured: HashMap::new(),
        };
        dev.client.set_device(&WgDeviceConfig {
            ifname: dev.name.clone(),
            private_key: Some(private.0),
            listen_port: Some(port),
            replace_peers: true,
            peers: Vec::new(),
        })?;
        log::info!("wireguard: kernel device {name} listening on port {port}");
        Ok(dev)
    }
}

/// A peer's last handshake time as last seen, and how many changes of it were seen.
type Handshakes = (Option<SystemTime>, u64);

fn kernel_peer(p: &PeerConfig) -> WgPeerConfig {
    WgPeerConfig {
        public_key: p.public_key.0,
        remove: false,
        // All zeros clears a key the kernel may still hold from an earlier config.
        preshared_key: Some(p.psk.map_or([0; 32], |k| k.0)),
        endpoint: p.endpoint,
        persistent_keepalive: Some(p.keepalive),
        allowed_ips: Some(p.allowed_ips.clone()),
    }
}

/// Whether the kernel's view of a peer still matches what we configured (roaming aside).
fn in_sync(want: &PeerConfig, have: &WgPeerState) -> bool {
    let mut a = want.allowed_ips.clone();
    let mut b = have.allowed_ips.clone();
    a.sort();
    b.sort();
    a == b
        && have.persistent_keepalive == want.keepalive
        && have.has_preshared_key == want.psk.is_some()
}

impl Device for KernelDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn index(&self) -> u32 {
        self.index
    }

    fn implementation(&self) -> Implementation {
        Implementation::Kernel
    }

    fn set_peers(&mut self, peers: &[PeerConfig]) -> Result<PeerChanges, WireguardError> {
        let current = self.client.get_device(&self.name)?;
        let have: HashMap<[u8; 32], &WgPeerState> =
            current.peers.iter().map(|p| (p.public_key, p)).collect();
        let mut changes = PeerChanges::default();
        let mut updates = Vec::new();
        for p in peers {
            let last = self.configured.get(&p.public_key);
            match have.get(&p.public_key.0) {
                None => {
                    changes.added += 1;
                    updates.push(kernel_peer(p));
                }
                Some(h) if !in_sync(p, h) || last != Some(p) => {
                    changes.updated += 1;
                    let mut k = kernel_peer(p);
                    // An unchanged lease endpoint leaves the one roaming chose.
                    if last.is_some_and(|l| l.endpoint == p.endpoint) {
                        k.endpoint = None;
                    }
                    updates.push(k);
                }
                Some(_) => {}
            }
        }
        let wanted: std::collections::HashSet<[u8; 32]> =
            peers.iter().map(|p| p.public_key.0).collect();
        for h in &current.peers {
            if !wanted.contains(&h.public_key) {
                changes.removed += 1;
                updates.push(WgPeerConfig {
                    public_key: h.public_key,
                    remove: true,
                    preshared_key: None,
                    endpoint: None,
                    persistent_keepalive: None,
                    allowed_ips: None,
                });
            }
        }
        if !updates.is_empty() {
            self.client.set_device(&WgDeviceConfig {
                ifname: self.name.clone(),
                private_key: None,
                listen_port: None,
                replace_peers: false,
                peers: updates,
            })?;
        }
        self.configured = peers.iter().map(|p| (p.public_key, p.clone())).collect();
        Ok(changes)
    }

    fn observer(&self) -> Observer {
        let (name, port) = (self.name.clone(), self.port);
        // Handshakes counted as changes of the last handshake time between observations.
        let seen: Mutex<HashMap<[u8; 32], Handshakes>> = Mutex::new(HashMap::new());
        Arc::new(move || {
            let read = WireguardClient::connect()
                .map_err(|e| e.to_string())
                .and_then(|c| c.ok_or_else(|| "the kernel has no wireguard family".to_owned()))
                .and_then(|mut c| c.get_device(&name).map_err(|e| e.to_string()));
            let stats = read.map(|dev| {
                let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                DeviceStats {
                    name: name.clone(),
                    listen_port: if dev.listen_port == 0 {
                        port
                    } else {
                        dev.listen_port
                    },
                    public_key: dev
                        .public_key
                        .map(|k| WgKey(k).to_base64())
                        .unwrap_or_default(),
                    peers: dev
                        .peers
                        .iter()
                        .map(|p| {
                            let entry = seen.entry(p.public_key).or_insert((None, 0));
                            if p.last_handshake.is_some() && p.last_handshake != entry.0 {
                                entry.0 = p.last_handshake;
                                entry.1 += 1;
                            }
                            PeerStats {
                                public_key: WgKey(p.public_key).to_base64(),
                                allowed_ips: p.allowed_ips.clone(),
                                endpoint: p.endpoint,
                                last_handshake: p.last_handshake,
                                handshakes: entry.1,
                                rx_bytes: p.rx_bytes,
                                tx_bytes: p.tx_bytes,
                            }
                        })
                        .collect(),
                }
            });
            Observed {
                stats,
                counters: None,
            }
        })
    }
}

impl Drop for KernelDevice {
    /// Upstream removes its devices when flanneld stops.
    fn drop(&mut self) {
        match self.nl.delete_link(self.index) {
            Ok(_) => log::info!("Removed wireguard device {}", self.name),
            Err(e) => log::error!("Error while removing device {}: {e}", self.name),
        }
    }
}

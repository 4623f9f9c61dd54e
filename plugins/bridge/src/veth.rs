//! The veth pair between container and host.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;

use netops::netlink::{Handle, LinkInfo, MacAddr, VethSpec};
use netops::sysctl;

use crate::error::{cause, BridgeError};

/// How often a colliding random host-side name is replaced before giving up.
const NAME_ATTEMPTS: usize = 10;

/// `veth` + 8 lowercase hex digits from 4 random bytes, as upstream names host ends.
pub fn random_host_name() -> Result<String, std::io::Error> {
    let mut b = [0u8; 4];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(format!(
        "veth{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3]
    ))
}

/// Both ends of a freshly created pair, as read back from their namespaces.
#[derive(Debug, Clone)]
pub struct VethPair {
    pub host: LinkInfo,
    pub container: LinkInfo,
}

/// Creates `ifname` in the container (through `cont`, a socket bound to the container netns)
/// with its peer created directly in the host namespace `host_ns`, in one request. Brings
/// the host end up with router advertisements off; the container end stays down (IP
/// configuration, or the L2 step, brings it up).
///
/// Upstream retries a colliding peer name only when it is visible in the *container* (never
/// the case), so a host-side collision fails the ADD there; here a collision with an
/// existing host link is retried with a fresh name, and an existing container interface
/// is reported.
pub fn create(
    host: &mut Handle,
    cont: &mut Handle,
    host_ns: &File,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<&str>,
) -> Result<VethPair, BridgeError> {
    let mac = mac
        .map(|m| {
            m.parse::<MacAddr>()
                .map_err(|_| BridgeError::InvalidMac(m.to_string()))
        })
        .transpose()?;
    let mut attempt = 0;
    let peer = loop {
        attempt += 1;
        let peer = random_host_name().map_err(|e| BridgeError::Failed(e.to_string()))?;
        let spec = VethSpec {
            name: ifname.to_string(),
            peer_name: peer.clone(),
            mtu,
            // Upstream's plugin as the reference (v1.1.1) runs it: txqueuelen 0 on both
            // ends (its struct literal sent IFLA_TXQLEN 0). A veth has no queue
            // (IFF_NO_QUEUE) either way; a qdisc added later takes its default limit from it.
            txqlen: Some(0),
            mac,
            peer_mac: None,
            peer_netns: Some(host_ns.as_fd()),
        };
        match cont.add_veth(&spec) {
            Ok(()) => break peer,
            Err(e) if e.is_exists() => {
                let container_taken = cont
                    .link_by_name(ifname)
                    .map_err(BridgeError::netlink(format!("failed to lookup {ifname:?}")))?
                    .is_some();
                if container_taken || attempt >= NAME_ATTEMPTS {
                    return Err(BridgeError::VethExists {
                        name: ifname.to_string(),
                        peer,
                    });
                }
            }
            Err(e) => {
                return Err(BridgeError::Failed(format!(
                    "failed to make veth pair: {}",
                    cause(&e)
                )))
            }
        }
    };
    let container = cont
        .link_by_name(ifname)
        .map_err(BridgeError::netlink(format!("failed to lookup {ifname:?}")))?
        .ok_or_else(|| {
            BridgeError::Failed(format!("failed to lookup {ifname:?}: Link not found"))
        })?;
    let host_link = host
        .link_by_name(&peer)
        .map_err(BridgeError::netlink(format!("failed to lookup {peer:?}")))?
        .ok_or_else(|| BridgeError::Failed(format!("failed to lookup {peer:?}: Link not found")))?;
    host.set_link_up(host_link.index)
        .map_err(BridgeError::netlink(format!("failed to set {peer:?} up")))?;
    let _ = sysctl::set(&format!("net/ipv6/conf/{peer}/accept_ra"), "0");
    Ok(VethPair {
        host: host_link,
        container,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_veth_plus_eight_hex() {
        let a = random_host_name().unwrap();
        let b = random_host_name().unwrap();
        for n in [&a, &b] {
            assert_eq!(n.len(), 12, "{n}");
            assert!(n.starts_with("veth"));
            assert!(n[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_ne!(a, b, "4 random bytes collide with negligible probability");
    }
}

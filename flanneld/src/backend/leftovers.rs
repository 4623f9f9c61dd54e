//! Devices another backend left behind. Switching a node's backend is a restart with a new
//! net-conf; whatever the old backend made must go, or it keeps carrying (or swallowing)
//! pod traffic: a vxlan device's routes, neighbours and FDB entries, a kernel WireGuard
//! device after a killed run. Routes, neighbours and FDB entries of a device go with it.
//! (udp's and userspace WireGuard's TUN devices vanish with the process that held them.)

use netops::netlink::{Handle, LinkKind, NetlinkError};

use super::wireguard::{DEVICE as WG_DEVICE, DEVICE_V6 as WG_DEVICE_V6};

/// `flannel.<VNI>` or `flannel-v6.<VNI>`: the names upstream's vxlan backend gives.
fn is_vxlan_name(name: &str) -> bool {
    ["flannel.", "flannel-v6."].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|vni| !vni.is_empty() && vni.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Deletes the devices of every backend but `current` (a lease BackendType); returns how
/// many there were.
pub(crate) fn remove(nl: &mut Handle, current: &str) -> Result<usize, NetlinkError> {
    let mut removed = 0;
    for link in nl.link_list()? {
        let owner = match link.kind {
            Some(LinkKind::Vxlan) if is_vxlan_name(&link.name) => "vxlan",
            Some(LinkKind::Wireguard) if link.name == WG_DEVICE || link.name == WG_DEVICE_V6 => {
                "wireguard"
            }
            _ => continue,
        };
        if owner == current {
            continue;
        }
        log::info!(
            "removing {} left by the {owner} backend (this node now runs {:?})",
            link.name,
            if current.is_empty() { "udp" } else { current }
        );
        removed += usize::from(nl.delete_link(link.index)?);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_names_as_upstream_gives_them() {
        for (name, ours) in [
            ("flannel.1", true),
            ("flannel-v6.4096", true),
            ("flannel.", false),
            ("flannel.1a", false),
            ("flannel0", false),
            ("flannel-wg", false),
            ("vxlan.1", false),
        ] {
            assert_eq!(is_vxlan_name(name), ours, "{name}");
        }
    }
}

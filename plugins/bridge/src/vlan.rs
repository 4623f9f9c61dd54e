//! The bridge plugin's VLAN policy for a port: which entries it gets, in which order, and
//! upstream's wording when one fails. The netlink operations are `netops`'.

use netops::netlink::{Handle, LinkInfo, PortVlan};

use crate::error::BridgeError;

/// Gives `port` access VLAN `vlan` (when not 0) and the tagged `trunk` VLANs. Unless
/// `preserve_default_vlan`, every VLAN the port had first (the bridge's default VLAN 1) is
/// removed, as upstream does before adding its own.
pub fn configure_port(
    h: &mut Handle,
    port: &LinkInfo,
    vlan: u16,
    trunk: &[u16],
    preserve_default_vlan: bool,
) -> Result<(), BridgeError> {
    let name = &port.name;
    if !preserve_default_vlan {
        let ctx = format!("failed to remove default vlan on interface {name:?}");
        for existing in h
            .bridge_vlans(port.index)
            .map_err(BridgeError::netlink(ctx.as_str()))?
        {
            h.del_bridge_vlan(port.index, existing.vid)
                .map_err(BridgeError::netlink(ctx.as_str()))?;
        }
    }
    let ctx = format!("failed to setup vlan tag on interface {name:?}");
    let access = (vlan != 0).then(|| PortVlan::access(vlan));
    for entry in access
        .into_iter()
        .chain(trunk.iter().map(|vid| PortVlan::tagged(*vid)))
    {
        h.add_bridge_vlan(port.index, entry)
            .map_err(BridgeError::netlink(ctx.as_str()))?;
    }
    Ok(())
}

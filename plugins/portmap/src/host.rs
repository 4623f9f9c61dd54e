//! Host-side tweaks around the NAT rules: `route_localnet` (so 127.0.0.1 can be DNATed to a
//! container) and flushing stale UDP conntrack entries.

use std::net::IpAddr;

use netops::conntrack::Protocol;
use netops::netlink::Handle;
use netops::Family;

use crate::error::PortmapError;

/// The interface the kernel routes `ip` through, or `None` if there is no route (upstream
/// then silently skips route_localnet).
fn routable_interface(ip: IpAddr) -> Option<String> {
    let mut nl = Handle::new().ok()?;
    let route = nl.route_get(ip).ok()?;
    let link = nl.link_by_index(route.oif?).ok()??;
    Some(link.name)
}

/// Sets `net.ipv4.conf.<if>.route_localnet=1` on the interface routing to `container_ip`,
/// so localhost connections to a host port can leave towards the container.
pub fn enable_route_localnet(container_ip: IpAddr) -> Result<(), PortmapError> {
    let Some(ifname) = routable_interface(container_ip) else {
        return Ok(());
    };
    netops::sysctl::set(&format!("net/ipv4/conf/{ifname}/route_localnet"), "1")
        .map(drop)
        .map_err(|e| PortmapError::RouteLocalnet(e.to_string()))
}

/// Deletes conntrack entries for UDP traffic to `host_port`: an entry created before the
/// mapping existed would keep sending that flow to the old destination. Over ctnetlink, as
/// upstream (no `conntrack` program needed). Failures are only logged, as upstream: the
/// mapping itself is in place.
pub fn flush_udp_conntrack(host_port: u16, container_ip: IpAddr) {
    let family = Family::of(&container_ip);
    if let Err(e) = netops::conntrack::delete_by_dst_port(family, Protocol::Udp, host_port) {
        eprintln!("portmap: failed to delete stale UDP conntrack entries for {container_ip}: {e}");
    }
}

//! ADD / DEL / CHECK as upstream's `cmdAdd`, `cmdDel`, `cmdCheck`, independent of the skel.

use netconf::{CniResult, NetConf};

use crate::backend::{self, Backend};
use crate::config::PortMapConf;
use crate::error::PortmapError;
use crate::host;

fn parse(
    conf: &NetConf,
    ifname: &str,
) -> Result<(PortMapConf, &'static dyn Backend), PortmapError> {
    let pm = PortMapConf::parse(conf, ifname)?;
    let kind = pm.resolve_backend(backend::usable)?;
    Ok((pm, backend::for_kind(kind)))
}

/// Forwards the mapped ports and returns `prevResult` unchanged (the skel prints it in the
/// config's version).
pub fn add(conf: &NetConf, ifname: &str, container_id: &str) -> Result<CniResult, PortmapError> {
    let (pm, backend) = parse(conf, ifname)?;
    let prev = conf.prev_result.clone().ok_or(PortmapError::NotChained)?;
    if pm.mappings.is_empty() {
        return Ok(prev);
    }
    if let (true, Some(v4)) = (pm.snat, pm.container_v4) {
        host::enable_route_localnet(v4.addr())?;
    }
    backend.add(&pm, container_id)?;
    for (container, v6) in [(pm.container_v4, false), (pm.container_v6, true)] {
        if let Some(ip) = container {
            for m in pm.mappings.iter().filter(|m| m.protocol == "udp") {
                host::flush_udp_conntrack(v6, m.host_port, ip.addr());
            }
        }
    }
    Ok(prev)
}

/// Removes the container's forwarding. Without `portMappings` in the DEL config there is
/// nothing to remove (upstream behaviour: the runtime sends the same capabilities as on ADD).
pub fn del(conf: &NetConf, ifname: &str, container_id: &str) -> Result<(), PortmapError> {
    let (pm, backend) = parse(conf, ifname)?;
    if pm.mappings.is_empty() {
        return Ok(());
    }
    backend.del(&pm, container_id)
}

pub fn check(conf: &NetConf, ifname: &str, container_id: &str) -> Result<(), PortmapError> {
    let (pm, backend) = parse(conf, ifname)?;
    if conf.prev_result.is_none() {
        return Err(PortmapError::CheckWithoutPrevResult);
    }
    if pm.mappings.is_empty() {
        return Ok(());
    }
    backend.check(&pm, container_id)
}

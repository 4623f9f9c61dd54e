//! ADD / DEL / CHECK as upstream's `cmdAdd`, `cmdDel`, `cmdCheck`, independent of the skel.

use netconf::{CniResult, NetConf};
use netops::firewall::Backend;

use crate::backend;
use crate::config::PortMapConf;
use crate::error::PortmapError;
use crate::host;

fn parse(conf: &NetConf, ifname: &str) -> Result<(PortMapConf, Backend), PortmapError> {
    let pm = PortMapConf::parse(conf, ifname)?;
    let backend = pm.resolve_backend(Backend::usable)?;
    Ok((pm, backend))
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
    backend::add(backend, &pm, container_id)?;
    for ip in [pm.container_v4, pm.container_v6].into_iter().flatten() {
        for m in pm.mappings.iter().filter(|m| m.protocol == "udp") {
            host::flush_udp_conntrack(m.host_port, ip.addr());
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
    backend::del(backend, &pm, container_id)
}

pub fn check(conf: &NetConf, ifname: &str, container_id: &str) -> Result<(), PortmapError> {
    let (pm, backend) = parse(conf, ifname)?;
    if conf.prev_result.is_none() {
        return Err(PortmapError::CheckWithoutPrevResult);
    }
    if pm.mappings.is_empty() {
        return Ok(());
    }
    backend::check(backend, &pm, container_id)
}

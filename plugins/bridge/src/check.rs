//! CHECK: the attachment described by `prevResult` still exists as ADD made it.
//!
//! Deliberate improvement over upstream: CHECK passes on every configuration ADD accepts.
//! Upstream calls IPAM CHECK even in L2-only mode (failing with `no plugin name provided`) and
//! requires a result route without `gw` to exist without a gateway in the kernel, although
//! ADD installs such routes via the interface's gateway (cni.md §7.15). And a bridge MAC that
//! the kernel moved (a bridge without an address follows its lowest port MAC) is not a
//! mismatch; upstream fails CHECK on L2 bridges once a second pod joins.

use std::net::IpAddr;
use std::path::Path;

use netconf::{CniResult, Interface};
use netops::netlink::{Handle, LinkInfo, LinkKind, RouteSpec};
use netops::netns::{open_netns, NetnsGuard};
use netops::Family;
use skel::Request;

use crate::bridge::{lookup_bridge, mac_moved_by_kernel};
use crate::config::BridgeConf;
use crate::error::BridgeError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("Required prevResult missing")]
    PrevResultMissing,
    #[error("Sandbox in prevResult {prev} doesn't match configured netns: {netns}")]
    SandboxMismatch { prev: String, netns: String },
    #[error("Interface name {0} not found")]
    LinkNotFound(String),
    #[error("Interface {0} does not have link type of bridge")]
    NotABridge(String),
    #[error("Bridge interface {name} Mac doesn't match: {mac}")]
    BridgeMac { name: String, mac: String },
    #[error(
        "Bridge interface {name} configured Promisc Mode {want} doesn't match current state: {got}"
    )]
    Promisc { name: String, want: bool, got: bool },
    #[error("Error: Container interface {0} not of type veth")]
    NotVeth(String),
    #[error("Interface {name} Mac {want} doesn't match container Mac: {got}")]
    ContainerMac {
        name: String,
        want: String,
        got: String,
    },
    #[error("CNI created bridge {0} in host namespace was not found")]
    BridgeMissing(String),
    #[error("CNI created interface in container {0} not found")]
    ContainerMissing(String),
    #[error("CNI veth created for bridge {0} was not found")]
    VethMissing(String),
    #[error("Failed to match addr {addr} on interface {ifname}")]
    AddrMissing { addr: String, ifname: String },
    #[error("Failed to find Gateway {prefix} for interface {ifname}")]
    PrefixRouteMissing { prefix: String, ifname: String },
    #[error("Expected Route {{Dst:{dst} GW:{gw}}} not found in routing table")]
    RouteMissing { dst: String, gw: String },
}

pub fn check(req: &Request) -> Result<(), BridgeError> {
    let conf = BridgeConf::load(&req.conf, &req.env.args)?;
    let path = req
        .env
        .netns
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let ns = open_netns(Path::new(&path)).map_err(|source| BridgeError::OpenNetns {
        path: path.clone(),
        source,
    })?;
    if let Some(ipam) = &conf.ipam_type {
        skel::delegate::check(ipam, &req.stdin, &req.env).map_err(BridgeError::Ipam)?;
    }
    let prev = req
        .conf
        .prev_result
        .as_ref()
        .ok_or(CheckError::PrevResultMissing)?;

    let mut host = Handle::new().map_err(BridgeError::netlink("failed to open netlink socket"))?;
    let mut cont = {
        let _in = NetnsGuard::enter(&ns)?;
        Handle::new().map_err(BridgeError::netlink("failed to open netlink socket"))?
    };
    let ifname = req.env.ifname.as_str();

    let mut bridge_entry = None;
    let mut container_entry = None;
    let mut host_candidates = Vec::new();
    for intf in &prev.interfaces {
        if intf.name == conf.bridge {
            bridge_entry = Some(intf);
        } else if intf.name == ifname && intf.sandbox.is_some() {
            let sandbox = intf.sandbox.as_deref().unwrap_or_default();
            if sandbox != path {
                return Err(CheckError::SandboxMismatch {
                    prev: sandbox.to_string(),
                    netns: path,
                }
                .into());
            }
            container_entry = Some(intf);
        } else if intf.sandbox.as_deref().map_or(true, str::is_empty) {
            host_candidates.push(intf);
        }
    }
    let bridge_entry =
        bridge_entry.ok_or_else(|| CheckError::BridgeMissing(conf.bridge.clone()))?;
    let container_entry =
        container_entry.ok_or_else(|| CheckError::ContainerMissing(ifname.to_string()))?;

    let br = check_bridge(&mut host, bridge_entry, conf.promisc_mode)?;
    let container = check_container(&mut cont, container_entry)?;
    let found_veth = host_candidates.iter().any(|intf| {
        matches!(host.link_by_name(&intf.name), Ok(Some(l))
            if l.kind == Some(LinkKind::Veth)
                && l.link == Some(container.index)
                && l.master == Some(br.index))
    });
    if !found_veth {
        return Err(CheckError::VethMissing(conf.bridge.clone()).into());
    }
    if conf.is_layer3() {
        check_addresses(&mut cont, container.index, ifname, prev)?;
        check_routes(&mut cont, container.index, prev)?;
    }
    Ok(())
}

fn same_mac(want: Option<&str>, got: &LinkInfo) -> bool {
    match want.filter(|m| !m.is_empty()) {
        None => true,
        Some(want) => got.mac.map(|m| m.to_string()) == Some(want.to_ascii_lowercase()),
    }
}

fn check_bridge(h: &mut Handle, entry: &Interface, promisc: bool) -> Result<LinkInfo, BridgeError> {
    let br = match h.link_by_name(&entry.name) {
        Ok(Some(l)) => l,
        _ => return Err(CheckError::LinkNotFound(entry.name.clone()).into()),
    };
    lookup_bridge(h, &entry.name).map_err(|_| CheckError::NotABridge(entry.name.clone()))?;
    // A bridge whose MAC the kernel manages takes the lowest port MAC, so another pod joining
    // or leaving moves it: not a mismatch (upstream's CHECK fails there).
    if !same_mac(entry.mac.as_deref(), &br) && !mac_moved_by_kernel(h, &br)? {
        return Err(CheckError::BridgeMac {
            name: entry.name.clone(),
            mac: entry.mac.clone().unwrap_or_default(),
        }
        .into());
    }
    if br.promisc != promisc {
        return Err(CheckError::Promisc {
            name: entry.name.clone(),
            want: promisc,
            got: br.promisc,
        }
        .into());
    }
    Ok(br)
}

fn check_container(cont: &mut Handle, entry: &Interface) -> Result<LinkInfo, BridgeError> {
    let link = match cont.link_by_name(&entry.name) {
        Ok(Some(l)) => l,
        _ => return Err(CheckError::LinkNotFound(entry.name.clone()).into()),
    };
    if link.kind != Some(LinkKind::Veth) {
        return Err(CheckError::NotVeth(entry.name.clone()).into());
    }
    if !same_mac(entry.mac.as_deref(), &link) {
        return Err(CheckError::ContainerMac {
            name: entry.name.clone(),
            want: entry.mac.clone().unwrap_or_default(),
            got: link.mac.map(|m| m.to_string()).unwrap_or_default(),
        }
        .into());
    }
    Ok(link)
}

fn check_addresses(
    cont: &mut Handle,
    index: u32,
    ifname: &str,
    prev: &CniResult,
) -> Result<(), BridgeError> {
    let addrs = cont
        .addr_list(Some(index), None)
        .map_err(BridgeError::netlink("Cannot obtain List of IP Addresses"))?;
    for ip in &prev.ips {
        if !addrs.iter().any(|a| a.addr == ip.address) {
            return Err(CheckError::AddrMissing {
                addr: ip.address.to_string(),
                ifname: ifname.to_string(),
            }
            .into());
        }
        let prefix = ip.address.trunc();
        let routes = cont
            .route_list(Family::of(&ip.address.addr()), None)
            .map_err(BridgeError::netlink("failed to list routes"))?;
        if !routes.iter().any(|r| r.dst == prefix) {
            return Err(CheckError::PrefixRouteMissing {
                prefix: prefix.to_string(),
                ifname: ifname.to_string(),
            }
            .into());
        }
    }
    Ok(())
}

/// The gateway ADD used for routes without one: the first IP gateway of the family.
fn family_gateway(prev: &CniResult, v4: bool) -> Option<IpAddr> {
    prev.ips
        .iter()
        .filter_map(|ip| ip.gateway)
        .find(|gw| gw.is_ipv4() == v4)
}

fn route_matches(
    kernel: &RouteSpec,
    dst: &ipnet::IpNet,
    gw: Option<IpAddr>,
    fallback: Option<IpAddr>,
) -> bool {
    kernel.dst == dst.trunc()
        && match gw {
            Some(gw) => kernel.gw == Some(gw),
            None => kernel.gw.is_none() || kernel.gw == fallback,
        }
}

fn check_routes(cont: &mut Handle, index: u32, prev: &CniResult) -> Result<(), BridgeError> {
    for r in &prev.routes {
        let v4 = r.dst.addr().is_ipv4();
        let family = if v4 { Family::V4 } else { Family::V6 };
        let kernel = cont
            .route_list(family, r.table)
            .map_err(BridgeError::netlink("failed to list routes"))?;
        let fallback = family_gateway(prev, v4);
        let found = kernel
            .iter()
            .filter(|k| k.oif.map_or(true, |oif| oif == index))
            .any(|k| route_matches(k, &r.dst, r.gw, fallback));
        if !found {
            return Err(CheckError::RouteMissing {
                dst: r.dst.to_string(),
                gw: r.gw.map_or_else(|| "<nil>".to_string(), |g| g.to_string()),
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: Option<&str>) -> RouteSpec {
        let mut r = RouteSpec::new(dst.parse().unwrap());
        r.gw = gw.map(|g| g.parse().unwrap());
        r
    }

    #[test]
    fn route_without_gw_matches_kernel_route_via_family_gateway() {
        let dst: ipnet::IpNet = "10.244.0.0/16".parse().unwrap();
        let fallback = Some("10.244.1.1".parse().unwrap());
        assert!(route_matches(
            &route("10.244.0.0/16", Some("10.244.1.1")),
            &dst,
            None,
            fallback
        ));
        assert!(route_matches(
            &route("10.244.0.0/16", None),
            &dst,
            None,
            fallback
        ));
        assert!(!route_matches(
            &route("10.244.0.0/16", Some("10.244.1.9")),
            &dst,
            None,
            fallback
        ));
        assert!(!route_matches(
            &route("10.245.0.0/16", Some("10.244.1.1")),
            &dst,
            None,
            fallback
        ));
    }

    #[test]
    fn route_with_gw_needs_that_gw() {
        let dst: ipnet::IpNet = "0.0.0.0/0".parse().unwrap();
        let gw = Some("10.244.1.1".parse().unwrap());
        assert!(route_matches(
            &route("0.0.0.0/0", Some("10.244.1.1")),
            &dst,
            gw,
            None
        ));
        assert!(!route_matches(&route("0.0.0.0/0", None), &dst, gw, None));
    }

    #[test]
    fn messages_follow_upstream() {
        assert_eq!(
            CheckError::VethMissing("cni0".into()).to_string(),
            "CNI veth created for bridge cni0 was not found"
        );
        assert_eq!(
            CheckError::Promisc {
                name: "cni0".into(),
                want: true,
                got: false
            }
            .to_string(),
            "Bridge interface cni0 configured Promisc Mode true doesn't match current state: false"
        );
    }
}

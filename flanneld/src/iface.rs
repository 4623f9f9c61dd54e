//! Choosing the external interface: the one flannel's traffic between nodes leaves through,
//! and the addresses it publishes (upstream `main.go` + `pkg/ipmatch`).
//!
//! Order: each `--iface` (an IP selects the interface holding it, anything else is a name),
//! then each `--iface-regex` (matched against every interface's IPs first, then names), then
//! `--iface-can-reach` (the kernel's route to that IP). With none of these: the interface
//! owning `--public-ip`, else the one of the default route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netops::netlink::{Addr, Family, Handle, LinkInfo, NetlinkError};
use regex::Regex;

use crate::backend::ExternalInterface;

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("invalid -iface-regex {pattern:?}: {source}")]
    Regex {
        pattern: String,
        source: regex::Error,
    },
    #[error("Failed to find any valid interface to use: {0}")]
    NoDefault(String),
    #[error("Failed to find interface to use that matches the interfaces and/or regexes provided")]
    NoMatch,
    #[error("interface {name} has no usable {family} address")]
    NoAddress { name: String, family: &'static str },
    #[error("interface {0} reports MTU 0")]
    ZeroMtu(String),
}

/// The `--iface*` / `--public-ip*` flags and the enabled address families.
#[derive(Debug, Clone, Default)]
pub struct IfaceRequest {
    pub ifaces: Vec<String>,
    pub regexes: Vec<String>,
    pub can_reach: Option<IpAddr>,
    pub public_ip: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    pub ipv4: bool,
    pub ipv6: bool,
}

/// What the kernel knows that selection needs, read once.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub links: Vec<LinkInfo>,
    pub addrs: Vec<Addr>,
    /// Interface index of the first IPv4 / IPv6 default route.
    pub default_v4: Option<u32>,
    pub default_v6: Option<u32>,
}

impl Inventory {
    pub fn read(h: &mut Handle) -> Result<Inventory, NetlinkError> {
        let default_of = |routes: Vec<netops::netlink::RouteSpec>| {
            routes
                .iter()
                .find(|r| r.dst.prefix_len() == 0)
                .and_then(|r| r.oif)
        };
        Ok(Inventory {
            links: h.link_list()?,
            addrs: h.addr_list(None, None)?,
            default_v4: default_of(h.route_list(Family::V4, None)?),
            default_v6: default_of(h.route_list(Family::V6, None)?),
        })
    }

    fn link(&self, index: u32) -> Option<&LinkInfo> {
        self.links.iter().find(|l| l.index == index)
    }

    fn link_with_ip(&self, ip: IpAddr) -> Option<&LinkInfo> {
        self.addrs
            .iter()
            .find(|a| a.addr.addr() == ip)
            .and_then(|a| self.link(a.ifindex))
    }
}

/// An address a peer can use: global unicast or link-local, not still in (or failed) duplicate
/// address detection. Global addresses rank before link-local ones; otherwise kernel order.
fn usable(a: &Addr) -> bool {
    if a.tentative || a.dadfailed {
        return false;
    }
    match a.addr.addr() {
        IpAddr::V4(ip) => {
            !(ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() || ip.is_broadcast())
        }
        IpAddr::V6(ip) => !(ip.is_loopback() || ip.is_multicast() || ip.is_unspecified()),
    }
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => ip.segments()[0] & 0xffc0 == 0xfe80,
    }
}

pub fn first_usable_v4(addrs: &[Addr], index: u32) -> Option<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = addrs
        .iter()
        .filter(|a| a.ifindex == index && usable(a))
        .filter_map(|a| match a.addr.addr() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect();
    found.sort_by_key(|ip| link_local(IpAddr::V4(*ip)));
    found.first().copied()
}

pub fn first_usable_v6(addrs: &[Addr], index: u32) -> Option<Ipv6Addr> {
    let mut found: Vec<Ipv6Addr> = addrs
        .iter()
        .filter(|a| a.ifindex == index && usable(a))
        .filter_map(|a| match a.addr.addr() {
            IpAddr::V6(ip) => Some(ip),
            IpAddr::V4(_) => None,
        })
        .collect();
    found.sort_by_key(|ip| link_local(IpAddr::V6(*ip)));
    found.first().copied()
}

/// A chosen link, with the address that selected it when selection was by address.
struct Choice {
    index: u32,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

/// Selection over an [`Inventory`]; `route_get` answers `--iface-can-reach`.
pub fn select(
    inv: &Inventory,
    req: &IfaceRequest,
    route_get: impl FnOnce(IpAddr) -> Result<(Option<u32>, Option<IpAddr>), NetlinkError>,
) -> Result<ExternalInterface, IfaceError> {
    let regexes = req
        .regexes
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|source| IfaceError::Regex {
                pattern: p.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let explicit = !req.ifaces.is_empty() || !regexes.is_empty() || req.can_reach.is_some();
    let choice = if explicit {
        by_request(inv, req, &regexes, route_get)?
    } else {
        by_default(inv, req)?
    };
    let link = inv.link(choice.index).ok_or(IfaceError::NoMatch)?;
    if link.mtu == 0 {
        return Err(IfaceError::ZeroMtu(link.name.clone()));
    }
    let no_addr = |family| IfaceError::NoAddress {
        name: link.name.clone(),
        family,
    };
    let iface_addr = if req.ipv4 {
        choice
            .v4
            .or_else(|| first_usable_v4(&inv.addrs, link.index))
            .ok_or_else(|| no_addr("IPv4"))?
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let iface_v6_addr = if req.ipv6 {
        Some(
            choice
                .v6
                .or_else(|| first_usable_v6(&inv.addrs, link.index))
                .ok_or_else(|| no_addr("IPv6"))?,
        )
    } else {
        None
    };
    log::info!(
        "Using interface with name {} and address {}",
        link.name,
        iface_addr
    );
    let ext_addr = match req.public_ip {
        Some(ip) => {
            log::info!("Using {ip} as external address");
            ip
        }
        None => {
            log::info!("Defaulting external address to interface address ({iface_addr})");
            iface_addr
        }
    };
    let ext_v6_addr = if req.ipv6 {
        req.public_ipv6.or(iface_v6_addr)
    } else {
        None
    };
    Ok(ExternalInterface {
        name: link.name.clone(),
        index: link.index,
        mtu: link.mtu,
        iface_addr,
        ext_addr,
        iface_v6_addr,
        ext_v6_addr,
    })
}

fn by_default(inv: &Inventory, req: &IfaceRequest) -> Result<Choice, IfaceError> {
    if let Some(ip) = req.public_ip.filter(|_| req.ipv4) {
        let link = inv
            .link_with_ip(IpAddr::V4(ip))
            .ok_or_else(|| IfaceError::NoDefault(format!("no interface has the public IP {ip}")))?;
        return Ok(Choice {
            index: link.index,
            v4: Some(ip),
            v6: req.public_ipv6,
        });
    }
    if let Some(ip) = req.public_ipv6.filter(|_| req.ipv6) {
        let link = inv.link_with_ip(IpAddr::V6(ip)).ok_or_else(|| {
            IfaceError::NoDefault(format!("no interface has the public IPv6 {ip}"))
        })?;
        return Ok(Choice {
            index: link.index,
            v4: None,
            v6: Some(ip),
        });
    }
    let index = match (req.ipv4, req.ipv6) {
        (true, true) => match (inv.default_v4, inv.default_v6) {
            (Some(a), Some(b)) if a == b => a,
            (Some(_), Some(_)) => {
                return Err(IfaceError::NoDefault(
                    "IPv4 and IPv6 default routes use different interfaces".into(),
                ))
            }
            _ => {
                return Err(IfaceError::NoDefault(
                    "dual-stack needs both an IPv4 and an IPv6 default route".into(),
                ))
            }
        },
        (false, true) => inv
            .default_v6
            .ok_or_else(|| IfaceError::NoDefault("no IPv6 default route".into()))?,
        _ => inv
            .default_v4
            .ok_or_else(|| IfaceError::NoDefault("no default route".into()))?,
    };
    Ok(Choice {
        index,
        v4: None,
        v6: None,
    })
}

fn by_request(
    inv: &Inventory,
    req: &IfaceRequest,
    regexes: &[Regex],
    route_get: impl FnOnce(IpAddr) -> Result<(Option<u32>, Option<IpAddr>), NetlinkError>,
) -> Result<Choice, IfaceError> {
    for wanted in &req.ifaces {
        if let Ok(ip) = wanted.parse::<IpAddr>() {
            match inv.link_with_ip(ip) {
                Some(link) => {
                    let (v4, v6) = match ip {
                        IpAddr::V4(a) => (Some(a), req.public_ipv6),
                        IpAddr::V6(a) => (None, Some(a)),
                    };
                    return Ok(Choice {
                        index: link.index,
                        v4,
                        v6,
                    });
                }
                None => log::error!("No interface has the address {ip}, trying the next option"),
            }
        } else {
            match inv.links.iter().find(|l| l.name == *wanted) {
                Some(link) => {
                    return Ok(Choice {
                        index: link.index,
                        v4: None,
                        v6: None,
                    })
                }
                None => log::error!("No interface named {wanted}, trying the next option"),
            }
        }
    }
    for re in regexes {
        let by_ip = inv.addrs.iter().find(|a| {
            let family_on = if a.addr.addr().is_ipv4() {
                req.ipv4
            } else {
                req.ipv6
            };
            family_on && usable(a) && re.is_match(&a.addr.addr().to_string())
        });
        if let Some(a) = by_ip {
            let (v4, v6) = match a.addr.addr() {
                IpAddr::V4(ip) => (Some(ip), None),
                IpAddr::V6(ip) => (None, Some(ip)),
            };
            log::info!(
                "Interface address {} matches regex {}",
                a.addr.addr(),
                re.as_str()
            );
            return Ok(Choice {
                index: a.ifindex,
                v4,
                v6,
            });
        }
        if let Some(link) = inv.links.iter().find(|l| re.is_match(&l.name)) {
            log::info!("Interface name {} matches regex {}", link.name, re.as_str());
            return Ok(Choice {
                index: link.index,
                v4: None,
                v6: None,
            });
        }
    }
    if let Some(target) = req.can_reach {
        match route_get(target) {
            Ok((Some(index), src)) => {
                let (v4, v6) = match src {
                    Some(IpAddr::V4(ip)) => (Some(ip), None),
                    Some(IpAddr::V6(ip)) => (None, Some(ip)),
                    None => (None, None),
                };
                return Ok(Choice { index, v4, v6 });
            }
            Ok((None, _)) => log::error!("The route to {target} names no interface"),
            Err(e) => log::error!("No route to {target}: {e}"),
        }
    }
    Err(IfaceError::NoMatch)
}

/// The external interface re-read: [`refresh`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub ext: ExternalInterface,
    /// A family the interface has no usable address of any more (its old one is kept).
    pub missing: Option<&'static str>,
}

/// The interface `ext` as it is now. Each family's address stays while the interface still
/// has it usable (selection may have picked it by value: `--iface=<IP>`, a regex, the route
/// to `--iface-can-reach`), else becomes the first usable one, as at start; with none left
/// it stays as it was. The published address follows unless `--public-ip(v6)` (or kube's
/// `node-public-ip(v6)`) pins it.
pub fn refresh(
    h: &mut Handle,
    ext: &ExternalInterface,
    req: &IfaceRequest,
) -> Result<Refreshed, IfaceError> {
    Ok(refresh_from(&h.addr_list(Some(ext.index), None)?, ext, req))
}

/// [`refresh`] over the interface's addresses `addrs`.
pub fn refresh_from(addrs: &[Addr], ext: &ExternalInterface, req: &IfaceRequest) -> Refreshed {
    let still = |ip: IpAddr| addrs.iter().any(|a| a.addr.addr() == ip && usable(a));
    let mut next = ext.clone();
    let mut missing = None;
    if req.ipv4 {
        if !still(ext.iface_addr.into()) {
            match first_usable_v4(addrs, ext.index) {
                Some(ip) => next.iface_addr = ip,
                None => missing = Some("IPv4"),
            }
        }
        next.ext_addr = req.public_ip.unwrap_or(next.iface_addr);
    }
    if req.ipv6 {
        if !ext.iface_v6_addr.is_some_and(|ip| still(ip.into())) {
            match first_usable_v6(addrs, ext.index) {
                Some(ip) => next.iface_v6_addr = Some(ip),
                None => missing = missing.or(Some("IPv6")),
            }
        }
        next.ext_v6_addr = req.public_ipv6.or(next.iface_v6_addr);
    }
    Refreshed { ext: next, missing }
}

/// Reads the kernel's state through `h` and selects.
pub fn select_external(
    h: &mut Handle,
    req: &IfaceRequest,
) -> Result<ExternalInterface, IfaceError> {
    let inv = Inventory::read(h)?;
    select(&inv, req, |ip| {
        let r = h.route_get(ip)?;
        Ok((r.oif, r.prefsrc))
    })
}

#[cfg(test)]
#[path = "iface_tests.rs"]
mod tests;

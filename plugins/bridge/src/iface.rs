//! Configuring the container end: sysctls, addresses, link state and routes (upstream's
//! container sysctls + `ipam.ConfigureIface`).
//!
//! Netlink goes through a socket bound to the container namespace; only sysctls, which the
//! kernel resolves per thread, need the thread inside the namespace, and only briefly.

use std::fs::File;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use netconf::CniResult;
use netops::netlink::{Addr, Handle, Request, RouteSpec};
use netops::netns::NetnsGuard;
use netops::sysctl;
use netops::Family;

use crate::error::BridgeError;

/// How long to wait for IPv6 duplicate address detection before routing via a v6 gateway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// Duplicate address detection and gratuitous ARP on address changes, set before any
/// address exists. Failures are ignored as upstream does: the keys are missing when IPv6 is
/// disabled in the container, which must not fail an IPv4 ADD.
pub fn container_sysctls(
    cont_ns: &File,
    ifname: &str,
    enable_dad: bool,
) -> Result<(), BridgeError> {
    let _in = NetnsGuard::enter(cont_ns)?;
    if enable_dad {
        let _ = sysctl::set(&format!("net/ipv6/conf/{ifname}/enhanced_dad"), "1");
        let _ = sysctl::set(&format!("net/ipv6/conf/{ifname}/accept_dad"), "1");
    } else {
        let _ = sysctl::set(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0");
    }
    let _ = sysctl::set(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1");
    Ok(())
}

/// IPv6 addresses can only be added where IPv6 is enabled; runtimes often disable it.
fn enable_ipv6(cont_ns: &File, ifname: &str) -> Result<(), BridgeError> {
    let _in = NetnsGuard::enter(cont_ns)?;
    for iface in ["lo", ifname] {
        let key = format!("net/ipv6/conf/{iface}/disable_ipv6");
        let value = match sysctl::get(&key) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("bridge: failed to read sysctl {key:?}: {e}");
                continue;
            }
        };
        if value == "0" {
            continue;
        }
        sysctl::set(&key, "0").map_err(|source| BridgeError::EnableIpv6 {
            iface: iface.to_string(),
            setting: format!("{key}={value}"),
            source: Box::new(source),
        })?;
    }
    // Addresses must survive the link going down and up again (a runtime toggling it).
    let _ = sysctl::set(&format!("net/ipv6/conf/{ifname}/keep_addr_on_down"), "1");
    Ok(())
}

/// Adds the result's addresses to `ifname`, brings it up and installs the result's routes.
/// A route without a gateway goes via the first gateway of its family, as upstream.
pub fn configure(
    cont: &mut Handle,
    cont_ns: &File,
    ifname: &str,
    ifindex: u32,
    result: &CniResult,
) -> Result<(), BridgeError> {
    let mut v4gw: Option<IpAddr> = None;
    let mut v6gw: Option<IpAddr> = None;
    let mut ipv6_enabled = false;
    for ip in &result.ips {
        let Some(idx) = ip.interface else { continue };
        if result.interfaces.get(idx).map(|i| i.name.as_str()) != Some(ifname) {
            return Err(BridgeError::InvalidInterfaceIndex {
                addr: ip.address.to_string(),
                ifname: ifname.to_string(),
            });
        }
        if !ipv6_enabled && ip.address.addr().is_ipv6() {
            enable_ipv6(cont_ns, ifname)?;
            ipv6_enabled = true;
        }
        // Not the idempotent `add_addr`: an address already present means the interface
        // is not ours to configure, and upstream's AddrAdd fails the same way.
        cont.execute(&Request::addr_add(&Addr::new(ifindex, ip.address)))
            .map_err(BridgeError::netlink(format!(
                "failed to add IP addr {} to {ifname:?}",
                ip.address
            )))?;
        match ip.gateway {
            Some(gw @ IpAddr::V4(_)) => {
                v4gw.get_or_insert(gw);
            }
            Some(gw @ IpAddr::V6(_)) => {
                v6gw.get_or_insert(gw);
            }
            None => {}
        }
    }
    cont.set_link_up(ifindex)
        .map_err(BridgeError::netlink(format!("failed to set {ifname:?} UP")))?;
    if v6gw.is_some() {
        settle_v6(cont, ifindex, ifname);
    }
    let mut installed: Vec<RouteSpec> = Vec::new();
    for r in &result.routes {
        let gw = r.gw.or(if r.dst.addr().is_ipv4() { v4gw } else { v6gw });
        let mut spec = RouteSpec::new(r.dst.trunc()).dev(ifindex);
        spec.gw = gw;
        spec.priority = r.priority;
        spec.scope = r.scope;
        if let Some(t) = r.table {
            spec.table = t;
        }
        match cont.add_route(&spec) {
            Ok(()) => installed.push(spec),
            // Upstream fails here with "file exists" when the result lists the same route
            // twice (isDefaultGateway plus an IPAM default route without gw, cni.md §7.12);
            // the kernel already holds exactly this route, so the ADD can go on.
            Err(e) if e.is_exists() && installed.contains(&spec) => {}
            Err(source) => {
                let via = gw.map_or_else(|| "<nil>".to_string(), |g| g.to_string());
                return Err(BridgeError::Netlink {
                    context: format!("failed to add route '{} via {via} dev {ifname}'", r.dst),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Waits (bounded) until no IPv6 address of the link is tentative, so the first packets via
/// a v6 gateway are not dropped. Like upstream, a timeout is not an error; it is logged.
fn settle_v6(cont: &mut Handle, ifindex: u32, ifname: &str) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let addrs = match cont.addr_list(Some(ifindex), Some(Family::V6)) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("bridge: cannot list addresses of {ifname}: {e}");
                return;
            }
        };
        if addrs.iter().all(|a| !a.tentative && !a.dadfailed) {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "bridge: link {ifname} still has tentative addresses after {} seconds",
                SETTLE_TIMEOUT.as_secs()
            );
            return;
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// Brings the container interface up without addresses (L2-only mode).
pub fn link_up(cont: &mut Handle, ifindex: u32, ifname: &str) -> Result<(), BridgeError> {
    cont.set_link_up(ifindex)
        .map_err(BridgeError::netlink(format!("failed to set {ifname:?} up")))
}

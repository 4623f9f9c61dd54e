//! Host-side bridge work: creating the bridge, enslaving ports with their flags and VLANs,
//! and the gateway address.

use std::fs::File;
use std::io::Read;

use ipnet::IpNet;
use netops::netlink::{Addr, BridgeSpec, Handle, LinkInfo, LinkKind, MacAddr};
use netops::sysctl;
use netops::Family;

use crate::config::BridgeConf;
use crate::error::{cause, BridgeError};
use crate::veth;
use crate::vlan;

/// A random locally administered unicast MAC, as the kernel picks for a new bridge.
fn random_mac() -> Result<MacAddr, std::io::Error> {
    let mut b = [0u8; 6];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[0] = (b[0] & 0xfe) | 0x02;
    Ok(MacAddr(b))
}

/// Creates the bridge unless it exists (an existing bridge is not reconfigured, as upstream),
/// applies promiscuous mode, turns off router advertisements on it and brings it up.
///
/// A bridge we create gets its MAC at creation. Without one the kernel gives it the lowest
/// MAC of its ports and moves it as ports come and go, so the MAC in an earlier pod's result
/// goes stale and CHECK fails (upstream's bug on L2 bridges, which never get an address that
/// would pin the MAC).
pub fn ensure(h: &mut Handle, conf: &BridgeConf) -> Result<LinkInfo, BridgeError> {
    let name = conf.bridge.as_str();
    let failed = |reason: String| BridgeError::CreateBridge {
        name: name.to_string(),
        reason,
    };
    let mac = random_mac().map_err(|e| failed(format!("could not pick a MAC: {e}")))?;
    let spec = BridgeSpec {
        name: name.to_string(),
        mtu: conf.mtu,
        vlan_filtering: conf.vlan_filtering().then_some(true),
        mac: Some(mac),
    };
    h.add_bridge(&spec)
        .map_err(|e| failed(format!("could not add {name:?}: {}", cause(&e))))?;
    let br = lookup_bridge(h, name).map_err(failed)?;
    if conf.promisc_mode {
        h.set_promisc(br.index, true).map_err(|e| {
            failed(format!(
                "could not set promiscuous mode on {name:?}: {}",
                cause(&e)
            ))
        })?;
    }
    // We own this bridge's addresses and routes; a router advertisement must not add any.
    let _ = sysctl::set(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
    h.set_link_up(br.index).map_err(|e| failed(cause(&e)))?;
    Ok(br)
}

/// Whether the kernel chooses `br`'s MAC (it follows the lowest MAC of the bridge's ports, as
/// for a bridge upstream's plugin made) rather than it having been set (ours, or by hand).
/// Read from sysfs, checked against the index so that a sysfs of another namespace is never
/// believed; when in doubt, "set".
fn mac_follows_ports(br: &LinkInfo) -> bool {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{}/{f}", br.name));
    let same_link = read("ifindex").is_ok_and(|i| i.trim() == br.index.to_string());
    // NET_ADDR_SET (3) is a MAC someone assigned; the others (0 permanent, 1 random,
    // 2 stolen) are the kernel's to change.
    same_link && read("addr_assign_type").is_ok_and(|t| t.trim() != "3")
}

/// Whether a bridge MAC that differs from the one recorded at ADD was moved by the kernel:
/// the bridge's MAC follows its ports and is now the lowest of them.
pub fn mac_moved_by_kernel(h: &mut Handle, br: &LinkInfo) -> Result<bool, BridgeError> {
    if !mac_follows_ports(br) {
        return Ok(false);
    }
    let lowest = h
        .link_list()
        .map_err(BridgeError::netlink("failed to list links"))?
        .into_iter()
        .filter(|l| l.master == Some(br.index))
        .filter_map(|l| l.mac)
        .min();
    Ok(lowest.is_some() && lowest == br.mac)
}

/// The bridge called `name`, or upstream's error text when it is missing or not a bridge.
pub fn lookup_bridge(h: &mut Handle, name: &str) -> Result<LinkInfo, String> {
    match h.link_by_name(name) {
        Ok(Some(l)) if l.kind == Some(LinkKind::Bridge) => Ok(l),
        Ok(Some(_)) => Err(format!("{name:?} already exists but is not a bridge")),
        Ok(None) => Err(format!("could not lookup {name:?}: Link not found")),
        Err(e) => Err(format!("could not lookup {name:?}: {}", cause(&e))),
    }
}

/// Port settings for one host-side veth.
#[derive(Debug, Clone, Copy)]
pub struct PortSettings<'a> {
    pub hairpin: bool,
    pub isolated: bool,
    pub vlan: u16,
    pub trunk: &'a [u16],
    pub preserve_default_vlan: bool,
}

/// Enslaves `port` to `br` and applies hairpin, isolation and VLANs. Hairpin and isolation
/// are always written, so a recycled port never keeps a previous setting.
pub fn attach_port(
    h: &mut Handle,
    br: &LinkInfo,
    port: &LinkInfo,
    s: PortSettings<'_>,
) -> Result<(), BridgeError> {
    let name = &port.name;
    h.set_master(port.index, Some(br.index))
        .map_err(BridgeError::netlink(format!(
            "failed to connect {name:?} to bridge {}",
            br.name
        )))?;
    h.set_hairpin(port.index, s.hairpin)
        .map_err(BridgeError::netlink(format!(
            "failed to setup hairpin mode for {name}"
        )))?;
    h.set_isolated(port.index, s.isolated)
        .map_err(BridgeError::netlink(format!(
            "failed to set isolated on {name}"
        )))?;
    if s.vlan == 0 && s.trunk.is_empty() {
        return Ok(());
    }
    vlan::configure_port(h, port, s.vlan, s.trunk, s.preserve_default_vlan)
}

/// Puts gateway address `gw` on `iface` (the bridge, or its VLAN gateway port).
///
/// The same address is fine. Any other IPv4 address, or an IPv6 address whose prefix
/// overlaps, is a conflict: replaced with `force`, an error otherwise. The bridge MAC is then
/// pinned to its current value, so it no longer follows the lowest port MAC as ports churn.
pub fn ensure_addr(
    h: &mut Handle,
    iface: &LinkInfo,
    gw: IpNet,
    force: bool,
) -> Result<(), BridgeError> {
    let family = Family::of(&gw.addr());
    let existing = h
        .addr_list(Some(iface.index), Some(family))
        .map_err(BridgeError::netlink("could not get list of IP addresses"))?;
    for a in existing {
        if a.addr == gw {
            return Ok(());
        }
        let conflicts =
            family == Family::V4 || a.addr.contains(&gw.addr()) || gw.contains(&a.addr.addr());
        if !conflicts {
            continue;
        }
        if !force {
            return Err(BridgeError::AddrConflict {
                bridge: iface.name.clone(),
                addr: gw.to_string(),
            });
        }
        h.del_addr(&a).map_err(BridgeError::netlink(format!(
            "could not remove IP address from {:?}",
            iface.name
        )))?;
    }
    h.add_addr(&Addr::new(iface.index, gw))
        .map_err(BridgeError::netlink(format!(
            "could not add IP address to {:?}",
            iface.name
        )))?;
    if let Some(mac) = h
        .link_by_index(iface.index)
        .map_err(BridgeError::netlink("could not set bridge's mac"))?
        .and_then(|l| l.mac)
    {
        h.set_mac(iface.index, mac)
            .map_err(BridgeError::netlink("could not set bridge's mac"))?;
    }
    Ok(())
}

/// Turns on forwarding for `family` (read first: writing `forwarding` resets per-interface
/// settings even when the value does not change).
pub fn enable_forwarding(family: Family) -> Result<(), BridgeError> {
    let key = match family {
        Family::V4 => "net/ipv4/ip_forward",
        Family::V6 => "net/ipv6/conf/all/forwarding",
    };
    sysctl::set(key, "1")
        .map(drop)
        .map_err(|e| BridgeError::Forwarding(Box::new(e)))
}

/// With an access VLAN the gateway address cannot sit on the bridge itself (the bridge
/// device is not a member of that VLAN); upstream instead adds a veth pair in the host
/// namespace, `<bridge>.<vlan>` on one end and a port in the VLAN on the other, and puts
/// the gateway on `<bridge>.<vlan>`. An existing one is reused.
pub fn ensure_vlan_gateway(
    h: &mut Handle,
    host_ns: &File,
    br: &LinkInfo,
    vlan: u16,
    preserve_default_vlan: bool,
) -> Result<LinkInfo, BridgeError> {
    let name = format!("{}.{vlan}", br.name);
    let lookup = |h: &mut Handle| {
        h.link_by_name(&name).map_err(BridgeError::netlink(format!(
            "failed to find interface {name:?}"
        )))
    };
    if let Some(existing) = lookup(h)? {
        return Ok(existing);
    }
    let failed = |e: BridgeError| {
        BridgeError::Failed(format!("failed to create vlan gateway {name:?}: {e}"))
    };
    // Both ends live in the host namespace; the pair is created through a second socket
    // there, exactly as a container pair is created through the container's socket.
    let mut same_ns =
        Handle::new().map_err(BridgeError::netlink("failed to open netlink socket"))?;
    let pair = veth::create(h, &mut same_ns, host_ns, &name, Some(br.mtu), None).map_err(failed)?;
    let settings = PortSettings {
        hairpin: false,
        isolated: false,
        vlan,
        trunk: &[],
        preserve_default_vlan,
    };
    attach_port(h, br, &pair.host, settings).map_err(failed)?;
    h.set_link_up(pair.container.index)
        .map_err(BridgeError::netlink(format!("failed to set {name:?} up")))?;
    lookup(h)?.ok_or_else(|| BridgeError::Failed(format!("failed to find interface {name:?}")))
}

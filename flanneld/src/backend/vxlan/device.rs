//! The VTEP device (`flannel.<VNI>`, `flannel-v6.<VNI>`): create or reuse it, address it,
//! bring it up.

use std::net::IpAddr;

use ipnet::IpNet;
use netops::netlink::{Addr, Family, Handle, LinkInfo, LinkKind, MacAddr, VxlanSpec};

use crate::backend::BackendError;

/// What the device must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeviceConfig {
    pub name: String,
    pub vni: u32,
    /// 0: the kernel default (8472).
    pub port: u16,
    pub learning: bool,
    pub gbp: bool,
    pub mtu: u32,
    pub underlay: u32,
    pub local: IpAddr,
    /// Used when the device has to be created; an existing device keeps its MAC.
    pub mac: Option<MacAddr>,
    /// `DisableTxChecksumOffload`: turn `tx-checksum-ip-generic` off on the device.
    pub no_tx_checksum: bool,
}

/// The feature upstream's troubleshooting guide turns off with `ethtool -K`.
const TX_CHECKSUM: &str = "tx-checksum-ip-generic";

/// Applies `DisableTxChecksumOffload` to a device just created or adopted. Left alone when
/// the option is off, as upstream does (a udev rule may be managing it).
fn apply_offloads(cfg: &DeviceConfig) -> Result<(), BackendError> {
    if !cfg.no_tx_checksum {
        return Ok(());
    }
    let fail = |e: netops::ethtool::EthtoolError| BackendError::Device {
        name: cfg.name.clone(),
        reason: format!("DisableTxChecksumOffload: {e}"),
    };
    let changed = netops::ethtool::Ethtool::open()
        .and_then(|et| et.set_feature(&cfg.name, TX_CHECKSUM, false))
        .map_err(fail)?;
    if changed {
        log::info!(
            "turned {TX_CHECKSUM} off on {:?} (DisableTxChecksumOffload)",
            cfg.name
        );
    }
    Ok(())
}

/// A device as created or found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Vtep {
    pub index: u32,
    pub mac: MacAddr,
}

/// A random locally administered unicast MAC, the kind upstream generates. From the OS's
/// entropy, not fastrand: fastrand seeds each thread from the clock and the thread's number, and
/// two nodes started together (seen in the test bed) published the same VTEP MAC, which breaks
/// both nodes' ARP and FDB entries on every peer.
pub(super) fn random_mac() -> MacAddr {
    let mut b = [0u8; 6];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source at all (never seen on Linux ≥ 3.17): fall back rather than fail.
        b.iter_mut().for_each(|x| *x = fastrand::u8(..));
    }
    b[0] = (b[0] & 0xfe) | 0x02;
    MacAddr(b)
}

/// Why an existing link cannot serve as the device. Attributes the kernel reports as unset
/// (or that we leave to the kernel default) are not compared, as upstream does, so a device
/// created by upstream flannel is reused as is.
fn incompatibility(link: &LinkInfo, cfg: &DeviceConfig) -> Option<String> {
    if link.kind != Some(LinkKind::Vxlan) {
        return Some(format!("link kind is {:?}, not vxlan", link.kind));
    }
    let Some(v) = &link.vxlan else {
        return Some("the kernel reports no vxlan attributes".into());
    };
    if v.vni != cfg.vni {
        return Some(format!("VNI {} differs from {}", v.vni, cfg.vni));
    }
    if let Some(dev) = v.underlay.filter(|d| *d != cfg.underlay) {
        return Some(format!("underlay link {dev} differs from {}", cfg.underlay));
    }
    if let Some(local) = v.local.filter(|l| !l.is_unspecified() && *l != cfg.local) {
        return Some(format!("local address {local} differs from {}", cfg.local));
    }
    if let Some(port) = v
        .port
        .filter(|p| *p != 0 && cfg.port != 0 && *p != cfg.port)
    {
        return Some(format!("port {port} differs from {}", cfg.port));
    }
    if v.gbp != cfg.gbp {
        return Some(format!("GBP {} differs from {}", v.gbp, cfg.gbp));
    }
    if v.learning != cfg.learning {
        return Some(format!(
            "learning {} differs from {}",
            v.learning, cfg.learning
        ));
    }
    if v.l2miss || v.l3miss {
        return Some("L2/L3 miss notifications are on".into());
    }
    None
}

/// Creates the device, or reuses a compatible existing one (keeping its MAC, which peers may
/// already have in their tables); an incompatible one is deleted and re-created.
pub(super) fn ensure(nl: &mut Handle, cfg: &DeviceConfig) -> Result<Vtep, BackendError> {
    if let Some(link) = nl.link_by_name(&cfg.name)? {
        match incompatibility(&link, cfg) {
            None => return reuse(nl, &link, cfg),
            Some(reason) => {
                log::warn!(
                    "{:?} already exists with incompatible configuration: {reason}; recreating device",
                    cfg.name
                );
                nl.delete_link(link.index)?;
            }
        }
    }
    create(nl, cfg)
}

fn reuse(nl: &mut Handle, link: &LinkInfo, cfg: &DeviceConfig) -> Result<Vtep, BackendError> {
    if link.mtu != cfg.mtu {
        nl.set_mtu(link.index, cfg.mtu)?;
    }
    let mac = match link.mac {
        Some(mac) => mac,
        None => {
            let mac = cfg.mac.unwrap_or_else(random_mac);
            nl.set_mac(link.index, mac)?;
            mac
        }
    };
    log::info!("reusing existing VXLAN device {:?} (MAC {mac})", cfg.name);
    apply_offloads(cfg)?;
    Ok(Vtep {
        index: link.index,
        mac,
    })
}

fn create(nl: &mut Handle, cfg: &DeviceConfig) -> Result<Vtep, BackendError> {
    let mac = cfg.mac.unwrap_or_else(random_mac);
    let spec = VxlanSpec {
        name: cfg.name.clone(),
        vni: cfg.vni,
        underlay: Some(cfg.underlay),
        local: Some(cfg.local),
        port: (cfg.port != 0).then_some(cfg.port),
        learning: cfg.learning,
        gbp: cfg.gbp,
        mtu: Some(cfg.mtu),
        mac: Some(mac),
    };
    let created = nl.add_vxlan(&spec)?;
    let fail = |reason: &str| BackendError::Device {
        name: cfg.name.clone(),
        reason: reason.to_string(),
    };
    // The kernel answers EEXIST both for a name that appeared meanwhile and for another
    // device already using this VNI and port; only the lookup tells them apart.
    let link = match nl.link_by_name(&cfg.name)? {
        Some(link) if created || incompatibility(&link, cfg).is_none() => link,
        Some(_) => {
            return Err(fail(
                "an incompatible link with that name appeared concurrently",
            ))
        }
        None => {
            return Err(fail(&format!(
                "another VXLAN device already uses VNI {} on this port",
                cfg.vni
            )))
        }
    };
    log::info!("created VXLAN device {:?} (MAC {mac})", cfg.name);
    disable_accept_ra(&cfg.name);
    apply_offloads(cfg)?;
    Ok(Vtep {
        index: link.index,
        mac,
    })
}

/// A VTEP must not pick up addresses or routes from router advertisements. Best effort, like
/// upstream: the key is absent when IPv6 is disabled, and then there is nothing to accept.
pub(super) fn disable_accept_ra(name: &str) {
    let key = format!("net/ipv6/conf/{name}/accept_ra");
    match netops::sysctl::set(&key, "0") {
        Ok(_) => {}
        // An unprivileged container (the kube-flannel DaemonSet, as upstream's) sees
        // /proc/sys read-only; upstream ignores this failure altogether.
        Err(netops::sysctl::SysctlError::Write { ref source, .. })
            if source.raw_os_error() == Some(libc::EROFS) =>
        {
            log::debug!("{key} left as it is: /proc/sys is read-only in this container")
        }
        Err(e) => log::warn!("{e}"),
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Gives the device exactly one address out of `network` (`want`), leaving unrelated ones
/// (#1060: DHCP or APIPA addresses on flannel.1 must not make flannel fail), restores the MAC
/// peers know if something (udev's MACAddressPolicy) changed it, and brings the link up.
pub(super) fn configure(
    nl: &mut Handle,
    name: &str,
    vtep: &Vtep,
    want: IpNet,
    network: IpNet,
) -> Result<(), BackendError> {
    let family = Family::of(&want.addr());
    let mut present = false;
    for a in nl.addr_list(Some(vtep.index), Some(family))? {
        if a.addr == want {
            present = true;
            continue;
        }
        let ours = match family {
            Family::V4 => network.contains(&a.addr.addr()),
            Family::V6 => !is_link_local(&a.addr.addr()),
        };
        if ours {
            log::info!("removing address {} from {name:?}", a.addr);
            nl.del_addr(&a)?;
        }
    }
    if !present {
        nl.add_addr(&Addr::new(vtep.index, want))?;
    }
    let link = nl
        .link_by_index(vtep.index)?
        .ok_or_else(|| BackendError::Device {
            name: name.to_string(),
            reason: "the device vanished while being configured".into(),
        })?;
    if link.mac != Some(vtep.mac) {
        log::warn!(
            "{name:?} has MAC {:?} instead of the published {}; restoring it",
            link.mac,
            vtep.mac
        );
        nl.set_mac(vtep.index, vtep.mac)?;
    }
    if !link.up {
        nl.set_link_up(vtep.index)?;
    }
    Ok(())
}

/// Whether the device is still the one we configured (not deleted, not replaced by another
/// link of the same name).
pub(super) fn alive(nl: &mut Handle, name: &str, vtep: &Vtep) -> Result<bool, BackendError> {
    Ok(nl
        .link_by_index(vtep.index)?
        .is_some_and(|l| l.name == name && l.kind == Some(LinkKind::Vxlan)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netops::netlink::VxlanInfo;

    fn cfg() -> DeviceConfig {
        DeviceConfig {
            name: "flannel.1".into(),
            vni: 1,
            port: 0,
            learning: false,
            gbp: false,
            mtu: 1450,
            underlay: 2,
            local: "192.168.1.11".parse().unwrap(),
            mac: None,
            no_tx_checksum: false,
        }
    }

    fn link(v: VxlanInfo) -> LinkInfo {
        LinkInfo {
            index: 9,
            name: "flannel.1".into(),
            kind: Some(LinkKind::Vxlan),
            mac: None,
            mtu: 1450,
            up: true,
            promisc: false,
            oper_state: netops::netlink::OperState::Unknown,
            master: None,
            link: None,
            link_netnsid: None,
            vlan_filtering: None,
            vxlan: Some(v),
        }
    }

    fn kernel_view() -> VxlanInfo {
        VxlanInfo {
            vni: 1,
            underlay: Some(2),
            local: Some("192.168.1.11".parse().unwrap()),
            port: Some(8472),
            ..VxlanInfo::default()
        }
    }

    #[test]
    fn same_device_as_the_kernel_reports_it_is_compatible() {
        assert_eq!(incompatibility(&link(kernel_view()), &cfg()), None);
        // Attributes the kernel leaves unset are not held against the device.
        let sparse = VxlanInfo {
            vni: 1,
            ..VxlanInfo::default()
        };
        assert_eq!(incompatibility(&link(sparse), &cfg()), None);
    }

    #[test]
    fn each_differing_attribute_is_named() {
        type Mutation = fn(&mut VxlanInfo);
        let cases: Vec<(Mutation, &str)> = vec![
            (|v| v.vni = 2, "VNI 2 differs from 1"),
            (|v| v.underlay = Some(3), "underlay link 3"),
            (
                |v| v.local = Some("10.0.0.1".parse().unwrap()),
                "local address 10.0.0.1",
            ),
            (|v| v.gbp = true, "GBP true"),
            (|v| v.learning = true, "learning true"),
            (|v| v.l2miss = true, "miss"),
        ];
        for (mutate, text) in cases {
            let mut v = kernel_view();
            mutate(&mut v);
            let reason = incompatibility(&link(v), &cfg()).expect(text);
            assert!(reason.contains(text), "{reason:?} lacks {text:?}");
        }
        let mut other_port = cfg();
        other_port.port = 4789;
        assert!(incompatibility(&link(kernel_view()), &other_port)
            .unwrap()
            .contains("port 8472 differs from 4789"));
        let mut bridge = link(kernel_view());
        bridge.kind = Some(LinkKind::Bridge);
        assert!(incompatibility(&bridge, &cfg())
            .unwrap()
            .contains("not vxlan"));
    }

    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let macs: Vec<MacAddr> = (0..64).map(|_| random_mac()).collect();
        for m in &macs {
            assert_eq!(m.0[0] & 0x01, 0, "{m} is multicast");
            assert_eq!(m.0[0] & 0x02, 0x02, "{m} is not locally administered");
        }
        let distinct: std::collections::HashSet<_> = macs.iter().collect();
        assert!(distinct.len() > 60);
    }
}

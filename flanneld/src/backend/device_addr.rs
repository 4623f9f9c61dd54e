//! The kernel state of a device that carries the whole flannel network (udp's `flannel0`,
//! WireGuard's `flannel-wg`): the lease's subnet address as a host address, the link up, and
//! one route for the network through it. Idempotent: reports how much it had to change.

use ipnet::IpNet;
use netops::netlink::{Addr, Family, Handle, RouteSpec};

use super::BackendError;

/// `RT_SCOPE_LINK`, as upstream's WireGuard backend routes the network.
pub(crate) const SCOPE_LINK: u8 = 253;

/// One address family's part: `host` (the lease's subnet address with a /32 or /128) on the
/// device, and a route for `network` through it with `scope` (`None`: universe).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FamilyAddr {
    pub host: IpNet,
    pub network: IpNet,
    pub scope: Option<u8>,
}

/// Makes the device at `index` hold exactly our address within each network (addresses a
/// previous lease left are removed, others kept, as upstream's `EnsureV4AddressOnLink`),
/// brings it up and routes each network through it. Returns how many changes were made.
pub(crate) fn ensure(
    nl: &mut Handle,
    index: u32,
    families: &[FamilyAddr],
) -> Result<usize, BackendError> {
    let mut changed = 0;
    for f in families {
        let family = Family::of(&f.host.addr());
        for a in nl.addr_list(Some(index), Some(family))? {
            if a.addr != f.host && f.network.contains(&a.addr.addr()) {
                changed += usize::from(nl.del_addr(&a)?);
            }
        }
        changed += usize::from(nl.add_addr(&Addr::new(index, f.host))?);
    }
    let link = nl
        .link_by_index(index)?
        .ok_or_else(|| BackendError::DeviceGone(format!("index {index}")))?;
    if !link.up {
        nl.set_link_up(index)?;
        changed += 1;
    }
    for f in families {
        let mut route = RouteSpec::new(f.network).dev(index);
        route.scope = f.scope;
        let family = Family::of(&f.host.addr());
        let present = nl
            .route_list(family, None)?
            .iter()
            .any(|r| r.dst == route.dst && r.oif == Some(index) && r.gw.is_none());
        if !present {
            nl.replace_route(&route)?;
            changed += 1;
        }
    }
    Ok(changed)
}

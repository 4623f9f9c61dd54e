//! Picking one address from one range set, under the store lock.

use std::net::IpAddr;

use crate::error::AllocError;
use crate::range_set::RangeSet;
use crate::store::Store;

/// An address handed out, with the prefix and gateway of the range it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    pub ip: IpAddr,
    pub prefix: u8,
    pub gateway: IpAddr,
}

/// Reserves `requested` (which must lie in `set`), or otherwise the next free address in
/// round-robin order, for `(id, ifname)`. Set `set_index` names its `last_reserved_ip` file.
///
/// Without a requested address, an address this `(id, ifname)` already holds in the set is an
/// error: the spec forbids a second ADD without DEL in between.
pub fn allocate(
    store: &Store,
    set: &RangeSet,
    set_index: usize,
    id: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> Result<Allocated, AllocError> {
    let locked = store.lock()?;
    if let Some(ip) = requested {
        let range = set.range_for(ip).ok_or_else(|| AllocError::NotInSet {
            ip,
            set: set.to_string(),
        })?;
        if ip == range.gateway {
            return Err(AllocError::RequestedGateway(ip));
        }
        if !locked.reserve(id, ifname, ip, set_index)? {
            return Err(AllocError::RequestedUnavailable {
                ip,
                set: set.to_string(),
            });
        }
        return Ok(Allocated {
            ip,
            prefix: range.prefix,
            gateway: range.gateway,
        });
    }

    if let Some(ip) = locked
        .owned_ips(id, ifname)
        .into_iter()
        .find(|ip| set.contains(*ip))
    {
        return Err(AllocError::Duplicate {
            ip,
            id: id.to_string(),
        });
    }
    for (ip, range) in set.candidates(locked.last_reserved_ip(set_index)) {
        if locked.reserve(id, ifname, ip, set_index)? {
            return Ok(Allocated {
                ip,
                prefix: range.prefix,
                gateway: range.gateway,
            });
        }
    }
    Err(AllocError::Exhausted(set.to_string()))
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;

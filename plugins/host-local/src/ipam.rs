//! The four IPAM operations over a loaded config, independent of the CNI process edge.

use std::net::IpAddr;

use crate::allocator::{self, Allocated};
use crate::config::{IpamConfig, RouteSpec};
use netconf::Dns;

use crate::dns;
use crate::error::Error;
use crate::store::Store;

/// What ADD hands back: one address per range set, in set order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOutcome {
    pub ips: Vec<Allocated>,
    pub routes: Vec<RouteSpec>,
    pub dns: Option<Dns>,
}

/// Allocates one address from every range set for `(id, ifname)`, all or nothing: if any set
/// fails, or a requested address fits no set, the addresses this call reserved are freed again.
pub fn add(conf: &IpamConfig, id: &str, ifname: &str) -> Result<AddOutcome, Error> {
    let dns = conf
        .resolv_conf
        .as_deref()
        .map(dns::read_resolv_conf)
        .transpose()?;
    let store = Store::open(&conf.data_dir, &conf.name)?;

    let mut pending: Vec<IpAddr> = conf.requested_ips.clone();
    let mut ips: Vec<Allocated> = Vec::with_capacity(conf.range_sets.len());
    for (index, set) in conf.range_sets.iter().enumerate() {
        let requested = pending
            .iter()
            .position(|ip| set.contains(*ip))
            .map(|i| pending.remove(i));
        match allocator::allocate(&store, set, index, id, ifname, requested) {
            Ok(a) => ips.push(a),
            Err(source) => {
                roll_back(&store, &ips, id, ifname);
                return Err(Error::Allocate { index, source });
            }
        }
    }
    if !pending.is_empty() {
        roll_back(&store, &ips, id, ifname);
        return Err(Error::RequestedNotAllocated(pending));
    }
    Ok(AddOutcome {
        ips,
        routes: conf.routes.clone(),
        dns,
    })
}

/// Best effort: the ADD is failing anyway and its own error is the one to report.
fn roll_back(store: &Store, ips: &[Allocated], id: &str, ifname: &str) {
    let Ok(locked) = store.lock() else { return };
    for a in ips {
        let _ = locked.release_ip(a.ip, id, ifname);
    }
}

/// Frees everything `(id, ifname)` holds in this network. Succeeds when nothing is held.
pub fn del(conf: &IpamConfig, id: &str, ifname: &str) -> Result<(), Error> {
    let store = Store::open(&conf.data_dir, &conf.name)?;
    // One pass per range set, as upstream does; after the first pass only legacy files of the
    // same container ID can still match.
    let errors: Vec<_> = conf
        .range_sets
        .iter()
        .filter_map(|_| store.lock().and_then(|l| l.release(id, ifname)).err())
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Release(errors))
    }
}

/// Succeeds if `(id, ifname)` (or a legacy file of `id`) holds any address in this network.
pub fn check(conf: &IpamConfig, id: &str, ifname: &str) -> Result<(), Error> {
    let store = Store::open(&conf.data_dir, &conf.name)?;
    if store.lock()?.has_owner(id, ifname) {
        Ok(())
    } else {
        Err(Error::NotFound(id.to_string()))
    }
}

/// Frees every address not held by one of `valid` (`(containerID, ifname)`); returns them.
pub fn gc(conf: &IpamConfig, valid: &[(String, String)]) -> Result<Vec<IpAddr>, Error> {
    let store = Store::open(&conf.data_dir, &conf.name)?;
    let freed = store.lock()?.gc(valid)?;
    Ok(freed)
}

#[cfg(test)]
#[path = "ipam_tests.rs"]
mod tests;

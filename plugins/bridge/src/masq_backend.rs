//! Choosing and driving the masquerade backend (`ipMasqBackend`).

use ipnet::IpNet;
use netops::firewall::iptables::PendingRestore;
use netops::firewall::sigterm::SigtermIgnored;
use netops::firewall::Backend;
use netops::Family;

use crate::masq::{MasqError, Owner};
use crate::masq_nft;

/// `ipMasqBackend`, or upstream's default for this host ([`Backend::choose`]).
pub fn choose(configured: Option<&str>) -> Result<Backend, MasqError> {
    Backend::choose(configured).map_err(|e| MasqError::UnknownBackend(e.0))
}

/// Starts the IPv4 restore an iptables-backed setup will feed, so its start-up overlaps IPAM
/// (most networks have IPv4 addresses; an IPv6-only result just kills it). Only an
/// optimisation: when it cannot start, setup starts the tool itself and reports the error.
pub fn prestart(backend: Backend) -> Option<PendingRestore> {
    match backend {
        Backend::Iptables => {
            // The tool inherits the ignored SIGTERM, as the ones `setup` starts do.
            let _hold = SigtermIgnored::new();
            PendingRestore::start(Family::V4).ok()
        }
        Backend::Nftables => None,
    }
}

pub fn setup(
    backend: Backend,
    owner: &Owner,
    ips: &[IpNet],
    ifname: &str,
    container_id: &str,
    pending: Option<PendingRestore>,
) -> Result<(), MasqError> {
    match backend {
        Backend::Iptables => owner.setup(ips, pending),
        Backend::Nftables => masq_nft::setup(ips, &owner.network, ifname, container_id),
    }
}

pub fn teardown(backend: Backend, owner: &Owner, ifname: &str) -> Result<(), MasqError> {
    match backend {
        Backend::Iptables => owner.teardown(),
        Backend::Nftables => masq_nft::teardown(&owner.network, ifname, &owner.container_id),
    }
}

/// DEL does not know which backend ADD used (the config may have changed since): both are
/// cleaned, and a backend's failure only counts when that backend is usable here.
pub fn teardown_all(owner: &Owner, ifname: &str) -> Result<(), MasqError> {
    let ipt = owner.teardown();
    let nft = masq_nft::teardown(&owner.network, ifname, &owner.container_id);
    match (ipt, nft) {
        (Err(e), _) if Backend::Iptables.usable() => Err(e),
        (_, Err(e)) if Backend::Nftables.usable() => Err(e),
        _ => Ok(()),
    }
}

//! Choosing and driving the masquerade backend (`ipMasqBackend`).

use ipnet::IpNet;
use netops::firewall::iptables::{self, Family, PendingRestore};
use netops::firewall::nft;

use crate::masq::{MasqError, Owner};
use crate::masq_nft;
use netops::firewall::sigterm::SigtermIgnored;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Iptables,
    Nftables,
}

/// Upstream's rule: an explicit backend is used as given; without one, iptables unless it
/// is unusable here and nftables is usable.
pub fn choose(configured: Option<&str>) -> Result<Backend, MasqError> {
    match configured {
        Some("iptables") => Ok(Backend::Iptables),
        Some("nftables") => Ok(Backend::Nftables),
        Some(other) => Err(MasqError::UnknownBackend(other.to_string())),
        None => {
            let iptables_ok = iptables::usable(Family::V4) || iptables::usable(Family::V6);
            if !iptables_ok && nft::usable() {
                Ok(Backend::Nftables)
            } else {
                Ok(Backend::Iptables)
            }
        }
    }
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
        (Err(e), _) if iptables::usable(Family::V4) || iptables::usable(Family::V6) => Err(e),
        (_, Err(e)) if nft::usable() => Err(e),
        _ => Ok(()),
    }
}

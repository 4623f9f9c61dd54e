//! The firewall backends behind one interface, picked per request (`backend` key or
//! auto-detection, see [`crate::config::PortMapConf::resolve_backend`]).
//!
//! ADD and DEL change the firewall in several steps (chains, then the jumps into them; a
//! listing, then a transaction): SIGTERM is ignored while they run, so a runtime giving up on
//! a slow call cannot leave a mapping half made or half removed (netavark's lesson: DNAT rules
//! left behind by a SIGTERM mid-teardown).

use netops::firewall::sigterm::SigtermIgnored;
use netops::firewall::Backend;

use crate::config::PortMapConf;
use crate::error::PortmapError;
use crate::{iptables_backend, nft_backend};

pub fn add(backend: Backend, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    let _hold = SigtermIgnored::new();
    match backend {
        Backend::Iptables => iptables_backend::add(conf, container_id),
        Backend::Nftables => nft_backend::add(conf, container_id),
    }
}

pub fn del(backend: Backend, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    let _hold = SigtermIgnored::new();
    match backend {
        Backend::Iptables => iptables_backend::del(conf, container_id),
        Backend::Nftables => nft_backend::del(container_id),
    }
}

pub fn check(backend: Backend, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
    match backend {
        Backend::Iptables => iptables_backend::check(conf, container_id),
        Backend::Nftables => nft_backend::check(conf, container_id),
    }
}

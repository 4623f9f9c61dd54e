//! The firewall backends behind one interface, picked per request (`backend` key or
//! auto-detection, see [`crate::config::PortMapConf::resolve_backend`]).

use netops::firewall::iptables::{self, Family};
use netops::firewall::nft;

use crate::config::{BackendKind, PortMapConf};
use crate::error::PortmapError;
use crate::{iptables_backend, nft_backend};

pub trait Backend {
    fn add(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError>;
    fn del(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError>;
    fn check(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError>;
}

pub struct Iptables;
pub struct Nftables;

impl Backend for Iptables {
    fn add(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
        iptables_backend::add(conf, container_id)
    }
    fn del(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
        iptables_backend::del(conf, container_id)
    }
    fn check(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
        iptables_backend::check(conf, container_id)
    }
}

impl Backend for Nftables {
    fn add(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
        nft_backend::add(conf, container_id)
    }
    fn del(&self, _conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
        nft_backend::del(container_id)
    }
    fn check(&self, conf: &PortMapConf, container_id: &str) -> Result<(), PortmapError> {
        nft_backend::check(conf, container_id)
    }
}

pub fn for_kind(kind: BackendKind) -> &'static dyn Backend {
    match kind {
        BackendKind::Iptables => &Iptables,
        BackendKind::Nftables => &Nftables,
    }
}

/// Upstream's availability probe: iptables counts when either family's tools work.
pub fn usable(kind: BackendKind) -> bool {
    match kind {
        BackendKind::Iptables => iptables::usable(Family::V4) || iptables::usable(Family::V6),
        BackendKind::Nftables => nft::usable(),
    }
}

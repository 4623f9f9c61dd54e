//! `bridge`: a drop-in replacement for containernetworking's bridge CNI plugin.
//!
//! [`Bridge`] is the plugin the skel dispatches to (the `bridge` name of the multicall
//! executable); the verbs live in [`setup`] (ADD), [`teardown`] (DEL) and [`check`] (CHECK),
//! and every error gets its CNI code here, once ([`error::BridgeError::into_cni`]).

mod bridge;
mod check;
pub mod config;
mod error;
mod gateway;
mod iface;
mod masq;
mod masq_backend;
mod masq_nft;
mod setup;
mod spoofchk;
mod teardown;
mod veth;
mod vlan;

use netconf::{CniError, CniResult};
use skel::{Plugin, Request};

pub struct Bridge;

impl Plugin for Bridge {
    fn about(&self) -> String {
        format!("CNI bridge plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        setup::add(req).map_err(error::BridgeError::into_cni)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        teardown::del(req).map_err(error::BridgeError::into_cni)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        check::check(req).map_err(error::BridgeError::into_cni)
    }

    /// Ready when the IPAM plugin is; L2-only networks have nothing to wait for.
    fn status(&self, req: &Request) -> Result<(), CniError> {
        let conf = config::BridgeConf::load(&req.conf, &req.env.args)
            .map_err(|e| error::BridgeError::from(e).into_cni())?;
        match &conf.ipam_type {
            Some(ipam) => skel::delegate::status(ipam, &req.stdin, &req.env),
            None => Ok(()),
        }
    }

    // GC keeps skel's default (success without action), as upstream: every resource this
    // plugin owns per attachment is either inside the container netns (gone with it) or
    // released by DEL, which runtimes run for stale attachments before GC.
}

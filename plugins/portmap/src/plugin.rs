//! The CNI verbs of portmap (the `portmap` name of the multicall executable) around [`ops`].

use netconf::{CniError, CniResult};

use crate::ops;
use skel::{Plugin, Request};

pub struct Portmap;

fn cni(e: crate::PortmapError) -> CniError {
    CniError::internal(e.to_string())
}

impl Plugin for Portmap {
    fn about(&self) -> String {
        format!(
            "CNI portmap plugin v{} (flannel-rs)",
            env!("CARGO_PKG_VERSION")
        )
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        ops::add(&req.conf, &req.env.ifname, &req.env.container_id).map_err(cni)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        ops::del(&req.conf, &req.env.ifname, &req.env.container_id).map_err(cni)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        ops::check(&req.conf, &req.env.ifname, &req.env.container_id).map_err(cni)
    }
}

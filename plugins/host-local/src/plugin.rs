//! The CNI verbs of host-local (the `host-local` name of the multicall executable) on top of
//! [`ipam`]; errors get their CNI codes here, once.

use crate::allocator::Allocated;
use crate::error::Error;
use crate::{config, ipam, RouteSpec};
use netconf::{codes, CniError, CniResult, IpConfig, Route};
use skel::{Plugin, Request};

pub struct HostLocal;

impl Plugin for HostLocal {
    fn about(&self) -> String {
        format!("CNI host-local plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let conf = config::load(&req.stdin, &req.env.args).map_err(to_cni)?;
        let out = ipam::add(&conf, &req.env.container_id, &req.env.ifname).map_err(to_cni)?;
        let mut result = CniResult::new(req.conf.cni_version);
        result.ips = out.ips.iter().map(ip_config).collect::<Result<_, _>>()?;
        result.routes = out.routes.iter().map(route).collect();
        result.dns = out.dns.unwrap_or_default();
        Ok(result)
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let conf = config::load(&req.stdin, &req.env.args).map_err(to_cni)?;
        ipam::del(&conf, &req.env.container_id, &req.env.ifname).map_err(to_cni)
    }

    fn check(&self, req: &Request) -> Result<(), CniError> {
        let conf = config::load(&req.stdin, &req.env.args).map_err(to_cni)?;
        ipam::check(&conf, &req.env.container_id, &req.env.ifname).map_err(to_cni)
    }

    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let conf = config::load(&req.stdin, &req.env.args).map_err(to_cni)?;
        let valid = config::valid_attachments(&req.stdin).map_err(to_cni)?;
        for ip in ipam::gc(&conf, &valid).map_err(to_cni)? {
            eprintln!("host-local: GC released {ip} in network {}", conf.name);
        }
        Ok(())
    }
}

/// The one place errors get CNI codes. Upstream returns plain Go errors for all of these, which
/// skel reports as code 999 with the error text; runtimes see the same here — including for an
/// exhausted range, which upstream does not flag as "try again later".
fn to_cni(e: Error) -> CniError {
    let code = match &e {
        Error::Decode(_)
        | Error::MissingIpam
        | Error::Args(_)
        | Error::NilRequestedIp
        | Error::NoRanges
        | Error::InvalidRangeSet { .. }
        | Error::TooManyAddressesPerFamily(_)
        | Error::RangeSetsOverlap(..)
        | Error::ResolvConf(_)
        | Error::Store(_)
        | Error::Allocate { .. }
        | Error::RequestedNotAllocated(_)
        | Error::NotFound(_)
        | Error::Release(_) => codes::INTERNAL,
    };
    CniError::new(code, e.to_string())
}

fn ip_config(a: &Allocated) -> Result<IpConfig, CniError> {
    let address = ipnet::IpNet::new(a.ip, a.prefix)
        .map_err(|e| CniError::new(codes::INTERNAL, e.to_string()))?;
    Ok(IpConfig {
        address,
        gateway: Some(a.gateway),
        interface: None,
    })
}

/// Go's `omitempty` drops zero ints; `table` and `scope` are pointers there, so zero survives.
fn route(r: &RouteSpec) -> Route {
    let nonzero = |v: i64| u32::try_from(v).ok().filter(|v| *v != 0);
    Route {
        dst: r.dst,
        gw: r.gw,
        mtu: nonzero(r.mtu),
        advmss: nonzero(r.advmss),
        priority: nonzero(r.priority),
        table: r.table.and_then(|v| u32::try_from(v).ok()),
        scope: r.scope.and_then(|v| u8::try_from(v).ok()),
    }
}

//! Lease acquisition (upstream `AcquireLease`): reuse our record by PublicIP, else the subnet
//! we held before (from subnet.env) if nobody holds it, else a random free one — each new
//! record created with compare-and-swap so two nodes never share a subnet.

use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;

use super::SubnetError;
use crate::subnet::etcd_store::LeaseStore;
use crate::subnet::{alloc, Lease, LeaseAttrs};

/// Attempts before giving up on a contended pool. Upstream aborts on the first lost race
/// (its retry only covered a different error); every attempt here re-reads the store, so a
/// loser picks a subnet the winner no longer competes for.
const ATTEMPTS: usize = 10;

/// What this node asks for.
#[derive(Debug, Clone)]
pub struct AcquireRequest<'a> {
    /// Checked config (SubnetLen/Min/Max filled in).
    pub config: &'a NetworkConfig,
    pub attrs: &'a LeaseAttrs,
    /// The subnet this node had before (subnet.env), reused when nobody holds it.
    pub previous: Option<(Ipv4Net, Option<Ipv6Net>)>,
}

fn describe(subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> String {
    match ipv6_subnet {
        Some(v6) => format!("ip: {subnet} ipv6: {v6}"),
        None => format!("ip: {subnet} ipv6: <nil>"),
    }
}

fn lease(
    subnet: Ipv4Net,
    ipv6_subnet: Option<Ipv6Net>,
    attrs: &LeaseAttrs,
    expiration: std::time::SystemTime,
) -> Lease {
    Lease {
        enable_ipv4: true,
        enable_ipv6: ipv6_subnet.is_some(),
        subnet,
        ipv6_subnet,
        attrs: attrs.clone(),
        expiration,
    }
}

/// Acquires a lease, retrying lost creation races with a short random pause. Shared by the
/// v3 and v2 keyspaces.
pub async fn acquire_lease(
    reg: &impl LeaseStore,
    req: &AcquireRequest<'_>,
) -> Result<Lease, SubnetError> {
    for attempt in 1..=ATTEMPTS {
        match try_acquire(reg, req).await {
            Err(SubnetError::AlreadyExists) => {
                log::info!("subnet taken by another node while we claimed it (attempt {attempt}/{ATTEMPTS}), retrying");
                tokio::time::sleep(Duration::from_millis(fastrand::u64(10..200))).await;
            }
            other => return other,
        }
    }
    Err(SubnetError::MaxRetries)
}

async fn try_acquire(
    reg: &impl LeaseStore,
    req: &AcquireRequest<'_>,
) -> Result<Lease, SubnetError> {
    let cfg = req.config;
    let attrs = req.attrs;
    let mut leases = reg.list_leases().await?;

    let ours = leases.iter().position(|l| {
        if cfg.enable_ipv4 {
            l.attrs.public_ip == attrs.public_ip
        } else {
            l.attrs.public_ipv6.is_some() && l.attrs.public_ipv6 == attrs.public_ipv6
        }
    });
    if let Some(i) = ours {
        let found = leases.remove(i);
        let what = describe(found.subnet, found.ipv6_subnet);
        if alloc::lease_compatible(cfg, found.subnet, found.ipv6_subnet) {
            log::info!(
                "Found lease ({what}) for current IP ({}), reusing",
                attrs.public_ip
            );
            let expiration = reg
                .update_subnet(found.subnet, found.ipv6_subnet, attrs)
                .await?;
            return Ok(lease(found.subnet, found.ipv6_subnet, attrs, expiration));
        }
        log::info!("Found lease ({what}) for current IP ({}) but not compatible with current config, deleting", attrs.public_ip);
        reg.delete_subnet(found.subnet, found.ipv6_subnet).await?;
    }

    if let Some((subnet, ipv6_subnet)) = req.previous {
        let held = leases.iter().any(|l| {
            let v4 = cfg.enable_ipv4
                && (l.subnet.contains(&subnet.network()) || subnet.contains(&l.subnet.network()));
            let v6 = match (l.ipv6_subnet, ipv6_subnet) {
                (Some(a), Some(b)) => a.contains(&b.network()) || b.contains(&a.network()),
                _ => false,
            };
            v4 || v6
        });
        if !held {
            if alloc::lease_compatible(cfg, subnet, ipv6_subnet) {
                log::info!(
                    "Found previously leased subnet ({}), reusing",
                    describe(subnet, ipv6_subnet)
                );
                let expiration = reg.create_subnet(subnet, ipv6_subnet, attrs).await?;
                return Ok(lease(subnet, ipv6_subnet, attrs, expiration));
            }
            log::warn!(
                "Found previously leased subnet ({}) but not compatible with the Etcd network config, ignoring",
                describe(subnet, ipv6_subnet)
            );
        }
    }

    if let (Some(min), Some(max)) = (cfg.subnet_min, cfg.subnet_max) {
        log::info!("Picking subnet in range {min} ... {max}");
    }
    let taken_v4: Vec<Ipv4Net> = leases.iter().map(|l| l.subnet).collect();
    let taken_v6: Vec<Ipv6Net> = leases.iter().filter_map(|l| l.ipv6_subnet).collect();
    let (subnet, ipv6_subnet) =
        alloc::allocate(cfg, &taken_v4, &taken_v6, |n| fastrand::usize(..n))
            .ok_or(SubnetError::OutOfSubnets)?;
    let expiration = reg.create_subnet(subnet, ipv6_subnet, attrs).await?;
    log::info!(
        "Allocated lease ({}) to current node ({})",
        describe(subnet, ipv6_subnet),
        attrs.public_ip
    );
    Ok(lease(subnet, ipv6_subnet, attrs, expiration))
}

//! DEL: remove the container interface, release the IP, remove spoof-check and masquerade
//! rules. Idempotent; every step runs even when an earlier one failed, and all failures are
//! reported together.
//!
//! Deliberate improvement over upstream: masquerade (and spoof-check) rules are removed also
//! when `CNI_NETNS` is empty or already deleted. Upstream learns the container addresses from
//! the interface and skips the teardown without it, leaking the `CNI-<hash>` chain and its
//! POSTROUTING jump (cni.md §7.14); the chain name is derived from network name and container
//! id alone, so it is found without the namespace.

use netops::netlink::Handle;
use netops::netns::{open_netns, NetnsGuard};
use skel::Request;

use crate::config::BridgeConf;
use crate::error::{BridgeError, Errors};
use crate::masq::Owner;
use crate::masq_backend;
use crate::spoofchk::SpoofCheck;

pub fn del(req: &Request) -> Result<(), BridgeError> {
    let conf = BridgeConf::load(&req.conf, &req.env.args)?;
    let mut errors = Errors::new();

    // The three parts share nothing, and each mostly waits (the kernel's link removal, the
    // IPAM process, the rule tools): run them side by side. The link thread enters the
    // container namespace itself; this thread stays in the host's for the rule tools.
    std::thread::scope(|scope| {
        // Upstream returns at once when this fails (e.g. CNI_NETNS is not a namespace),
        // keeping the IP reserved; here the IP and the rules are released regardless and
        // the error is still reported.
        let link = req
            .env
            .netns
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|path| scope.spawn(move || remove_container_link(path, &req.env.ifname)));
        let ipam = conf.ipam_type.as_deref().map(|ipam| {
            scope.spawn(move || {
                skel::delegate::del(ipam, &req.stdin, &req.env).map_err(BridgeError::Ipam)
            })
        });
        if conf.mac_spoof_check {
            // Upstream only logs spoof-check teardown failures: a leftover chain matches a
            // veth name that no longer exists and is harmless.
            if let Err(e) = SpoofCheck::new(&req.env.container_id, &req.env.ifname).teardown() {
                eprintln!("bridge: spoof-check teardown: {e}");
            }
        }
        let masq = (conf.is_layer3() && conf.ip_masq).then(|| {
            let owner = Owner::new(&conf.network, &req.env.container_id);
            masq_backend::teardown_all(&owner, &req.env.ifname)
        });
        for thread in [link, ipam].into_iter().flatten() {
            errors.note(
                thread.join().unwrap_or_else(|_| {
                    Err(BridgeError::Failed("teardown thread panicked".into()))
                }),
            );
        }
        if let Some(outcome) = masq {
            errors.note(outcome);
        }
    });
    errors.into_result()
}

/// Deletes `ifname` in the namespace at `path` (its veth peer goes with it). A namespace
/// that no longer exists, or an interface that is already gone, is success.
fn remove_container_link(path: &std::path::Path, ifname: &str) -> Result<(), BridgeError> {
    let ns = match open_netns(path) {
        Ok(ns) => ns,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut cont = {
        let _in = NetnsGuard::enter(&ns)?;
        Handle::new().map_err(BridgeError::netlink("failed to open netlink socket"))?
    };
    let lookup = format!("failed to lookup {ifname:?}");
    if let Some(link) = cont
        .link_by_name(ifname)
        .map_err(BridgeError::netlink(lookup))?
    {
        cont.delete_link(link.index)
            .map_err(BridgeError::netlink(format!("failed to delete {ifname:?}")))?;
    }
    Ok(())
}

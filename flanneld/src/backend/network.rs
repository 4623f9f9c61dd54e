//! Which networks a backend serves, and which kernel routes fall inside them.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;

use super::{BackendError, ExternalInterface};

/// Whether `dst` is a subnet of `network` (and not the network itself).
pub(crate) fn is_subnet_of(dst: &IpNet, network: &IpNet) -> bool {
    dst.prefix_len() > network.prefix_len() && network.contains(dst)
}

/// The networks a backend serves, checked against the config the same way for every backend.
pub(crate) fn networks(
    network: &NetworkConfig,
    ext: &ExternalInterface,
) -> Result<(Option<Ipv4Net>, Option<Ipv6Net>), BackendError> {
    let v4 = match (network.enable_ipv4, network.network) {
        (false, _) => None,
        (true, Some(n)) => Some(n),
        (true, None) => return Err(BackendError::NoNetwork),
    };
    let v6 = match (network.enable_ipv6, network.ipv6_network) {
        (false, _) => None,
        (true, None) => return Err(BackendError::NoIpv6Network),
        (true, Some(_)) if ext.ext_v6_addr.is_none() => {
            return Err(BackendError::NoIpv6Address(ext.name.clone()))
        }
        (true, Some(n)) => Some(n),
    };
    Ok((v4, v6))
}

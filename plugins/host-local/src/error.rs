//! Error types. Their `Display` text is the message upstream's Go plugin prints for the same
//! failure, because runtimes and operators match on it; mapping to CNI codes happens in `main.rs`.

use std::net::IpAddr;

pub use netconf::goerror::PathError;

/// Everything that can make an IPAM operation fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value of the wrong JSON type or an unparsable address, worded like Go's
    /// `encoding/json` (see [`netconf::gojson::Decoder`]).
    #[error("{0}")]
    Decode(String),
    #[error("IPAM config missing 'ipam' key")]
    MissingIpam,
    /// `CNI_ARGS` could not be parsed; the message is complete (`ARGS: ...`).
    #[error("{0}")]
    Args(String),
    /// A requested address given as an empty string (or `null`).
    #[error("cannot understand ip: IP <nil> not v4 nor v6")]
    NilRequestedIp,
    #[error("no IP ranges specified")]
    NoRanges,
    #[error("invalid range set {index}: {source}")]
    InvalidRangeSet { index: usize, source: RangeError },
    #[error("CNI version {0} does not support more than 1 address per family")]
    TooManyAddressesPerFamily(String),
    #[error("range set {0} overlaps with {1}")]
    RangeSetsOverlap(usize, usize),
    #[error(transparent)]
    ResolvConf(PathError),
    #[error(transparent)]
    Store(#[from] PathError),
    #[error("failed to allocate for range {index}: {source}")]
    Allocate { index: usize, source: AllocError },
    #[error("failed to allocate all requested IPs:{}", join_ips(.0))]
    RequestedNotAllocated(Vec<IpAddr>),
    #[error("host-local: Failed to find address added by container {0}")]
    NotFound(String),
    /// DEL keeps going over every range set and reports all failures at the end.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(";"))]
    Release(Vec<PathError>),
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter().map(|ip| format!(" {ip}")).collect()
}

/// Why a single range or range set is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("IP <nil> not v4 nor v6")]
    NilSubnet,
    #[error("Network {0} too small to allocate from")]
    TooSmall(String),
    #[error("IPNet IP and Mask version mismatch")]
    MaskMismatch,
    #[error("Network has host bits set. For a subnet mask of length {prefix} the network address is {network}")]
    HostBitsSet { prefix: u8, network: IpAddr },
    #[error("RangeStart {ip} not in network {network}")]
    StartNotInNetwork { ip: IpAddr, network: String },
    #[error("RangeEnd {ip} not in network {network}")]
    EndNotInNetwork { ip: IpAddr, network: String },
    #[error("empty range set")]
    EmptySet,
    #[error("mixed address families")]
    MixedFamilies,
    #[error("subnets {0} and {1} overlap")]
    SubnetsOverlap(String, String),
}

/// Why one range set could not hand out an address.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("{ip} not in range set {set}")]
    NotInSet { ip: IpAddr, set: String },
    #[error("requested ip {0} is subnet's gateway")]
    RequestedGateway(IpAddr),
    #[error("requested IP address {ip} is not available in range set {set}")]
    RequestedUnavailable { ip: IpAddr, set: String },
    #[error("{ip} has been allocated to {id}, duplicate allocation is not allowed")]
    Duplicate { ip: IpAddr, id: String },
    #[error("no IP addresses available in range set: {0}")]
    Exhausted(String),
    #[error(transparent)]
    Store(#[from] PathError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_messages() {
        let e = Error::RequestedNotAllocated(vec![
            "10.0.0.9".parse().unwrap(),
            "fd00::9".parse().unwrap(),
        ]);
        assert_eq!(
            e.to_string(),
            "failed to allocate all requested IPs: 10.0.0.9 fd00::9"
        );
        let e = Error::Allocate {
            index: 1,
            source: AllocError::Exhausted("10.9.0.1-10.9.0.6".into()),
        };
        assert_eq!(e.to_string(), "failed to allocate for range 1: no IP addresses available in range set: 10.9.0.1-10.9.0.6");
        let e = Error::InvalidRangeSet {
            index: 0,
            source: RangeError::EmptySet,
        };
        assert_eq!(e.to_string(), "invalid range set 0: empty range set");
    }
}

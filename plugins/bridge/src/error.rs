//! Everything ADD/DEL/CHECK can fail with. Texts follow upstream's messages, because runtimes
//! surface them to users and some tooling matches on them.

use netconf::goerror::errno_text;
use netconf::{codes, CniError};
use netops::netlink::{NetlinkError, OperState};
use netops::netns::NetnsError;

use crate::check::CheckError;
use crate::config::ConfigError;
use crate::masq::MasqError;

/// The cause part of a netlink failure, as Go prints a `syscall.Errno` (`file exists`).
pub fn cause(e: &NetlinkError) -> String {
    match e {
        NetlinkError::Kernel { errno, .. } => errno_text(*errno as i32).into_owned(),
        other => other.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The IPAM plugin's own error; its code and text reach the runtime unchanged (Go's
    /// skel unwraps a CNI error from anywhere in the chain).
    #[error("{0}")]
    Ipam(CniError),
    /// A kernel request failed; `context` is upstream's wording for the step.
    #[error("{context}: {}", cause(source))]
    Netlink {
        context: String,
        source: NetlinkError,
    },
    #[error("failed to open netns {path:?}: {source}")]
    OpenNetns { path: String, source: NetnsError },
    #[error("{0}")]
    Netns(#[from] NetnsError),
    #[error("failed to create bridge {name:?}: {reason}")]
    CreateBridge { name: String, reason: String },
    /// A step failed; the text is upstream's wording for it.
    #[error("{0}")]
    Failed(String),
    #[error("container veth name ({name:?}) peer provided ({peer:?}) already exists")]
    VethExists { name: String, peer: String },
    #[error("address {0}: invalid MAC address")]
    InvalidMac(String),
    #[error("IPAM plugin returned missing IP config")]
    MissingIpConfig,
    #[error("failed to add IP addr {addr} to {ifname:?}: invalid interface index")]
    InvalidInterfaceIndex { addr: String, ifname: String },
    #[error(
        "failed to set bridge addr: {bridge:?} already has an IP address different from {addr}"
    )]
    AddrConflict { bridge: String, addr: String },
    #[error("failed to enable forwarding: {0}")]
    Forwarding(Box<netops::sysctl::SysctlError>),
    /// `setting` is the sysctl as it was (`key=value`).
    #[error("failed to enable IPv6 for interface {iface:?} ({setting}): {source}")]
    EnableIpv6 {
        iface: String,
        setting: String,
        source: Box<netops::sysctl::SysctlError>,
    },
    #[error("bridge port in error state: {0}")]
    PortState(OperState),
    #[error(transparent)]
    Masq(#[from] MasqError),
    #[error("failed to setup spoof-check: {0}")]
    SpoofCheck(#[from] netops::firewall::nft::NftError),
    #[error(transparent)]
    Check(#[from] CheckError),
    /// Several independent teardown steps failed; all are reported.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Many(Vec<BridgeError>),
}

impl BridgeError {
    pub fn netlink(context: impl Into<String>) -> impl FnOnce(NetlinkError) -> BridgeError {
        let context = context.into();
        move |source| BridgeError::Netlink { context, source }
    }

    /// The CNI error the runtime sees. Upstream's plugin returns plain Go errors for all of
    /// its own failures, which skel turns into code 999; only IPAM's errors keep their code.
    pub fn into_cni(self) -> CniError {
        match self {
            BridgeError::Ipam(e) => e,
            BridgeError::Many(mut list) if list.len() == 1 => list.remove(0).into_cni(),
            BridgeError::Many(list) => {
                // A delegate error among several failures still decides the code.
                let code = list
                    .iter()
                    .find_map(|e| match e {
                        BridgeError::Ipam(c) => Some(c.code),
                        _ => None,
                    })
                    .unwrap_or(codes::INTERNAL);
                CniError::new(code, BridgeError::Many(list).to_string())
            }
            other => CniError::new(codes::INTERNAL, other.to_string()),
        }
    }
}

/// Collects the errors of independent cleanup steps so one failure does not stop the rest.
#[derive(Debug, Default)]
pub struct Errors(Vec<BridgeError>);

impl Errors {
    pub fn new() -> Errors {
        Errors::default()
    }

    pub fn note<T>(&mut self, r: Result<T, impl Into<BridgeError>>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e.into());
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), BridgeError> {
        match self.0.len() {
            0 => Ok(()),
            _ => Err(BridgeError::Many(self.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn netlink_errors_read_like_go() {
        let e = BridgeError::netlink("failed to connect \"veth1\" to bridge cni0")(
            NetlinkError::Kernel {
                op: "failed to set master of link 7".into(),
                errno: Errno::EBUSY,
            },
        );
        assert_eq!(
            e.to_string(),
            "failed to connect \"veth1\" to bridge cni0: device or resource busy"
        );
        assert_eq!(e.into_cni().code, 999);
    }

    #[test]
    fn ipam_errors_pass_through_with_their_code() {
        let ipam = CniError::new(11, "no IP addresses available in range set").with_details("x");
        assert_eq!(BridgeError::Ipam(ipam.clone()).into_cni(), ipam);
        let many = BridgeError::Many(vec![
            BridgeError::MissingIpConfig,
            BridgeError::Ipam(CniError::new(7, "bad")),
        ]);
        let c = many.into_cni();
        assert_eq!(c.code, 7);
        assert_eq!(c.msg, "IPAM plugin returned missing IP config; bad");
    }

    #[test]
    fn upstream_messages() {
        assert_eq!(
            BridgeError::AddrConflict {
                bridge: "cni0".into(),
                addr: "10.244.1.1/24".into()
            }
            .to_string(),
            "failed to set bridge addr: \"cni0\" already has an IP address different from 10.244.1.1/24"
        );
        assert_eq!(
            BridgeError::PortState(OperState::LowerLayerDown).to_string(),
            "bridge port in error state: lower-layer-down"
        );
        assert_eq!(
            BridgeError::VethExists {
                name: "eth0".into(),
                peer: "veth0a1b2c3d".into()
            }
            .to_string(),
            "container veth name (\"eth0\") peer provided (\"veth0a1b2c3d\") already exists"
        );
    }
}

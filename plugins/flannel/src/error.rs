//! Everything that can go wrong in the flannel plugin, worded as upstream words it where
//! upstream has a message users already search for.

use std::path::PathBuf;

use netconf::goerror::PathError;

use crate::subnet::SubnetLoadError;

#[derive(Debug, thiserror::Error)]
pub enum FlannelError {
    /// The plugin config did not decode (ADD prefixes this with
    /// `failed to load flannel netconf file: `, DEL prints it bare, as upstream).
    #[error("failed to load netconf: {0}")]
    Netconf(String),
    #[error(
        "failed to load flannel 'subnet.env' file: {0}. Check the flannel pod log for this node."
    )]
    SubnetEnv(#[source] SubnetLoadError),
    #[error("'delegate' dictionary, if present, must have (string) 'type' field")]
    DelegateTypeNotString,
    #[error("'delegate' dictionary must not have 'name' field, it'll be set by flannel")]
    DelegateHasName,
    #[error("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel")]
    DelegateHasIpam,
    #[error("failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: {0}")]
    IpamRoutes(String),
    /// A saved delegate config that is not a JSON object with a string `type`.
    #[error("failed to parse netconf: {0}")]
    SavedConfig(String),
    #[error("invalid container ID {0:?}: not usable as a file name")]
    InvalidContainerId(String),
    /// Worded like Go's `*os.PathError` (`open /var/lib/cni/flannel/x: permission denied`).
    #[error(transparent)]
    Io(#[from] PathError),
}

impl FlannelError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, e: std::io::Error) -> FlannelError {
        FlannelError::Io(PathError::new(op, path, e))
    }
}

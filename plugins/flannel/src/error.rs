//! Everything that can go wrong in the flannel plugin, worded as upstream words it where
//! upstream has a message users already search for.

use std::path::PathBuf;

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
    #[error("{op} {}: {reason}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl FlannelError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, e: &std::io::Error) -> FlannelError {
        FlannelError::Io {
            op,
            path: path.into(),
            reason: go_io_text(e),
        }
    }
}

/// An OS error in the words Go's `os` package uses (`no such file or directory`), which is
/// what users and runbooks grep for, rather than Rust's `No such file or directory (os error 2)`.
pub fn go_io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if e.raw_os_error().is_some() => text[..at].to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_go() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(go_io_text(&e), "no such file or directory");
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(go_io_text(&e), "permission denied");
        let e = std::io::Error::other("Custom (os error 9)");
        assert_eq!(
            go_io_text(&e),
            "custom (os error 9)",
            "only real OS errors lose the suffix"
        );
    }
}

use netconf::goerror::errno_text;
use nix::errno::Errno;

use crate::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel rejected the request.
    #[error("{op}: {}", errno_text(*errno as i32))]
    Kernel { op: String, errno: Errno },
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
    #[error("{op}: cannot decode netlink reply: {detail}")]
    Decode { op: String, detail: String },
    /// The socket overflowed and the kernel dropped our acknowledgement; the request may or
    /// may not have been applied.
    #[error("{op}: acknowledgement lost (receive buffer overrun)")]
    AckLost { op: String },
    #[error("{op}: dump was interrupted repeatedly by concurrent changes")]
    DumpInterrupted { op: String },
    #[error("{op}: unexpected reply: {detail}")]
    Unexpected { op: String, detail: String },
    #[error("failed to open netlink socket: {0}")]
    Socket(std::io::Error),
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

impl NetlinkError {
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    pub fn is_exists(&self) -> bool {
        self.errno() == Some(Errno::EEXIST)
    }

    /// The object the request referred to does not exist (link, address, route, neighbour).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errors_read_like_go() {
        let e = NetlinkError::Kernel {
            op: "could not add \"cni0\"".into(),
            errno: Errno::EEXIST,
        };
        assert_eq!(e.to_string(), "could not add \"cni0\": file exists");
        assert!(e.is_exists());
        assert!(!e.is_not_found());
    }
}

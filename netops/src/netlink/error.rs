use nix::errno::Errno;

use crate::netns::NetnsError;

/// Errno text as Go's `syscall.Errno.Error()` prints it, so plugin error messages match
/// upstream byte for byte (`file exists`). Go's table is generated from the C library's
/// `strerror` with the first letter lowered, so derive it the same way (nix's own table
/// diverges, e.g. for EOPNOTSUPP).
pub fn errno_text(errno: Errno) -> String {
    let full = std::io::Error::from_raw_os_error(errno as i32).to_string();
    let desc = full
        .rsplit_once(" (os error ")
        .map_or(full.as_str(), |(d, _)| d);
    let mut chars = desc.chars();
    match (chars.next(), chars.next()) {
        // Go keeps leading acronyms intact ("RFS specific error"); only plain words are lowered.
        (Some(first), Some(second)) if !second.is_uppercase() => first
            .to_lowercase()
            .chain(desc[first.len_utf8()..].chars())
            .collect(),
        _ => desc.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel rejected the request.
    #[error("{op}: {}", errno_text(*errno))]
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
    fn errno_text_matches_go_wording() {
        assert_eq!(errno_text(Errno::EEXIST), "file exists");
        assert_eq!(errno_text(Errno::ENODEV), "no such device");
        assert_eq!(errno_text(Errno::ENETUNREACH), "network is unreachable");
        assert_eq!(errno_text(Errno::EOPNOTSUPP), "operation not supported");
        let e = NetlinkError::Kernel {
            op: "could not add \"cni0\"".into(),
            errno: Errno::EEXIST,
        };
        assert_eq!(e.to_string(), "could not add \"cni0\": file exists");
        assert!(e.is_exists());
        assert!(!e.is_not_found());
    }
}

//! Go's wording for operating-system errors, which upstream's plugins print verbatim
//! (`open /var/lib/cni/networks/x: no such file or directory`, `could not add "cni0": file
//! exists`): users and runbooks search for these texts, so they are reproduced exactly.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Go's `syscall.Errno(n).Error()` on Linux (the generic errno numbering of x86-64 and
/// arm64): the text of Go's own table, which is glibc's `strerror` of long ago with the first
/// letter lowered except in acronyms (`RFS specific error`); it kept `stale NFS file handle`
/// and has no text for EHWPOISON or numbers it does not know, which print as `errno N`.
pub fn errno_text(errno: i32) -> Cow<'static, str> {
    match usize::try_from(errno).ok().and_then(|i| TEXT.get(i)) {
        Some(text) if !text.is_empty() => Cow::Borrowed(text),
        _ => Cow::Owned(format!("errno {errno}")),
    }
}

/// An `io::Error` as Go prints the error its `os` package would have returned: an OS error as
/// its errno's text; any other error by its message, first letter lowered as Go's are.
pub fn io_error_text(e: &io::Error) -> String {
    if let Some(errno) = e.raw_os_error() {
        return errno_text(errno).into_owned();
    }
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Go's `*os.PathError`: a failed system call on a path, `<op> <path>: <errno text>`.
#[derive(Debug)]
pub struct PathError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl PathError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> PathError {
        PathError {
            op,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PathError { op, path, source } = self;
        write!(f, "{op} {}: {}", path.display(), io_error_text(source))
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Indexed by errno; `""` where Go has no text.
const TEXT: [&str; 133] = [
    "", // 0
    "operation not permitted",
    "no such file or directory",
    "no such process",
    "interrupted system call",
    "input/output error",
    "no such device or address",
    "argument list too long",
    "exec format error",
    "bad file descriptor",
    "no child processes",
    "resource temporarily unavailable",
    "cannot allocate memory",
    "permission denied",
    "bad address",
    "block device required",
    "device or resource busy",
    "file exists",
    "invalid cross-device link",
    "no such device",
    "not a directory",
    "is a directory",
    "invalid argument",
    "too many open files in system",
    "too many open files",
    "inappropriate ioctl for device",
    "text file busy",
    "file too large",
    "no space left on device",
    "illegal seek",
    "read-only file system",
    "too many links",
    "broken pipe",
    "numerical argument out of domain",
    "numerical result out of range",
    "resource deadlock avoided",
    "file name too long",
    "no locks available",
    "function not implemented",
    "directory not empty",
    "too many levels of symbolic links",
    "", // 41
    "no message of desired type",
    "identifier removed",
    "channel number out of range",
    "level 2 not synchronized",
    "level 3 halted",
    "level 3 reset",
    "link number out of range",
    "protocol driver not attached",
    "no CSI structure available",
    "level 2 halted",
    "invalid exchange",
    "invalid request descriptor",
    "exchange full",
    "no anode",
    "invalid request code",
    "invalid slot",
    "", // 58
    "bad font file format",
    "device not a stream",
    "no data available",
    "timer expired",
    "out of streams resources",
    "machine is not on the network",
    "package not installed",
    "object is remote",
    "link has been severed",
    "advertise error",
    "srmount error",
    "communication error on send",
    "protocol error",
    "multihop attempted",
    "RFS specific error",
    "bad message",
    "value too large for defined data type",
    "name not unique on network",
    "file descriptor in bad state",
    "remote address changed",
    "can not access a needed shared library",
    "accessing a corrupted shared library",
    ".lib section in a.out corrupted",
    "attempting to link in too many shared libraries",
    "cannot exec a shared library directly",
    "invalid or incomplete multibyte or wide character",
    "interrupted system call should be restarted",
    "streams pipe error",
    "too many users",
    "socket operation on non-socket",
    "destination address required",
    "message too long",
    "protocol wrong type for socket",
    "protocol not available",
    "protocol not supported",
    "socket type not supported",
    "operation not supported",
    "protocol family not supported",
    "address family not supported by protocol",
    "address already in use",
    "cannot assign requested address",
    "network is down",
    "network is unreachable",
    "network dropped connection on reset",
    "software caused connection abort",
    "connection reset by peer",
    "no buffer space available",
    "transport endpoint is already connected",
    "transport endpoint is not connected",
    "cannot send after transport endpoint shutdown",
    "too many references: cannot splice",
    "connection timed out",
    "connection refused",
    "host is down",
    "no route to host",
    "operation already in progress",
    "operation now in progress",
    "stale NFS file handle",
    "structure needs cleaning",
    "not a XENIX named type file",
    "no XENIX semaphores available",
    "is a named type file",
    "remote I/O error",
    "disk quota exceeded",
    "no medium found",
    "wrong medium type",
    "operation canceled",
    "required key not available",
    "key has expired",
    "key has been revoked",
    "key was rejected by service",
    "owner died",
    "state not recoverable",
    "operation not possible due to RF-kill",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_gos_not_glibcs() {
        assert_eq!(errno_text(libc_errno::EEXIST), "file exists");
        assert_eq!(
            errno_text(libc_errno::EOPNOTSUPP),
            "operation not supported"
        );
        assert_eq!(errno_text(libc_errno::ESTALE), "stale NFS file handle");
        assert_eq!(errno_text(73), "RFS specific error");
        assert_eq!(errno_text(132), "operation not possible due to RF-kill");
        for unknown in [0, 41, 58, 133, 4096, -1] {
            assert_eq!(errno_text(unknown), format!("errno {unknown}"));
        }
    }

    #[test]
    fn io_errors_read_like_go() {
        let e = io::Error::from_raw_os_error(libc_errno::ENOSPC);
        assert_eq!(io_error_text(&e), "no space left on device");
        let e = io::Error::other("Custom (os error 9)");
        assert_eq!(
            io_error_text(&e),
            "custom (os error 9)",
            "only OS errors are errnos"
        );
        let e = PathError::new(
            "open",
            "/x/y",
            io::Error::from_raw_os_error(libc_errno::ENOENT),
        );
        assert_eq!(e.to_string(), "open /x/y: no such file or directory");
    }

    /// The few numbers the tests name, spelled out: netconf has no libc dependency.
    mod libc_errno {
        pub const ENOENT: i32 = 2;
        pub const EEXIST: i32 = 17;
        pub const ENOSPC: i32 = 28;
        pub const EOPNOTSUPP: i32 = 95;
        pub const ESTALE: i32 = 116;
    }
}

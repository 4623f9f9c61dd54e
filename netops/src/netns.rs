//! Network namespaces: opening them safely and moving the current thread in and out.

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC, PROC_SUPER_MAGIC};

/// Errors from opening or entering a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The path does not exist. CNI DEL treats this as "already gone".
    #[error("failed to Statfs {path:?}: no such file or directory")]
    NotFound { path: PathBuf },
    /// The path exists but is neither an nsfs bind mount nor a /proc file.
    #[error("unknown FS magic on {path:?}: {magic:x}")]
    NotNetns { path: PathBuf, magic: i64 },
    #[error("failed to Statfs {path:?}: {}", netconf::goerror::errno_text(*.errno as i32))]
    Statfs { path: PathBuf, errno: Errno },
    #[error("failed to open {path:?}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to save the current network namespace: {0}")]
    SaveCurrent(std::io::Error),
    #[error("failed to enter network namespace: {}", netconf::goerror::errno_text(*.0 as i32))]
    Setns(Errno),
}

impl NetnsError {
    /// True when the namespace path does not exist (callers treat it as already deleted).
    pub fn is_not_found(&self) -> bool {
        matches!(self, NetnsError::NotFound { .. })
    }
}

/// Opens `path` after checking it really is a network namespace handle.
///
/// Both `/var/run/netns/X` (an nsfs bind mount) and `/proc/<pid>/ns/net` are accepted; any
/// other file is rejected, because entering an arbitrary file would fail later with a far
/// less useful error (or, for a directory fd, not at all until setns).
pub fn open_netns(path: impl AsRef<Path>) -> Result<File, NetnsError> {
    let path = path.as_ref();
    let st = match statfs(path) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Err(NetnsError::NotFound { path: path.into() }),
        Err(errno) => {
            return Err(NetnsError::Statfs {
                path: path.into(),
                errno,
            })
        }
    };
    let fs = st.filesystem_type();
    if fs != NSFS_MAGIC && fs != PROC_SUPER_MAGIC {
        return Err(NetnsError::NotNetns {
            path: path.into(),
            magic: fs.0 as i64,
        });
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| NetnsError::Open {
            path: path.into(),
            source,
        })
}

/// While alive, the current thread is in another network namespace; dropping it returns the
/// thread to the namespace it was in before.
///
/// `!Send`: the guard restores *the thread that created it*; moving it to another thread would
/// "restore" the wrong one and leave the original stranded.
#[must_use = "the thread leaves the namespace as soon as the guard is dropped"]
pub struct NetnsGuard {
    saved: File,
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Moves the current thread into the namespace referred to by `target`.
    pub fn enter(target: impl AsFd) -> Result<NetnsGuard, NetnsError> {
        // thread-self, not self: /proc/self/ns/net is the *main* thread's namespace, which is
        // not where this thread is if it (or a caller) already switched.
        let saved = File::open("/proc/thread-self/ns/net").map_err(NetnsError::SaveCurrent)?;
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(NetnsError::Setns)?;
        Ok(NetnsGuard {
            saved,
            _not_send: PhantomData,
        })
    }

    /// Opens `path` (see [`open_netns`]) and enters it.
    pub fn enter_path(path: impl AsRef<Path>) -> Result<NetnsGuard, NetnsError> {
        let ns = open_netns(path)?;
        NetnsGuard::enter(&ns)
    }

    /// The namespace this guard returns to.
    pub fn original(&self) -> BorrowedFd<'_> {
        self.saved.as_fd()
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(errno) = setns(self.saved.as_fd(), CloneFlags::CLONE_NEWNET) {
            // There is no safe way to continue: this thread would keep running the rest of the
            // program (later netlink sockets, iptables children, sysctl writes) inside the
            // foreign namespace, silently configuring the wrong network — the Go class of bug
            // where a tainted thread returns to the pool. Panicking is not enough either (we
            // may already be unwinding, and a caught panic keeps the thread alive), so abort.
            eprintln!(
                "netops: fatal: cannot restore the thread's network namespace: {}",
                netconf::goerror::errno_text(errno as i32)
            );
            std::process::abort();
        }
    }
}

/// Runs `f` with the current thread inside the namespace at `path`, restoring it afterwards
/// (also when `f` panics: the guard is dropped during unwinding).
pub fn run_in<R>(path: impl AsRef<Path>, f: impl FnOnce() -> R) -> Result<R, NetnsError> {
    let _guard = NetnsGuard::enter_path(path)?;
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_not_found() {
        let err = open_netns("/nonexistent/netns/fr-x").unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            err.to_string(),
            "failed to Statfs \"/nonexistent/netns/fr-x\": no such file or directory"
        );
    }

    #[test]
    fn regular_file_is_rejected_with_fs_magic() {
        let dir = std::env::temp_dir();
        let err = open_netns(&dir).unwrap_err();
        match &err {
            NetnsError::NotNetns { path, .. } => assert_eq!(path, &dir),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with(&format!("unknown FS magic on {:?}: ", dir)));
    }

    #[test]
    fn own_proc_netns_is_accepted() {
        open_netns("/proc/thread-self/ns/net").expect("procfs netns handle");
    }
}

//! Creating sockets inside another network namespace without moving the
//! process: a short-lived thread joins the namespace, opens the socket and
//! ends. A socket stays bound to the namespace it was created in, so the
//! caller can use it from any thread afterwards.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Runs `f` on a new thread that has joined the namespace at `netns` (e.g.
/// `/run/netns/<name>`); the thread ends with `f`, so no other code ever runs
/// in that namespace by accident.
pub fn run<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = File::open(netns)?;
    std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd affects only this thread,
        // which exits right after `f`.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("thread inside the namespace panicked"))?
}

//! Ctrl-C (and SIGTERM / SIGHUP) as an ordinary error.
//!
//! The handler only sets a flag. Long-running steps call [`check`] between
//! actions and return [`Interrupted`], which propagates like any other error,
//! so every namespace, daemon and temp dir is released by its `Drop` on the
//! way out. Children started from a terminal get the same SIGINT and stop on
//! their own; a blocking step therefore ends quickly and the flag is seen.
//! The handler is one-shot (`SA_RESETHAND`): a second Ctrl-C kills the
//! process outright, and the next run's sweep removes what it leaves behind.

use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by signal {0}")]
pub struct Interrupted(pub i32);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: anything else is not async-signal-safe.
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
        // the handler is an extern "C" fn that only touches an atomic.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            act.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signal received so far, if any.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// `Err(Interrupted)` once a signal has arrived.
pub fn check() -> Result<(), Interrupted> {
    match received() {
        None => Ok(()),
        Some(sig) => Err(Interrupted(sig)),
    }
}

/// Sleeps up to `d`, waking early (with an error) on a signal.
pub fn sleep(d: std::time::Duration) -> Result<(), Interrupted> {
    let deadline = std::time::Instant::now() + d;
    loop {
        check()?;
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(std::time::Duration::from_millis(20)));
    }
}

/// The conventional exit status of a process stopped by `sig` (130 for SIGINT).
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// The `main` of a benchmark or demo binary called `name`: installs the handler, runs
/// `body` (which returns the exit status it wants) and exits. An error exits with
/// `error_code`, or with the signal's status when it came from an interrupt, by which time
/// every `Drop` has already removed what the run created.
pub fn run_main(
    name: &str,
    error_code: i32,
    body: impl FnOnce() -> Result<i32, Box<dyn std::error::Error>>,
) -> ! {
    if let Err(e) = install() {
        eprintln!("{name}: cannot install the signal handler: {e}");
        std::process::exit(2);
    }
    let code = match body() {
        Ok(code) => code,
        Err(e) => match received() {
            Some(sig) => {
                eprintln!("\n{name}: interrupted; everything it created has been removed.");
                exit_code(sig)
            }
            None => {
                eprintln!("\n{name}: error: {e}");
                error_code
            }
        },
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_the_shell_convention() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
    }
}

//! Keeping SIGTERM from interrupting firewall changes half way.
//!
//! A runtime that gives up on a slow ADD/DEL sends SIGTERM; dying between "delete the jump"
//! and "delete the chain" leaves rules nobody will ever remove (netavark's #1223). While a
//! guard is alive SIGTERM is ignored — also by the `iptables-restore`/`nft` children, which
//! inherit ignored dispositions across exec.
//!
//! The disposition is process-wide while guards can live on several threads at once (bridge
//! writes its masquerade rules on one thread while another addresses the container, and the
//! plugins now share one process when they delegate in-process), so guards are counted: the
//! first one in saves the disposition and ignores SIGTERM, the last one out restores it.

use std::sync::Mutex;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// How many guards are alive, and the disposition the first one replaced.
static HELD: Mutex<(usize, Option<SigAction>)> = Mutex::new((0, None));

#[must_use = "SIGTERM is honoured again as soon as the last guard is dropped"]
pub struct SigtermIgnored(());

impl SigtermIgnored {
    pub fn new() -> SigtermIgnored {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if held.0 == 0 {
            let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
            // SAFETY: installing SIG_IGN runs no handler code, so no async-signal-safety concerns.
            held.1 = unsafe { sigaction(Signal::SIGTERM, &ignore) }.ok();
        }
        held.0 += 1;
        SigtermIgnored(())
    }
}

impl Default for SigtermIgnored {
    fn default() -> Self {
        SigtermIgnored::new()
    }
}

impl Drop for SigtermIgnored {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        held.0 -= 1;
        if held.0 == 0 {
            if let Some(prev) = held.1.take() {
                // SAFETY: restores the disposition that was in place before the first guard.
                let _ = unsafe { sigaction(Signal::SIGTERM, &prev) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> SigHandler {
        let probe = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        let prev = unsafe { sigaction(Signal::SIGTERM, &probe) }.unwrap();
        unsafe { sigaction(Signal::SIGTERM, &prev) }.unwrap();
        prev.handler()
    }

    fn ignored() -> bool {
        matches!(current(), SigHandler::SigIgn)
    }

    /// One test only: the disposition is process-wide, so parallel tests would see each
    /// other's guards.
    #[test]
    fn ignores_while_any_guard_lives_and_restores_after_the_last() {
        assert!(
            !ignored(),
            "test harness starts with the default disposition"
        );
        {
            let _outer = SigtermIgnored::new();
            assert!(ignored());
            {
                let _inner = SigtermIgnored::new();
                assert!(ignored());
            }
            assert!(ignored(), "nested guard leaves the outer one in force");
        }
        assert!(matches!(current(), SigHandler::SigDfl));

        // Guards on two threads that end out of order: the first to end must not restore
        // the default while the other still works.
        let first = SigtermIgnored::new();
        let (started, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                let _second = SigtermIgnored::new();
                started.wait();
                go.wait();
                assert!(ignored(), "still held by the other thread's guard");
            });
            started.wait();
            drop(first);
            assert!(ignored());
            go.wait();
        });
        assert!(matches!(current(), SigHandler::SigDfl));
    }
}

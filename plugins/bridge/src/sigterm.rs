//! Keeping SIGTERM from interrupting firewall changes half way.
//!
//! A runtime that gives up on a slow ADD/DEL sends SIGTERM; dying between "delete the jump"
//! and "delete the chain" leaves rules nobody will ever remove (netavark's #1223). While a
//! guard is alive SIGTERM is ignored — also by the `iptables-restore`/`nft` children, which
//! inherit ignored dispositions across exec.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

#[must_use = "SIGTERM is honoured again as soon as the guard is dropped"]
pub struct SigtermIgnored {
    previous: Option<SigAction>,
}

impl SigtermIgnored {
    pub fn new() -> SigtermIgnored {
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_IGN runs no handler code, so no async-signal-safety concerns.
        let previous = unsafe { sigaction(Signal::SIGTERM, &ignore) }.ok();
        SigtermIgnored { previous }
    }
}

impl Default for SigtermIgnored {
    fn default() -> Self {
        SigtermIgnored::new()
    }
}

impl Drop for SigtermIgnored {
    fn drop(&mut self) {
        if let Some(prev) = self.previous.take() {
            // SAFETY: restores the disposition that was in place before `new`.
            let _ = unsafe { sigaction(Signal::SIGTERM, &prev) };
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

    #[test]
    fn ignores_while_alive_and_restores_after() {
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
            assert!(ignored(), "nested guard restores the outer state");
        }
        assert!(matches!(current(), SigHandler::SigDfl));
    }
}

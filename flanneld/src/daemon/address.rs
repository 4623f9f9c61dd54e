//! Following the external interface's addresses (upstream closed #408 and #1052 as won't-fix:
//! it must be restarted). A thread of its own listens for the kernel's address and link
//! notifications in the daemon's namespace and, after a burst settles, reads the interface
//! afresh; each change of the addresses the node uses reaches the node loop.

use std::time::Duration;

use netops::netlink::{Handle, Monitor, Notice};
use tokio::sync::mpsc;

use super::Stop;
use crate::backend::ExternalInterface;
use crate::iface::{self, IfaceRequest};

/// Notifications closer together than this are one change (an address replaced by another
/// arrives as a deletion and an addition; IPv6 duplicate address detection ends later).
const SETTLE: Duration = Duration::from_millis(300);
/// The longest a burst is waited out before the interface is read anyway.
const SETTLE_MAX: Duration = Duration::from_secs(3);
/// How often the thread looks at the stop signal while nothing happens.
const IDLE: Duration = Duration::from_secs(1);

/// Starts following `ext`; the receiver gets the interface each time its addresses change.
/// The thread ends on stop or when the receiver is dropped.
pub fn follow(
    ext: ExternalInterface,
    req: IfaceRequest,
    stop: Stop,
) -> std::io::Result<mpsc::Receiver<ExternalInterface>> {
    let (tx, rx) = mpsc::channel(4);
    // Opened here, in the daemon's namespace, before the thread exists.
    let monitor = Monitor::addresses()?;
    let handle = Handle::new().map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("address-watch".into())
        .spawn(move || run(monitor, handle, ext, req, tx, stop))?;
    Ok(rx)
}

fn run(
    mut monitor: Monitor,
    mut h: Handle,
    mut current: ExternalInterface,
    req: IfaceRequest,
    tx: mpsc::Sender<ExternalInterface>,
    stop: Stop,
) {
    let mut missing: Option<&'static str> = None;
    loop {
        if *stop.borrow() || tx.is_closed() {
            return;
        }
        let notice = match monitor.wait(IDLE) {
            Ok(n) => n,
            Err(e) => {
                log::error!("address watch: {e}; interface addresses are no longer followed");
                return;
            }
        };
        match notice {
            Notice::Quiet => continue,
            Notice::Changed(ix) if !ix.contains(&current.index) => continue,
            Notice::Changed(_) | Notice::Overrun => {}
        }
        // Let the burst on our interface settle (other interfaces, such as pods' veths, may
        // keep changing); what it did is read from the kernel below.
        let settle_until = std::time::Instant::now() + SETTLE_MAX;
        while std::time::Instant::now() < settle_until {
            match monitor.wait(SETTLE) {
                Ok(Notice::Changed(ix)) if ix.contains(&current.index) => {}
                Ok(Notice::Overrun) => {}
                _ => break,
            }
        }
        let next = match iface::refresh(&mut h, &current, &req) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("address watch: reading {}: {e}", current.name);
                continue;
            }
        };
        if next.missing != missing {
            if let Some(family) = next.missing {
                log::warn!(
                    "interface {} has no usable {family} address any more; keeping the published one until it has",
                    current.name
                );
            }
            missing = next.missing;
        }
        if next.ext != current {
            current = next.ext;
            if tx.blocking_send(current.clone()).is_err() {
                return;
            }
        }
    }
}

//! Following a namespace's IPv4 main routing table inside one network, cheaply enough to
//! run next to a daemon programming thousands of routes.
//!
//! [`crate::routes::RouteWatch`] dumps the whole table every millisecond between
//! notifications; with 5,000 routes each dump costs about as much CPU as the daemon's work
//! being timed. Here the notifications are the only source: the socket gets a receive
//! buffer large enough for every route of a full start-up, and only if the kernel still
//! reports an overflow (ENOBUFS) is the table dumped once to resynchronise.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlink_sys::Socket;

use crate::in_netns;
use crate::routes::{netlink_socket, parse_routes, RouteMsg, RouteWatch};

const RTMGRP_IPV4_ROUTE: u32 = 0x40;
/// Holds ~300,000 route notifications; set with SO_RCVBUFFORCE (we run as root).
const RCVBUF: libc::c_int = 64 << 20;
const RT_TABLE_MAIN: u32 = 254;
const POLL_SLICE: Duration = Duration::from_millis(50);

pub struct RouteMonitor {
    events: Socket,
    dumps: RouteWatch,
    network: Ipv4Net,
    present: HashSet<Ipv4Net>,
    buf: Vec<u8>,
    /// Times the notification stream overflowed and the table was dumped instead.
    pub resyncs: usize,
}

impl RouteMonitor {
    /// Subscribes inside the namespace at `netns`, then reads the current table, so no
    /// change after this call is missed.
    pub fn open(netns: &Path, network: Ipv4Net) -> std::io::Result<RouteMonitor> {
        let events = in_netns::run(netns, || netlink_socket(RTMGRP_IPV4_ROUTE, Some(RCVBUF)))?;
        let mut m = RouteMonitor {
            events,
            dumps: RouteWatch::open(netns)?,
            network,
            present: HashSet::new(),
            buf: vec![0; 1 << 20],
            resyncs: 0,
        };
        m.resync()?;
        Ok(m)
    }

    /// Destinations inside the network in the main table, as last observed.
    pub fn present(&self) -> &HashSet<Ipv4Net> {
        &self.present
    }

    /// Waits until every destination in `want` is in the table; returns the instant the
    /// last of them was observed (the current instant if they already were), or `None`
    /// after `timeout`.
    pub fn wait_all(
        &mut self,
        want: &HashSet<Ipv4Net>,
        timeout: Duration,
    ) -> std::io::Result<Option<Instant>> {
        let deadline = Instant::now() + timeout;
        // Changes already queued (a route removed a moment ago) must count before the table
        // as last seen can satisfy the wait.
        while self.next_batch(Duration::ZERO)?.is_some() {}
        let mut missing: usize = want.iter().filter(|d| !self.present.contains(d)).count();
        if missing == 0 {
            return Ok(Some(Instant::now()));
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let slice = (deadline - now)
                .min(POLL_SLICE)
                .max(Duration::from_millis(1));
            let Some(at) = self.next_batch(slice)? else {
                continue;
            };
            // Recounting only after a batch keeps a 5,000-route wait linear overall.
            missing = want.iter().filter(|d| !self.present.contains(d)).count();
            if missing == 0 {
                return Ok(Some(at));
            }
        }
    }

    /// [`RouteMonitor::wait_all`] for one destination.
    pub fn wait_for(
        &mut self,
        dst: Ipv4Net,
        timeout: Duration,
    ) -> std::io::Result<Option<Instant>> {
        self.wait_all(&HashSet::from([dst]), timeout)
    }

    /// Waits up to `wait` for notifications and applies all that are queued; the instant
    /// they were seen, `None` if none came.
    fn next_batch(&mut self, wait: Duration) -> std::io::Result<Option<Instant>> {
        let mut pfd = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as libc::c_int) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(None);
        }
        let at = Instant::now();
        loop {
            let len = match self.events.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
                Ok(len) => len,
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(Some(at)),
                    Some(libc::ENOBUFS) => {
                        self.resync()?;
                        return Ok(Some(Instant::now()));
                    }
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                },
            };
            for change in parse_routes(&self.buf[..len]) {
                self.apply(change);
            }
        }
    }

    fn apply(&mut self, c: RouteMsg) {
        if c.table != RT_TABLE_MAIN || !self.network.contains(&c.dst) {
            return;
        }
        if c.added {
            self.present.insert(c.dst);
        } else {
            self.present.remove(&c.dst);
        }
    }

    fn resync(&mut self) -> std::io::Result<()> {
        self.resyncs += 1;
        let network = self.network;
        self.present = self
            .dumps
            .destinations()?
            .into_iter()
            .filter(|d| network.contains(d))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_many_routes_appear_in_a_namespace_without_resyncing() {
        let ns = conformance::Netns::new("rtmon").unwrap();
        for cmd in [
            "ip link add v0 type veth peer name v1",
            "ip link set v0 up",
            "ip link set v1 up",
            "ip addr add 192.168.77.1/24 dev v0",
        ] {
            ns.exec_ok(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
        }
        let network: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let mut m = RouteMonitor::open(ns.path(), network).unwrap();
        let want: HashSet<Ipv4Net> = (1..=600u32)
            .map(|i| Ipv4Net::new((0x0a00_0000 + (i << 8)).into(), 24).unwrap())
            .collect();
        let script: String = want
            .iter()
            .map(|d| format!("route add {d} via 192.168.77.2\n"))
            .collect();
        let batch = std::env::temp_dir().join(format!("fr-rtmon-{}", std::process::id()));
        std::fs::write(&batch, script).unwrap();
        let before = Instant::now();
        ns.exec_ok(&["ip", "-batch", batch.to_str().unwrap()])
            .unwrap();
        let _ = std::fs::remove_file(&batch);
        let at = m
            .wait_all(&want, Duration::from_secs(10))
            .unwrap()
            .expect("all routes seen");
        assert!(at >= before);
        assert_eq!(m.present().len(), 600);
        assert_eq!(m.resyncs, 1, "only the initial read");
        let gone: Ipv4Net = "10.0.1.0/24".parse().unwrap();
        ns.exec_ok(&["ip", "route", "del", "10.0.1.0/24"]).unwrap();
        assert_eq!(m.wait_for(gone, Duration::from_millis(200)).unwrap(), None);
        assert!(!m.present().contains(&gone));
    }
}

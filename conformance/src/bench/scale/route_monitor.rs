//! Following a namespace's IPv4 main routing table inside one network, cheaply enough to
//! run next to a daemon programming thousands of routes.
//!
//! [`crate::bench::routes::RouteWatch`] dumps the whole table every millisecond between
//! notifications; with 5,000 routes each dump costs about as much CPU as the daemon's work
//! being timed. Here the notifications are the only source: the socket gets a receive
//! buffer large enough for every route of a full start-up, and only if the kernel still
//! reports an overflow (ENOBUFS) is the table dumped once to resynchronise.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crate::bench::in_netns;
use crate::bench::routes::RouteWatch;

const RTMGRP_IPV4_ROUTE: u32 = 0x40;
/// Holds ~300,000 route notifications; set with SO_RCVBUFFORCE (we run as root).
const RCVBUF: libc::c_int = 64 << 20;
const NLMSG_HDR: usize = 16;
const RTMSG_LEN: usize = 12;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const POLL_SLICE: Duration = Duration::from_millis(50);

/// A route added to or removed from some table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChange {
    pub added: bool,
    pub dst: Ipv4Net,
    pub table: u32,
}

pub struct RouteMonitor {
    events: OwnedFd,
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
        let events = in_netns::run(netns, || subscribed_socket(RTMGRP_IPV4_ROUTE))?;
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
            // SAFETY: the buffer is valid for its length.
            let len = unsafe {
                libc::recv(
                    self.events.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if len < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(Some(at)),
                    Some(libc::ENOBUFS) => {
                        self.resync()?;
                        return Ok(Some(Instant::now()));
                    }
                    Some(libc::EINTR) => continue,
                    _ => return Err(e),
                }
            }
            for change in parse_changes(&self.buf[..len as usize]) {
                self.apply(change);
            }
        }
    }

    fn apply(&mut self, c: RouteChange) {
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

fn subscribed_socket(groups: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket/setsockopt/bind calls; the fd is owned right after creation.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let size = RCVBUF;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        let rc = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        );
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(owned)
    }
}

/// The IPv4 route changes in one datagram.
fn parse_changes(buf: &[u8]) -> Vec<RouteChange> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < NLMSG_HDR || at + len > buf.len() {
            break;
        }
        let added = match kind {
            RTM_NEWROUTE => Some(true),
            RTM_DELROUTE => Some(false),
            _ => None,
        };
        if let Some(added) = added {
            if let Some((dst, table)) = route_of(&buf[at + NLMSG_HDR..at + len]) {
                out.push(RouteChange { added, dst, table });
            }
        }
        at += (len + 3) & !3;
    }
    out
}

/// Destination and table of one rtmsg payload, if it is IPv4.
fn route_of(payload: &[u8]) -> Option<(Ipv4Net, u32)> {
    if payload.len() < RTMSG_LEN || payload[0] != libc::AF_INET as u8 {
        return None;
    }
    let prefix = payload[1];
    let mut table = u32::from(payload[4]);
    let mut dst = [0u8; 4];
    let mut at = RTMSG_LEN;
    while at + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[at], payload[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]);
        if len < 4 || at + len > payload.len() {
            break;
        }
        let data = &payload[at + 4..at + len];
        match (kind, data.len()) {
            (RTA_DST, 4) => dst.copy_from_slice(data),
            (RTA_TABLE, 4) => table = u32::from_ne_bytes(data.try_into().expect("4 bytes")),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Some((Ipv4Net::new(dst.into(), prefix).ok()?, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u16, dst: [u8; 4], prefix: u8, table: u32) -> Vec<u8> {
        let mut payload = vec![libc::AF_INET as u8, prefix, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0];
        for (t, v) in [(RTA_DST, dst), (RTA_TABLE, table.to_ne_bytes())] {
            payload.extend_from_slice(&8u16.to_ne_bytes());
            payload.extend_from_slice(&t.to_ne_bytes());
            payload.extend_from_slice(&v);
        }
        let mut m = ((NLMSG_HDR + payload.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn parses_additions_and_removals_with_their_table() {
        let mut buf = msg(RTM_NEWROUTE, [10, 0, 3, 0], 24, 254);
        buf.extend(msg(RTM_DELROUTE, [10, 0, 4, 0], 24, 100));
        buf.extend(msg(RTM_NEWROUTE, [10, 0, 5, 0], 24, 254)[..20].to_vec());
        assert_eq!(
            parse_changes(&buf),
            vec![
                RouteChange {
                    added: true,
                    dst: "10.0.3.0/24".parse().unwrap(),
                    table: 254
                },
                RouteChange {
                    added: false,
                    dst: "10.0.4.0/24".parse().unwrap(),
                    table: 100
                },
            ]
        );
    }

    #[test]
    fn sees_many_routes_appear_in_a_namespace_without_resyncing() {
        let ns = crate::Netns::new("rtmon").unwrap();
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

//! Watching a namespace's IPv4 main routing table over netlink, to time how
//! long a daemon takes to program a route.
//!
//! Two sockets, both created inside the namespace: one subscribed to route
//! notifications (the kernel tells us the moment a route appears), one for
//! table dumps every millisecond in between, so a notification lost to a
//! full socket buffer only costs a millisecond, never the measurement.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::in_netns;

const NLMSG_HDR: usize = 16;
const RTMSG_LEN: usize = 12;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const POLL_EVERY: Duration = Duration::from_millis(1);

/// A route notification or dump entry, reduced to what a watcher needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteMsg {
    pub added: bool,
    pub dst: Ipv4Net,
    pub table: u32,
}

/// What a watcher waits for.
#[derive(Debug, Clone)]
pub enum Goal<'a> {
    Present(Ipv4Net),
    Absent(Ipv4Net),
    /// Any route to a destination inside `network` that is not in `known`.
    NewIn {
        network: Ipv4Net,
        known: &'a [Ipv4Net],
    },
}

impl Goal<'_> {
    /// The destination a single notification completes the goal with.
    fn reached_by(&self, r: &RouteMsg) -> Option<Ipv4Net> {
        let hit = match self {
            Goal::Present(dst) => r.added && r.dst == *dst,
            Goal::Absent(dst) => !r.added && r.dst == *dst,
            Goal::NewIn { network, known } => {
                r.added && network.contains(&r.dst) && !known.contains(&r.dst)
            }
        };
        hit.then_some(r.dst)
    }

    /// Whether a full table satisfies the goal (and for which destination).
    fn holds_in(&self, table: &[RouteMsg]) -> Option<Ipv4Net> {
        match self {
            Goal::Present(dst) => table.iter().any(|r| r.dst == *dst).then_some(*dst),
            Goal::Absent(dst) => (!table.iter().any(|r| r.dst == *dst)).then_some(*dst),
            Goal::NewIn { .. } => table.iter().find_map(|r| self.reached_by(r)),
        }
    }
}

pub struct RouteWatch {
    events: OwnedFd,
    dumps: OwnedFd,
    seq: u32,
}

impl RouteWatch {
    /// Opens both sockets inside the namespace at `netns`.
    pub fn open(netns: &Path) -> std::io::Result<RouteWatch> {
        let (events, dumps) = in_netns::run(netns, || {
            Ok((
                netlink_socket(RTMGRP_IPV4_ROUTE, None)?,
                netlink_socket(0, None)?,
            ))
        })?;
        Ok(RouteWatch {
            events,
            dumps,
            seq: 0,
        })
    }

    /// Whether `dst` is in the main table right now.
    pub fn present(&mut self, dst: Ipv4Net) -> std::io::Result<bool> {
        Ok(self
            .dump()?
            .iter()
            .any(|r| r.dst == dst && r.table == RT_TABLE_MAIN))
    }

    /// The main table's IPv4 destinations right now.
    pub fn destinations(&mut self) -> std::io::Result<Vec<Ipv4Net>> {
        Ok(self
            .dump()?
            .into_iter()
            .filter(|r| r.table == RT_TABLE_MAIN)
            .map(|r| r.dst)
            .collect())
    }

    /// Waits until `goal` holds in the main table; returns the route it is
    /// about and when that was first observed, or `None` after `timeout`.
    /// Open the watch before the triggering action and call this right after.
    pub fn wait(
        &mut self,
        goal: &Goal<'_>,
        timeout: Duration,
    ) -> std::io::Result<Option<(Ipv4Net, Instant)>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(hit) = self.next_event(goal)? {
                return Ok(Some(hit));
            }
            let table: Vec<RouteMsg> = self
                .dump()?
                .into_iter()
                .filter(|r| r.table == RT_TABLE_MAIN)
                .collect();
            if let Some(dst) = goal.holds_in(&table) {
                return Ok(Some((dst, Instant::now())));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Waits up to [`POLL_EVERY`] for notifications; the arrival time of the
    /// first one that satisfies `goal`.
    fn next_event(&mut self, goal: &Goal<'_>) -> std::io::Result<Option<(Ipv4Net, Instant)>> {
        let mut pfd = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, POLL_EVERY.as_millis() as libc::c_int) };
        if n <= 0 {
            return Ok(None);
        }
        let at = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match recv(&self.events, &mut buf, libc::MSG_DONTWAIT) {
                Ok(0) => return Ok(None),
                Ok(len) => {
                    let hit = parse_routes(&buf[..len])
                        .into_iter()
                        .filter(|r| r.table == RT_TABLE_MAIN)
                        .find_map(|r| goal.reached_by(&r));
                    if let Some(dst) = hit {
                        return Ok(Some((dst, at)));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                // ENOBUFS: notifications were dropped; the dump catches up.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn dump(&mut self) -> std::io::Result<Vec<RouteMsg>> {
        self.seq = self.seq.wrapping_add(1);
        let req = dump_request(self.seq);
        // SAFETY: sending a fully initialised buffer on our own socket.
        let rc = unsafe { libc::send(self.dumps.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut routes = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let len = recv(&self.dumps, &mut buf, 0)?;
            let chunk = &buf[..len];
            routes.extend(parse_routes(chunk));
            match terminator(chunk) {
                Some(Ok(())) => return Ok(routes),
                Some(Err(errno)) => return Err(std::io::Error::from_raw_os_error(errno)),
                None => {}
            }
        }
    }
}

/// A NETLINK_ROUTE socket in the calling thread's namespace, subscribed to `groups`; with
/// `rcvbuf`, its receive buffer is forced to that size (root only), so bursts of
/// notifications are queued instead of overflowing.
pub(crate) fn netlink_socket(groups: u32, rcvbuf: Option<libc::c_int>) -> std::io::Result<OwnedFd> {
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
        if let Some(size) = rcvbuf {
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

fn recv(fd: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> std::io::Result<usize> {
    // SAFETY: the buffer is valid for `buf.len()` bytes.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn dump_request(seq: u32) -> Vec<u8> {
    let len = NLMSG_HDR + RTMSG_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    let mut rtmsg = [0u8; RTMSG_LEN];
    rtmsg[0] = libc::AF_INET as u8;
    b.extend_from_slice(&rtmsg);
    b
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The netlink messages in one datagram as `(type, payload)`.
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < NLMSG_HDR || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + NLMSG_HDR..at + len]));
        at += align4(len);
    }
    out
}

/// `Some(Ok)` at NLMSG_DONE, `Some(Err(errno))` at an error, `None` while a dump continues.
fn terminator(buf: &[u8]) -> Option<Result<(), i32>> {
    messages(buf)
        .into_iter()
        .find_map(|(kind, payload)| match kind {
            NLMSG_DONE => Some(Ok(())),
            NLMSG_ERROR => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                    .unwrap_or(-libc::EIO);
                Some(if code == 0 { Ok(()) } else { Err(-code) })
            }
            _ => None,
        })
}

/// IPv4 route messages in one datagram (default routes have a /0 dst).
pub(crate) fn parse_routes(buf: &[u8]) -> Vec<RouteMsg> {
    let mut out = Vec::new();
    for (kind, payload) in messages(buf) {
        let added = match kind {
            RTM_NEWROUTE => true,
            RTM_DELROUTE => false,
            _ => continue,
        };
        if payload.len() < RTMSG_LEN || payload[0] != libc::AF_INET as u8 {
            continue;
        }
        let prefix = payload[1];
        let mut table = u32::from(payload[4]);
        let mut addr = [0u8; 4];
        let mut at = RTMSG_LEN;
        while at + 4 <= payload.len() {
            let len = u16::from_ne_bytes([payload[at], payload[at + 1]]) as usize;
            let kind = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]);
            if len < 4 || at + len > payload.len() {
                break;
            }
            let data = &payload[at + 4..at + len];
            match kind {
                RTA_DST if data.len() == 4 => addr.copy_from_slice(data),
                RTA_TABLE if data.len() == 4 => {
                    table = u32::from_ne_bytes(data.try_into().expect("4 bytes"))
                }
                _ => {}
            }
            at += align4(len);
        }
        if let Ok(dst) = Ipv4Net::new(addr.into(), prefix) {
            out.push(RouteMsg { added, dst, table });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_msg(kind: u16, dst: [u8; 4], prefix: u8, table: u32) -> Vec<u8> {
        let mut payload = vec![libc::AF_INET as u8, prefix, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0];
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&RTA_DST.to_ne_bytes());
        payload.extend_from_slice(&dst);
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&RTA_TABLE.to_ne_bytes());
        payload.extend_from_slice(&table.to_ne_bytes());
        let len = NLMSG_HDR + payload.len();
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn parses_destination_prefix_and_table_of_each_message() {
        let mut buf = route_msg(RTM_NEWROUTE, [10, 244, 3, 0], 24, 254);
        buf.extend(route_msg(RTM_DELROUTE, [10, 244, 4, 0], 24, 100));
        // A truncated trailing message (a short read) is ignored, not misparsed.
        buf.extend(route_msg(RTM_NEWROUTE, [10, 244, 5, 0], 24, 254)[..20].to_vec());
        let routes = parse_routes(&buf);
        assert_eq!(
            routes,
            vec![
                RouteMsg {
                    added: true,
                    dst: "10.244.3.0/24".parse().unwrap(),
                    table: 254
                },
                RouteMsg {
                    added: false,
                    dst: "10.244.4.0/24".parse().unwrap(),
                    table: 100
                },
            ]
        );
        assert_eq!(terminator(&buf), None);
    }

    #[test]
    fn done_and_error_end_a_dump() {
        let mut done = (NLMSG_HDR as u32 + 4).to_ne_bytes().to_vec();
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0; 14]);
        assert_eq!(terminator(&done), Some(Ok(())));
        let mut err = (NLMSG_HDR as u32 + 4).to_ne_bytes().to_vec();
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(terminator(&err), Some(Err(libc::EPERM)));
    }

    #[test]
    fn goals_match_notifications_and_tables() {
        let net: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        let a: Ipv4Net = "10.244.3.0/24".parse().unwrap();
        let b: Ipv4Net = "10.244.4.0/24".parse().unwrap();
        let added = |dst| RouteMsg {
            added: true,
            dst,
            table: 254,
        };
        let known = [a];
        let new_in = Goal::NewIn {
            network: net,
            known: &known,
        };
        assert_eq!(new_in.reached_by(&added(a)), None);
        assert_eq!(new_in.reached_by(&added(b)), Some(b));
        assert_eq!(
            new_in.reached_by(&added("192.168.1.0/24".parse().unwrap())),
            None
        );
        assert_eq!(
            Goal::Absent(a).reached_by(&RouteMsg {
                added: false,
                dst: a,
                table: 254
            }),
            Some(a)
        );
        assert_eq!(Goal::Present(a).holds_in(&[added(a)]), Some(a));
        assert_eq!(Goal::Absent(a).holds_in(&[added(a)]), None);
        assert_eq!(Goal::Absent(a).holds_in(&[added(b)]), Some(a));
        assert_eq!(new_in.holds_in(&[added(a), added(b)]), Some(b));
    }

    #[test]
    fn truncated_messages_are_ignored() {
        let buf = route_msg(RTM_NEWROUTE, [10, 0, 0, 0], 8, 254);
        assert!(parse_routes(&buf[..buf.len() - 5]).is_empty());
    }

    #[test]
    fn watch_times_a_route_appearing_and_disappearing_in_a_namespace() {
        let ns = crate::Netns::new("rtwatch").unwrap();
        for cmd in [
            "ip link add v0 type veth peer name v1",
            "ip link set v0 up",
            "ip link set v1 up",
            "ip addr add 10.9.0.1/24 dev v0",
        ] {
            ns.exec_ok(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
        }
        let dst: Ipv4Net = "10.77.0.0/16".parse().unwrap();
        let mut w = RouteWatch::open(ns.path()).unwrap();
        assert!(!w.present(dst).unwrap());
        let known = w.destinations().unwrap();
        assert!(known.contains(&"10.9.0.0/24".parse().unwrap()), "{known:?}");

        let before = Instant::now();
        ns.exec_ok(&["ip", "route", "add", "10.77.0.0/16", "via", "10.9.0.2"])
            .unwrap();
        let (seen, at) = w
            .wait(&Goal::Present(dst), Duration::from_secs(5))
            .unwrap()
            .expect("route seen");
        assert_eq!(seen, dst);
        assert!(at >= before);
        let network: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let new_in = Goal::NewIn {
            network,
            known: &known,
        };
        assert_eq!(
            w.wait(&new_in, Duration::from_secs(5))
                .unwrap()
                .map(|(d, _)| d),
            Some(dst)
        );

        ns.exec_ok(&["ip", "route", "del", "10.77.0.0/16"]).unwrap();
        assert!(w
            .wait(&Goal::Absent(dst), Duration::from_secs(5))
            .unwrap()
            .is_some());
        assert!(!w.present(dst).unwrap());
        // Nothing changes now, so a wait for the route must time out.
        assert_eq!(
            w.wait(&Goal::Present(dst), Duration::from_millis(50))
                .unwrap(),
            None
        );
    }
}

//! Watching a namespace's IPv4 main routing table over netlink, to time how
//! long a daemon takes to program a route.
//!
//! Two sockets, both created inside the namespace: one subscribed to route
//! notifications (the kernel tells us the moment a route appears), one for
//! table dumps every millisecond in between, so a notification lost to a
//! full socket buffer only costs a millisecond, never the measurement.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use super::in_netns;

const RT_TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;
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
    events: Socket,
    dumps: Socket,
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
            match self.events.recv(&mut &mut buf[..], libc::MSG_DONTWAIT) {
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
        self.dumps.send(&dump_request(self.seq), 0)?;
        let mut routes = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let len = self.dumps.recv(&mut &mut buf[..], 0)?;
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
pub(crate) fn netlink_socket(groups: u32, rcvbuf: Option<libc::c_int>) -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    if let Some(size) = rcvbuf {
        // netlink-sys only offers SO_RCVBUF, which the kernel caps at net.core.rmem_max.
        // SAFETY: setsockopt reads `size` for the length given; the fd is the socket's.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    socket.bind(&SocketAddr::new(0, groups))?;
    Ok(socket)
}

/// An RTM_GETROUTE dump request for the IPv4 tables.
fn dump_request(seq: u32) -> Vec<u8> {
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(route));
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.header.sequence_number = seq;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// The netlink messages in one datagram, each decoded on its own; a truncated or
/// undecodable message is skipped, a truncated tail ends the datagram.
fn messages(buf: &[u8]) -> impl Iterator<Item = NetlinkPayload<RouteNetlinkMessage>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || loop {
        let rest = buf.get(offset..)?;
        let len = NetlinkBuffer::new_checked(rest).ok()?.length() as usize;
        offset += (len + 3) & !3;
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]) {
            return Some(m.payload);
        }
    })
}

/// `Some(Ok)` at the end of a dump, `Some(Err(errno))` at an error, `None` while it goes on.
fn terminator(buf: &[u8]) -> Option<Result<(), i32>> {
    messages(buf).find_map(|payload| match payload {
        NetlinkPayload::Done(done) if done.code < 0 => Some(Err(-done.code)),
        NetlinkPayload::Done(_) => Some(Ok(())),
        NetlinkPayload::Error(e) => Some(e.code.map_or(Ok(()), |c| Err(-c.get()))),
        _ => None,
    })
}

/// IPv4 route messages in one datagram (default routes have a /0 dst).
pub(crate) fn parse_routes(buf: &[u8]) -> Vec<RouteMsg> {
    messages(buf)
        .filter_map(|payload| {
            let (added, route) = match payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => (true, r),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => (false, r),
                _ => return None,
            };
            if route.header.address_family != AddressFamily::Inet {
                return None;
            }
            let mut table = u32::from(route.header.table);
            let mut addr = std::net::Ipv4Addr::UNSPECIFIED;
            for attr in &route.attributes {
                match attr {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => addr = *a,
                    RouteAttribute::Table(t) => table = *t,
                    _ => {}
                }
            }
            let dst = Ipv4Net::new(addr, route.header.destination_prefix_length).ok()?;
            Some(RouteMsg { added, dst, table })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emit(payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(Default::default(), payload);
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    fn route_msg(added: bool, dst: [u8; 4], prefix: u8, table: u32) -> Vec<u8> {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.destination_prefix_length = prefix;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(dst.into())),
            RouteAttribute::Table(table),
        ];
        let m = if added {
            RouteNetlinkMessage::NewRoute(r)
        } else {
            RouteNetlinkMessage::DelRoute(r)
        };
        emit(NetlinkPayload::InnerMessage(m))
    }

    #[test]
    fn parses_destination_prefix_and_table_of_each_message() {
        let mut buf = route_msg(true, [10, 244, 3, 0], 24, 254);
        buf.extend(route_msg(false, [10, 244, 4, 0], 24, 100));
        // A truncated trailing message (a short read) is ignored, not misparsed.
        buf.extend(route_msg(true, [10, 244, 5, 0], 24, 254)[..20].to_vec());
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
        let done = emit(NetlinkPayload::Done(Default::default()));
        assert_eq!(terminator(&done), Some(Ok(())));
        let mut e = netlink_packet_core::ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-libc::EPERM);
        let err = emit(NetlinkPayload::Error(e));
        assert_eq!(terminator(&err), Some(Err(libc::EPERM)));
        let mut r = route_msg(true, [10, 0, 0, 0], 8, 254);
        assert_eq!(terminator(&r), None, "a route message does not end a dump");
        r.extend(done);
        assert_eq!(terminator(&r), Some(Ok(())));
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
        let buf = route_msg(true, [10, 0, 0, 0], 8, 254);
        assert!(parse_routes(&buf[..buf.len() - 5]).is_empty());
    }

    #[test]
    fn watch_times_a_route_appearing_and_disappearing_in_a_namespace() {
        let ns = conformance::Netns::new("rtwatch").unwrap();
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

//! Kernel notifications of address and link changes: a NETLINK_ROUTE socket subscribed to
//! the `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR` and `RTMGRP_IPV6_IFADDR` groups of the namespace it
//! was opened in. It only says which interfaces changed; callers read their state afresh
//! through a [`super::Handle`], which is what stays correct when notifications are lost.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::transport::split_datagram;

/// What one [`Monitor::wait`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Addresses or links of these interfaces changed (indexes, sorted, each once).
    Changed(Vec<u32>),
    /// The kernel dropped notifications (the receive buffer overflowed): anything may have
    /// changed.
    Overrun,
    /// Nothing happened within the timeout.
    Quiet,
}

/// Address and link notifications of one network namespace.
pub struct Monitor {
    socket: Socket,
    buf: Vec<u8>,
}

impl Monitor {
    /// Subscribes in the current thread's network namespace.
    pub fn addresses() -> io::Result<Monitor> {
        let groups =
            (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, groups))?;
        socket.set_non_blocking(true)?;
        Ok(Monitor {
            socket,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Waits up to `timeout` for notifications and takes every one queued.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Notice> {
        let mut fds = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut fds, 1, ms) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted => Ok(Notice::Quiet),
                _ => Err(e),
            };
        }
        if ready == 0 {
            return Ok(Notice::Quiet);
        }
        let mut changed = Vec::new();
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => changed.extend(interfaces(&self.buf)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Drain what is left; the caller re-reads everything anyway.
                    while self.socket.recv(&mut self.buf, 0).is_ok() {
                        self.buf.clear();
                    }
                    return Ok(Notice::Overrun);
                }
                Err(e) => return Err(e),
            }
        }
        changed.sort_unstable();
        changed.dedup();
        Ok(if changed.is_empty() {
            Notice::Quiet
        } else {
            Notice::Changed(changed)
        })
    }
}

/// The interfaces the address and link notifications in `datagram` concern.
fn interfaces(datagram: &[u8]) -> impl Iterator<Item = u32> + '_ {
    split_datagram(datagram).filter_map(|parsed| match parsed.ok()?.1 {
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m),
        ) => Some(m.header.index),
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(m) | RouteNetlinkMessage::DelLink(m),
        ) => Some(m.header.index),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Request;
    use ipnet::IpNet;

    #[test]
    fn address_notifications_name_their_interface() {
        // What the kernel sends on `ip addr add`: RTM_NEWADDR, as our own request encodes it.
        let a = crate::netlink::Addr::new(7, "10.1.2.3/24".parse::<IpNet>().unwrap());
        let mut datagram = Vec::new();
        Request::addr_add(&a).emit(1, false, &mut datagram);
        Request::addr_del(&a).emit(2, false, &mut datagram);
        assert_eq!(interfaces(&datagram).collect::<Vec<_>>(), [7, 7]);
        assert_eq!(interfaces(b"junk").count(), 0);
    }
}

//! The real transport: a NETLINK_ROUTE socket bound to the namespace it was created in.

use std::io;
use std::os::fd::AsRawFd;

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::transport::Client;

/// Buffer sizes we ask for. SO_RCVBUFFORCE/SO_SNDBUFFORCE succeed for CAP_NET_ADMIN and
/// ignore net.core.rmem_max; unprivileged callers fall back to the capped variants.
const WANT_RCVBUF: usize = 4 << 20;
const WANT_SNDBUF: usize = 1 << 20;

/// Upper bound of the kernel-side memory charged per queued acknowledgement: the skb head
/// (~36 bytes of payload with NETLINK_CAP_ACK, rounded up to a slab) plus `struct sk_buff`
/// and `skb_shared_info`. Deliberately pessimistic: underestimating loses acknowledgements.
const ACK_TRUESIZE: usize = 2048;
const MAX_WINDOW: usize = 1024;

/// Large enough for any dump datagram: the kernel sizes dump skbs to at most 32 KiB, and
/// never below a page.
fn min_recv_buffer() -> usize {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    page.max(32 * 1024)
}

pub struct SocketClient {
    socket: Socket,
    rcvbuf: usize,
    sndbuf: usize,
}

impl SocketClient {
    /// Opens a socket in the current thread's network namespace.
    pub fn open() -> io::Result<SocketClient> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Errors then carry only the request header instead of echoing the whole request,
        // which keeps acknowledgements small and uniform for batch window sizing.
        socket.set_cap_ack(true)?;
        let fd = socket.as_raw_fd();
        set_buf(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, WANT_RCVBUF);
        set_buf(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, WANT_SNDBUF);
        let rcvbuf = get_buf(fd, libc::SO_RCVBUF)?;
        let sndbuf = get_buf(fd, libc::SO_SNDBUF)?;
        Ok(SocketClient {
            socket,
            rcvbuf,
            sndbuf,
        })
    }
}

fn set_buf(fd: i32, forced: libc::c_int, capped: libc::c_int, size: usize) {
    let value = size as libc::c_int;
    let set = |opt| unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // Failure only narrows the batch window, which `get_buf` accounts for.
    if set(forced) != 0 {
        set(capped);
    }
}

fn get_buf(fd: i32, opt: libc::c_int) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.max(0) as usize)
}

impl Client for SocketClient {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        let n = self.socket.send(datagram, 0)?;
        if n != datagram.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let min = min_recv_buffer();
        loop {
            buf.clear();
            if buf.capacity() < min {
                buf.reserve(min);
            }
            // Peek with MSG_TRUNC reports the datagram's real size, so an oversized message
            // (a link with many VFs) grows the buffer instead of being cut off.
            let size = match self.socket.recv(buf, libc::MSG_PEEK | libc::MSG_TRUNC) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if size > buf.capacity() {
                buf.clear();
                buf.reserve(size);
            }
            buf.clear();
            match self.socket.recv(buf, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn max_in_flight(&self) -> usize {
        (self.rcvbuf / ACK_TRUESIZE).clamp(1, MAX_WINDOW)
    }

    fn max_datagram(&self) -> usize {
        // The kernel refuses sends larger than sk_sndbuf minus a small slack.
        self.sndbuf.saturating_sub(64).max(4096)
    }
}

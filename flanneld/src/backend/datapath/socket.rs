//! The UDP side: one socket per worker and address family on the same port (`SO_REUSEPORT`),
//! batched sends with `sendmmsg` and `UDP_SEGMENT`, batched receives with `recvmmsg` and
//! `UDP_GRO`.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::DatapathError;
use crate::metrics::{DropReason, Tally};

const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// The kernel's cap on segments in one `UDP_SEGMENT` send.
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;
/// Largest UDP payload of one send over IPv4 (the smaller of the two families).
pub(crate) const MAX_UDP_PAYLOAD: usize = 65535 - 20 - 8;
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// A `sockaddr_in` or `sockaddr_in6`, as the kernel reads and writes them.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddr {
    pub fn new(a: SocketAddr) -> (RawAddr, libc::socklen_t) {
        match a {
            SocketAddr::V4(a) => (
                RawAddr {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(*a.ip()).to_be(),
                        },
                        sin_zero: [0; 8],
                    },
                },
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SocketAddr::V6(a) => (
                RawAddr {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        sin6_scope_id: a.scope_id(),
                    },
                },
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }

    fn empty() -> RawAddr {
        RawAddr::new(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))).0
    }

    /// The address the kernel wrote, if it is one of ours; v4-mapped IPv6 addresses are
    /// returned as IPv4 so a peer is recognised whichever socket it reached.
    pub fn get(&self, len: libc::socklen_t) -> Option<SocketAddr> {
        // SAFETY: every variant starts with the family field; the kernel wrote `len` bytes.
        let family = unsafe { self.v4.sin_family } as libc::c_int;
        let len = len as usize;
        match family {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says this is a sockaddr_in.
                let a = unsafe { self.v4 };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says this is a sockaddr_in6.
                let a = unsafe { self.v6 };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let port = u16::from_be(a.sin6_port);
                Some(match ip.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                    None => SocketAddr::V6(SocketAddrV6::new(
                        ip,
                        port,
                        a.sin6_flowinfo,
                        a.sin6_scope_id,
                    )),
                })
            }
            _ => None,
        }
    }

    fn as_ptr(&mut self) -> *mut libc::c_void {
        (self as *mut RawAddr).cast()
    }
}

fn setsockopt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: an int option, passed with its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

fn one(addr: SocketAddr, reuse: bool) -> io::Result<OwnedFd> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2); checked below.
    let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if reuse && !setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1) {
        return Err(io::Error::last_os_error());
    }
    // An IPv6 wildcard socket must leave IPv4 to the IPv4 socket on the same port.
    if domain == libc::AF_INET6 && !setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1) {
        return Err(io::Error::last_os_error());
    }
    // Bursts of 64 KiB super-packets overflow the default buffers; FORCE (we hold
    // CAP_NET_ADMIN) passes over rmem_max, and the plain option is the fallback.
    for (force, plain) in [
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        if !setsockopt(&fd, libc::SOL_SOCKET, force, SOCKET_BUFFER) {
            setsockopt(&fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER);
        }
    }
    let (mut sa, len) = RawAddr::new(addr);
    // SAFETY: bind with a sockaddr of the socket's family and its size.
    if unsafe { libc::bind(fd.as_raw_fd(), sa.as_ptr().cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// One address family's sockets: one per worker, all on the same address.
#[derive(Debug)]
pub(crate) struct Sockets {
    pub addr: SocketAddr,
    pub fds: Vec<Arc<OwnedFd>>,
    pub gro: bool,
    /// Cleared when the kernel refuses a `UDP_SEGMENT` send (e.g. the route's device lacks
    /// checksum offload); segments are then sent as separate datagrams.
    pub gso: Arc<AtomicBool>,
}

/// Binds `count` sockets to `addr`; offloads are probed on the first and used on all.
pub(crate) fn bind(addr: SocketAddr, count: usize) -> Result<Sockets, DatapathError> {
    let err = |source| DatapathError::Bind { addr, source };
    let reuse = count > 1;
    let first = one(addr, reuse).map_err(err)?;
    // Setting the socket-wide segment size to 0 changes nothing but tells us whether the
    // kernel knows UDP_SEGMENT; sends then pass the size per message.
    let gso = setsockopt(&first, libc::SOL_UDP, UDP_SEGMENT, 0);
    let gro = setsockopt(&first, libc::SOL_UDP, UDP_GRO, 1);
    let mut fds = vec![Arc::new(first)];
    for _ in 1..count {
        let fd = one(addr, reuse).map_err(err)?;
        if gro {
            setsockopt(&fd, libc::SOL_UDP, UDP_GRO, 1);
        }
        fds.push(Arc::new(fd));
    }
    Ok(Sockets {
        addr,
        fds,
        gro,
        gso: Arc::new(AtomicBool::new(gso)),
    })
}

/// Wakes threads blocked in `recvmmsg` on this socket.
pub(crate) fn shutdown(fd: &OwnedFd) {
    // SAFETY: shutdown(2) on a valid fd; failure only means there was nothing to wake.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Where a worker sends: its socket of each family there is, with that family's GSO switch.
#[derive(Debug, Clone, Default)]
pub(crate) struct Port {
    pub v4: Option<(Arc<OwnedFd>, Arc<AtomicBool>)>,
    pub v6: Option<(Arc<OwnedFd>, Arc<AtomicBool>)>,
}

impl Port {
    fn for_dst(&self, dst: &SocketAddr) -> Option<&(Arc<OwnedFd>, Arc<AtomicBool>)> {
        match dst {
            SocketAddr::V4(_) => self.v4.as_ref(),
            SocketAddr::V6(_) => self.v6.as_ref(),
        }
    }

    /// Whether trains to `dst` may go out as one `UDP_SEGMENT` send.
    pub fn gso(&self, dst: &SocketAddr) -> bool {
        self.for_dst(dst)
            .is_some_and(|(_, g)| g.load(Ordering::Relaxed))
    }
}

/// One datagram, or with `seg` a train of datagrams of `seg` bytes (the last may be
/// shorter), at `start..start + len` of the arena.
#[derive(Debug, Clone, Copy)]
struct Item {
    start: usize,
    len: usize,
    seg: u16,
    dst: SocketAddr,
    /// Inner packets it carries, for the counters when it fails.
    packets: u32,
}

const SEND_CMSG_SPACE: usize = 32;

/// Datagrams waiting for one `sendmmsg`, written straight into an arena that never
/// reallocates; it sends itself when it runs out of room.
pub(crate) struct Outbox {
    port: Port,
    arena: Vec<u8>,
    used: usize,
    items: Vec<Item>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<RawAddr>,
    ctrls: Vec<[u64; SEND_CMSG_SPACE / 8]>,
}

// SAFETY: the raw pointers in the mmsghdr/iovec scratch space only ever point into this
// Outbox's own buffers, and are rewritten before every send.
unsafe impl Send for Outbox {}

impl Outbox {
    pub fn new(port: Port, bytes: usize, messages: usize) -> Outbox {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        Outbox {
            port,
            arena: vec![0; bytes],
            used: 0,
            items: Vec::with_capacity(messages),
            hdrs: vec![zero_hdr; messages],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                messages
            ],
            names: vec![RawAddr::empty(); messages],
            ctrls: vec![[0; SEND_CMSG_SPACE / 8]; messages],
        }
    }

    /// Makes sure `bytes` and `messages` fit, sending what is queued if they would not.
    pub fn reserve(&mut self, bytes: usize, messages: usize, tally: &mut Tally) {
        if self.arena.len() - self.used < bytes || self.hdrs.len() - self.items.len() < messages {
            self.flush(tally);
        }
    }

    /// The free part of the arena, to write datagrams into before [`Outbox::commit`].
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.arena[self.used..]
    }

    /// Queues `count` datagrams of `stride` bytes (the last possibly shorter, `total` in
    /// all) written at the start of [`Outbox::space`], each carrying `inner` packets. With
    /// GSO they go out as trains of up to 64 datagrams and 64 KiB.
    pub fn commit(
        &mut self,
        dst: SocketAddr,
        stride: usize,
        count: usize,
        total: usize,
        inner: u32,
        tally: &mut Tally,
    ) {
        let per_send = if count > 1 && self.port.gso(&dst) {
            MAX_GSO_SEGMENTS.min(MAX_UDP_PAYLOAD / stride).max(1)
        } else {
            1
        };
        let mut at = 0;
        while at < total {
            let len = (per_send * stride).min(total - at);
            if self.items.len() == self.hdrs.len() {
                // The caller reserved too few messages: send what is queued, keeping the
                // arena (the rest of this train is still in it).
                self.send_items(tally);
            }
            self.items.push(Item {
                start: self.used + at,
                len,
                seg: if per_send > 1 { stride as u16 } else { 0 },
                dst,
                packets: (len.div_ceil(stride) as u32).saturating_mul(inner),
            });
            at += len;
        }
        self.used += total;
    }

    /// Sends everything queued. Failed datagrams are counted as `SendFailed` drops and taken
    /// off the sent-packet count.
    pub fn flush(&mut self, tally: &mut Tally) {
        self.send_items(tally);
        self.used = 0;
    }

    fn send_items(&mut self, tally: &mut Tally) {
        let n = self.items.len();
        if n == 0 {
            return;
        }
        for (i, it) in self.items.iter().enumerate() {
            let data = &self.arena[it.start..it.start + it.len];
            self.iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let (raw, len) = RawAddr::new(it.dst);
            self.names[i] = raw;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = self.names[i].as_ptr();
            h.msg_namelen = len;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_flags = 0;
            if it.seg != 0 && it.len > usize::from(it.seg) {
                let ctrl = &mut self.ctrls[i];
                // SAFETY: the control buffer is aligned (u64) and large enough for one
                // cmsg carrying a u16; CMSG_* only compute offsets within it.
                unsafe {
                    h.msg_control = ctrl.as_mut_ptr().cast();
                    h.msg_controllen = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), it.seg);
                }
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
        let mut done = 0;
        while done < n {
            // One sendmmsg per run of items of the same family.
            let v6 = self.items[done].dst.is_ipv6();
            let run = self.items[done..]
                .iter()
                .take_while(|it| it.dst.is_ipv6() == v6)
                .count();
            let Some((fd, gso)) = self.port.for_dst(&self.items[done].dst).cloned() else {
                // No socket of that family: nothing can reach this peer.
                for it in &self.items[done..done + run] {
                    self.failed(it.packets, tally);
                }
                done += run;
                continue;
            };
            // SAFETY: hdrs[done..done + run] point at iovecs, names and control buffers
            // filled above, which refer to the arena, alive for this call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs[done..].as_mut_ptr(),
                    run as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                done += rc as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The message at `done` failed; skip it and go on with the rest.
            let it = self.items[done];
            if it.seg != 0
                && e.raw_os_error() == Some(libc::EIO)
                && gso.swap(false, Ordering::Relaxed)
            {
                log::warn!("the kernel refused UDP_SEGMENT; sending datagrams one by one");
            }
            log::debug!("send to {} failed: {e}", it.dst);
            self.failed(it.packets, tally);
            done += 1;
        }
        self.items.clear();
    }

    /// What is queued, one datagram each (trains split), emptying the outbox: how a
    /// transform is driven without sockets (WireGuard's probe, tests).
    pub fn drain(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        for it in self.items.drain(..) {
            let data = &self.arena[it.start..it.start + it.len];
            let seg = if it.seg == 0 {
                it.len
            } else {
                usize::from(it.seg)
            };
            out.extend(data.chunks(seg.max(1)).map(|d| (it.dst, d.to_vec())));
        }
        self.used = 0;
        out
    }

    fn failed(&self, packets: u32, tally: &mut Tally) {
        tally.drop(DropReason::SendFailed, u64::from(packets));
        tally.packets_out = tally.packets_out.saturating_sub(u64::from(packets));
    }
}

/// Where a received datagram came from and how the kernel coalesced it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Received {
    pub src: Option<SocketAddr>,
    pub len: usize,
    /// With `UDP_GRO`: the size of each original datagram (the last may be shorter).
    pub seg: Option<usize>,
}

const RECV_CMSG_SPACE: usize = 64;

pub(crate) struct RecvBatch {
    pub bufs: Vec<Vec<u8>>,
    pub meta: Vec<Received>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<RawAddr>,
    ctrls: Vec<[u64; RECV_CMSG_SPACE / 8]>,
}

// SAFETY: as for Outbox, the pointers only refer to this batch's own buffers.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(n: usize, buf_len: usize) -> RecvBatch {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        RecvBatch {
            bufs: vec![vec![0; buf_len]; n],
            meta: vec![Received::default(); n],
            hdrs: vec![zero_hdr; n],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                n
            ],
            names: vec![RawAddr::empty(); n],
            ctrls: vec![[0; RECV_CMSG_SPACE / 8]; n],
        }
    }

    /// Blocks until at least one datagram arrives; returns how many were received
    /// (0 after a shutdown).
    pub fn recv(&mut self, fd: &OwnedFd) -> io::Result<usize> {
        let n = self.bufs.len();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: self.bufs[i].len(),
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = self.names[i].as_ptr();
            h.msg_namelen = mem::size_of::<RawAddr>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrls[i].as_mut_ptr().cast();
            h.msg_controllen = RECV_CMSG_SPACE as _;
            h.msg_flags = 0;
        }
        // SAFETY: every header points at this batch's own buffers, which outlive the call.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = rc as usize;
        for i in 0..got {
            let h = &self.hdrs[i];
            let src = self.names[i].get(h.msg_hdr.msg_namelen);
            let mut seg = None;
            // SAFETY: walking the control messages the kernel wrote into our buffer.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        seg = usize::try_from(v).ok().filter(|s| *s > 0);
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
            self.meta[i] = Received {
                src,
                len: h.msg_len as usize,
                seg,
            };
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_mapped_v4_is_v4() {
        for a in ["192.168.1.2:51820", "[fd00::1]:51821", "[fe80::1%3]:8285"] {
            let a: SocketAddr = a.parse().unwrap();
            let (raw, len) = RawAddr::new(a);
            assert_eq!(raw.get(len), Some(a));
        }
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5".parse().unwrap();
        let (raw, len) = RawAddr::new(mapped);
        assert_eq!(raw.get(len), Some("10.0.0.1:5".parse().unwrap()));
        let (raw, _) = RawAddr::new(mapped);
        assert_eq!(raw.get(4), None, "a short address is no address");
    }
}

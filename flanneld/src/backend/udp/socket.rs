//! The UDP side: one socket per worker on the same address (`SO_REUSEPORT`), batched sends
//! with `sendmmsg` and `UDP_SEGMENT`, batched receives with `recvmmsg` and `UDP_GRO`.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::UdpError;

const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// The kernel's cap on segments in one `UDP_SEGMENT` send.
pub(super) const MAX_GSO_SEGMENTS: usize = 64;
/// Largest UDP payload of one send (IPv4 total length minus IP and UDP headers).
pub(super) const MAX_UDP_PAYLOAD: usize = 65535 - 20 - 8;
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// The bound sockets and what the kernel supports on them.
#[derive(Debug)]
pub(super) struct Sockets {
    pub fds: Vec<OwnedFd>,
    pub gso: bool,
    pub gro: bool,
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

pub(super) fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn one(addr: SocketAddrV4, reuse: bool) -> io::Result<OwnedFd> {
    // SAFETY: socket(2); checked below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if reuse && !setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1) {
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
    let sa = sockaddr(addr);
    // SAFETY: bind with a sockaddr_in and its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Binds `count` sockets to `addr`; offloads are probed on the first and used on all.
pub(super) fn bind(addr: SocketAddrV4, count: usize) -> Result<Sockets, UdpError> {
    let err = |source| UdpError::Bind { addr, source };
    let reuse = count > 1;
    let first = one(addr, reuse).map_err(err)?;
    // Setting the socket-wide segment size to 0 changes nothing but tells us whether the
    // kernel knows UDP_SEGMENT; sends then pass the size per message.
    let gso = setsockopt(&first, libc::SOL_UDP, UDP_SEGMENT, 0);
    let gro = setsockopt(&first, libc::SOL_UDP, UDP_GRO, 1);
    let mut fds = vec![first];
    for _ in 1..count {
        let fd = one(addr, reuse).map_err(err)?;
        if gro {
            setsockopt(&fd, libc::SOL_UDP, UDP_GRO, 1);
        }
        fds.push(fd);
    }
    Ok(Sockets { fds, gso, gro })
}

/// Wakes threads blocked in `recvmmsg` on these sockets.
pub(super) fn shutdown(fd: &OwnedFd) {
    // SAFETY: shutdown(2) on a valid fd; failure only means there was nothing to wake.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// One datagram (or, with `seg`, a train of equal-sized datagrams) queued for sending.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outgoing {
    pub buf: usize,
    pub start: usize,
    pub len: usize,
    /// `UDP_SEGMENT` size; 0 for a single datagram.
    pub seg: u16,
    pub dst: SocketAddrV4,
}

impl Outgoing {
    pub fn packets(&self) -> usize {
        match self.seg {
            0 => 1,
            s => self.len.div_ceil(usize::from(s)),
        }
    }
}

const SEND_CMSG_SPACE: usize = 32;

/// Messages for one `sendmmsg`, referring to buffers by index so nothing dangles.
pub(super) struct SendBatch {
    pub items: Vec<Outgoing>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in>,
    ctrls: Vec<[u64; SEND_CMSG_SPACE / 8]>,
}

/// What happened to a batch: datagrams that failed, and whether the kernel refused GSO.
#[derive(Debug, Default)]
pub(super) struct SendOutcome {
    pub failed_packets: u64,
    pub gso_refused: bool,
    pub last_error: Option<io::Error>,
}

impl SendBatch {
    pub fn with_capacity(n: usize) -> SendBatch {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        SendBatch {
            items: Vec::with_capacity(n),
            hdrs: vec![zero_hdr; n],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                n
            ],
            names: vec![sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); n],
            ctrls: vec![[0; SEND_CMSG_SPACE / 8]; n],
        }
    }

    pub fn is_full(&self) -> bool {
        self.items.len() == self.hdrs.len()
    }

    pub fn push(&mut self, o: Outgoing) {
        debug_assert!(!self.is_full());
        self.items.push(o);
    }

    /// Sends everything queued; `bufs[item.buf]` must be the buffers the items refer to.
    pub fn flush(&mut self, fd: &OwnedFd, bufs: &[Vec<u8>]) -> SendOutcome {
        let mut out = SendOutcome::default();
        let n = self.items.len();
        for (i, it) in self.items.iter().enumerate() {
            let data = &bufs[it.buf][it.start..it.start + it.len];
            self.iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            self.names[i] = sockaddr(it.dst);
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
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
            // SAFETY: hdrs[done..n] point at iovecs, names and control buffers filled above,
            // which refer to `bufs`, alive for this call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
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
            if it.seg != 0 && e.raw_os_error() == Some(libc::EIO) {
                out.gso_refused = true;
            }
            out.failed_packets += it.packets() as u64;
            out.last_error = Some(e);
            done += 1;
        }
        self.items.clear();
        out
    }
}

/// Where a received datagram came from and how the kernel coalesced it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Received {
    pub src: Option<SocketAddrV4>,
    pub len: usize,
    /// With `UDP_GRO`: the size of each original datagram (the last may be shorter).
    pub seg: Option<usize>,
}

const RECV_CMSG_SPACE: usize = 64;

pub(super) struct RecvBatch {
    pub bufs: Vec<Vec<u8>>,
    pub meta: Vec<Received>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in>,
    ctrls: Vec<[u64; RECV_CMSG_SPACE / 8]>,
}

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
            names: vec![sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); n],
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
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
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
            let name = &self.names[i];
            let src = (h.msg_hdr.msg_namelen as usize >= mem::size_of::<libc::sockaddr_in>()
                && name.sin_family == libc::AF_INET as libc::sa_family_t)
                .then(|| {
                    SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                        u16::from_be(name.sin_port),
                    )
                });
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

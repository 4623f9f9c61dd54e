//! The TUN device: one file descriptor per queue, with the virtio-net header and TCP
//! segmentation offload when the kernel offers them.
//!
//! Own ioctl code on `libc` rather than a TUN crate: the datapath needs exactly four ioctls,
//! full control over the queue/offload fallbacks, and the fds as plain `OwnedFd`s for
//! `poll`/`readv`/`writev`; the crates that do offload (tun-rs) bring async runtimes and a
//! packet-buffer model of their own.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::UdpError;

const TUN_PATH: &CStr = c"/dev/net/tun";
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_TUN_EXCL: libc::c_short = -0x8000; // 0x8000 as a C short
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device. Closing every queue removes the device (it is not persistent), as
/// upstream's does when flanneld exits.
#[derive(Debug)]
pub(super) struct Tun {
    pub queues: Vec<OwnedFd>,
    /// Packets carry a `virtio_net_hdr` in both directions.
    pub vnet_hdr: bool,
    /// TSO and checksum offload are on: reads may be TCP super-packets with partial checksums.
    pub tso: bool,
}

fn attach(name: &str, flags: libc::c_short) -> io::Result<OwnedFd> {
    // SAFETY: open(2) with a valid C string; the result is checked before use.
    let fd = unsafe { libc::open(TUN_PATH.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq lays out.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn open_error(name: &str, e: io::Error) -> UdpError {
    let advice = match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => {
            "the TUN driver is not available here: load the tun module on the host; in a \
             container /dev/net/tun must exist (mount the host's, or `mknod /dev/net/tun c 10 200`) \
             and be allowed by its device cgroup, which on Kubernetes takes a privileged pod \
             (deploy/kube-flannel-tun.patch.yaml)"
        }
        Some(libc::EPERM | libc::EACCES) => {
            "creating a TUN device needs CAP_NET_ADMIN and access to /dev/net/tun: run flanneld \
             as root or as a privileged container (on Kubernetes: deploy/kube-flannel-tun.patch.yaml)"
        }
        Some(libc::EBUSY) => "the device exists already: is another flanneld running on this node?",
        _ => "",
    };
    UdpError::Tun {
        name: name.to_owned(),
        source: e,
        advice,
    }
}

/// Creates `name` with up to `queues` queues. Falls back to one queue and then to no
/// virtio-net header where the kernel refuses them; TSO is asked for and used if granted.
pub(super) fn open(name: &str, queues: usize) -> Result<Tun, UdpError> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(UdpError::Tun {
            name: name.to_owned(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
            advice: "interface names have at most 15 bytes",
        });
    }
    let base = IFF_TUN | IFF_NO_PI;
    let attempts: [(libc::c_short, usize); 3] = [
        (base | IFF_VNET_HDR | IFF_MULTI_QUEUE, queues.max(1)),
        (base | IFF_VNET_HDR, 1),
        (base, 1),
    ];
    let mut last = None;
    for (flags, count) in attempts {
        match attach(name, flags | IFF_TUN_EXCL) {
            Ok(first) => {
                let mut fds = vec![first];
                for _ in 1..count {
                    match attach(name, flags) {
                        Ok(fd) => fds.push(fd),
                        Err(e) => {
                            log::warn!(
                                "TUN {name}: extra queue refused ({e}); using {}",
                                fds.len()
                            );
                            break;
                        }
                    }
                }
                let vnet_hdr = flags & IFF_VNET_HDR != 0;
                let tso = vnet_hdr && set_offload(&fds[0], TUN_F_CSUM | TUN_F_TSO4);
                for fd in &fds {
                    set_nonblocking(fd).map_err(|e| open_error(name, e))?;
                }
                return Ok(Tun {
                    queues: fds,
                    vnet_hdr,
                    tso,
                });
            }
            // Not supported by this kernel: try the next, simpler form.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(open_error(name, e)),
        }
    }
    Err(open_error(
        name,
        last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
    ))
}

fn set_offload(fd: &OwnedFd, flags: libc::c_uint) -> bool {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let ok = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) } == 0;
    if !ok {
        log::info!(
            "TUN offload refused ({}); forwarding packet by packet",
            io::Error::last_os_error()
        );
    }
    ok
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a valid fd.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

//! The forwarding threads. Each worker owns one TUN queue and one UDP socket per address
//! family and runs one OS thread TUN → peers ([`Egress`]) and one peers → TUN per socket
//! ([`Ingress`]). What a packet becomes on the wire, and what a datagram becomes in the TUN
//! device, is the [`Transform`]'s business (plain IPv4 for udp, WireGuard messages for
//! wireguard); batching, offloads and buffers are the same for both. Buffers are allocated
//! once per thread; the hot path only reads, rewrites and makes batched syscalls.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::gso::{self, TcpRun, TcpSegment, VnetHdr, RUN_HEADER_MAX, VNET_HDR_LEN};
use super::socket::{Outbox, RecvBatch};
use crate::metrics::{DatapathCounters, DropReason, Tally};

/// Packets read from the TUN device before the outbox is sent.
const EGRESS_BATCH: usize = 8;
/// Datagrams per `recvmmsg`.
const INGRESS_BATCH: usize = 16;
/// A receive buffer: the largest UDP payload (a GRO train never exceeds it).
pub(crate) const DATAGRAM_BUF: usize = gso::MAX_IP_PACKET;
/// A TUN read: virtio-net header plus the largest IP packet.
const TUN_BUF: usize = VNET_HDR_LEN + gso::MAX_IP_PACKET;
/// Poll timeout: how quickly an idle egress thread notices it should stop.
const POLL_MS: libc::c_int = 200;
const NO_VNET: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the packet's checksums need no verification.
const VNET_F_DATA_VALID: u8 = 2;

/// How the TUN device was opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TunMode {
    pub vnet_hdr: bool,
    pub tso: bool,
}

/// A TUN queue and how to write to it.
pub(crate) struct TunSink<'a> {
    pub fd: &'a OwnedFd,
    pub mode: TunMode,
}

fn iov(data: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    }
}

impl TunSink<'_> {
    fn writev(&self, parts: &[libc::iovec]) -> io::Result<()> {
        // SAFETY: every iovec points into memory borrowed by the caller for this call.
        let rc = unsafe {
            libc::writev(
                self.fd.as_raw_fd(),
                parts.as_ptr(),
                parts.len() as libc::c_int,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Writes one whole packet. `verified`: its checksums were checked or authenticated on
    /// the way (a WireGuard packet), so the kernel need not check them again.
    pub fn write(&self, pkt: &[u8], verified: bool) -> io::Result<()> {
        let mut hdr = NO_VNET;
        if verified {
            hdr[0] = VNET_F_DATA_VALID;
        }
        let parts = [iov(&hdr), iov(pkt)];
        self.writev(if self.mode.vnet_hdr {
            &parts[..]
        } else {
            &parts[1..]
        })
    }
}

/// Per-packet work of a datapath. One instance is shared by every thread; each thread keeps
/// a [`Transform::Local`] of its own.
pub(crate) trait Transform: Send + Sync + 'static {
    type Local: Send + 'static;
    fn local(&self) -> Self::Local;
    /// Start of a batch: pick up configuration changes (new peers).
    fn refresh(&self, local: &mut Self::Local);
    /// One packet from the TUN device (a TSO super-packet when `hdr` says so), after its
    /// virtio-net header. Queue what goes on the wire in `out`; `tun` takes replies such as
    /// ICMP errors.
    fn outbound(
        &self,
        local: &mut Self::Local,
        hdr: &VnetHdr,
        pkt: &mut [u8],
        out: &mut Outbox,
        tun: &TunSink<'_>,
        tally: &mut Tally,
    );
    /// One datagram from `src` (a GRO train is split before). Returns the packet for the
    /// TUN device: part of `dgram`, or carved out of `space`, which is at least as large as
    /// every datagram of the batch together. Datagrams to send back go to `replies`.
    #[allow(clippy::too_many_arguments)]
    fn inbound<'b>(
        &self,
        local: &mut Self::Local,
        src: SocketAddr,
        dgram: &'b mut [u8],
        space: &mut Space<'b>,
        replies: &mut Outbox,
        tally: &mut Tally,
    ) -> Option<Inbound<'b>>;
    fn counters(&self) -> &DatapathCounters;
}

/// A packet on its way into the TUN device.
pub(crate) struct Inbound<'b> {
    pub pkt: &'b [u8],
    /// Its checksums need no verification by the kernel.
    pub verified: bool,
}

/// The not yet used part of a batch's output buffer.
pub(crate) struct Space<'b>(&'b mut [u8]);

impl<'b> Space<'b> {
    pub fn new(buf: &'b mut [u8]) -> Space<'b> {
        Space(buf)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The next `n` bytes, for good; `None` when fewer are left.
    pub fn take(&mut self, n: usize) -> Option<&'b mut [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = std::mem::take(&mut self.0).split_at_mut(n);
        self.0 = tail;
        Some(head)
    }

    /// All that is left, to write into before keeping part of it with [`Space::take`].
    pub fn rest(&mut self) -> &mut [u8] {
        self.0
    }
}

/// TUN → peers.
pub(crate) struct Egress<T: Transform> {
    pub transform: Arc<T>,
    pub stop: Arc<AtomicBool>,
    pub tun: Arc<OwnedFd>,
    pub mode: TunMode,
    pub out: Outbox,
}

impl<T: Transform> Egress<T> {
    pub fn run(mut self) {
        let mut buf = vec![0u8; TUN_BUF];
        let mut local = self.transform.local();
        let mut tally = Tally::default();
        let sink = TunSink {
            fd: &self.tun,
            mode: self.mode,
        };
        while !self.stop.load(Ordering::Relaxed) {
            if !wait_readable(&self.tun) {
                continue;
            }
            self.transform.refresh(&mut local);
            for _ in 0..EGRESS_BATCH {
                // SAFETY: read(2) into our own buffer of the given length.
                let n =
                    unsafe { libc::read(self.tun.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                let n = n as usize;
                let (hdr, start) = if self.mode.vnet_hdr {
                    match VnetHdr::parse(&buf[..n]) {
                        Some(h) => (h, VNET_HDR_LEN),
                        None => {
                            tally.drop(DropReason::Truncated, 1);
                            continue;
                        }
                    }
                } else {
                    (VnetHdr::default(), 0)
                };
                self.transform.outbound(
                    &mut local,
                    &hdr,
                    &mut buf[start..n],
                    &mut self.out,
                    &sink,
                    &mut tally,
                );
            }
            self.out.flush(&mut tally);
            self.transform.counters().flush(&mut tally);
        }
    }
}

fn wait_readable(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd we own.
    unsafe { libc::poll(&mut p, 1, POLL_MS) > 0 }
}

/// Peers → TUN.
pub(crate) struct Ingress<T: Transform> {
    pub transform: Arc<T>,
    pub stop: Arc<AtomicBool>,
    pub tun: Arc<OwnedFd>,
    pub sock: Arc<OwnedFd>,
    pub mode: TunMode,
    pub replies: Outbox,
}

impl<T: Transform> Ingress<T> {
    pub fn run(mut self) {
        let mut batch = RecvBatch::new(INGRESS_BATCH, DATAGRAM_BUF);
        let mut space_buf = vec![0u8; INGRESS_BATCH * DATAGRAM_BUF];
        let mut local = self.transform.local();
        let mut tally = Tally::default();
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(1024);
        let mut run_hdr = [0u8; RUN_HEADER_MAX];
        let sink = TunSink {
            fd: &self.tun,
            mode: self.mode,
        };
        while !self.stop.load(Ordering::Relaxed) {
            let got = match batch.recv(&self.sock) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if !self.stop.load(Ordering::Relaxed) {
                        log::warn!("datapath: receive failed: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    continue;
                }
            };
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.transform.refresh(&mut local);
            let mut space = Space::new(&mut space_buf);
            let mut out = TunWriter {
                sink: &sink,
                iovs: &mut iovs,
                run_hdr: &mut run_hdr,
                run: None,
                head: [0; RUN_HEADER_MAX],
                first: None,
                last_psh: false,
            };
            for (buf, meta) in batch.bufs.iter_mut().zip(&batch.meta).take(got) {
                let Some(src) = meta.src else {
                    tally.drop(DropReason::UnknownPeer, 1);
                    continue;
                };
                let data = &mut buf[..meta.len];
                if data.is_empty() {
                    tally.drop(DropReason::Truncated, 1);
                    continue;
                }
                let seg = meta.seg.unwrap_or(meta.len).max(1);
                for dgram in data.chunks_mut(seg) {
                    if let Some(p) = self.transform.inbound(
                        &mut local,
                        src,
                        dgram,
                        &mut space,
                        &mut self.replies,
                        &mut tally,
                    ) {
                        tally.packets_in += 1;
                        tally.bytes_in += p.pkt.len() as u64;
                        out.packet(p, &mut tally);
                    }
                }
            }
            out.flush(&mut tally);
            self.replies.flush(&mut tally);
            self.transform.counters().flush(&mut tally);
        }
    }
}

/// Writes accepted packets into the TUN device, merging runs of one TCP flow into one
/// super-packet when the device takes them (that is most of the throughput: one write per
/// 64 KiB instead of ~45).
struct TunWriter<'a, 'b> {
    sink: &'a TunSink<'a>,
    /// [header, first payload, further payloads...] of the current run; the pointers refer
    /// to packets borrowed for `'b`.
    iovs: &'a mut Vec<libc::iovec>,
    run_hdr: &'a mut [u8; RUN_HEADER_MAX],
    run: Option<TcpRun>,
    /// The headers of the run's first packet, to compare followers against.
    head: [u8; RUN_HEADER_MAX],
    first: Option<Inbound<'b>>,
    last_psh: bool,
}

impl<'b> TunWriter<'_, 'b> {
    fn packet(&mut self, p: Inbound<'b>, tally: &mut Tally) {
        let seg = if self.sink.mode.tso {
            TcpSegment::parse(p.pkt)
        } else {
            None
        };
        let Some(seg) = seg else {
            self.flush(tally);
            return self.single(&p, tally);
        };
        if let Some(run) = self.run.as_mut() {
            if self.iovs.len() < 1000 && run.try_extend(&self.head, p.pkt, &seg) {
                self.iovs.push(iov(&p.pkt[seg.hdr_len..]));
                self.last_psh = seg.psh;
                return;
            }
            self.flush(tally);
        }
        self.head[..seg.hdr_len].copy_from_slice(&p.pkt[..seg.hdr_len]);
        self.run = Some(TcpRun::start(seg));
        self.last_psh = seg.psh;
        self.iovs.clear();
        self.iovs.push(iov(&[]));
        self.iovs.push(iov(&p.pkt[seg.hdr_len..]));
        self.first = Some(p);
    }

    fn single(&mut self, p: &Inbound<'b>, tally: &mut Tally) {
        if self.sink.write(p.pkt, p.verified).is_err() {
            tally.drop(DropReason::TunWriteFailed, 1);
        }
    }

    fn flush(&mut self, tally: &mut Tally) {
        let (Some(run), Some(first)) = (self.run.take(), self.first.take()) else {
            return;
        };
        if run.count == 1 {
            return self.single(&first, tally);
        }
        let len = gso::run_header(&run, &self.head, self.last_psh, self.run_hdr);
        self.iovs[0] = iov(&self.run_hdr[..len]);
        if self.sink.writev(self.iovs).is_err() {
            tally.drop(DropReason::TunWriteFailed, run.count as u64);
        }
    }
}

//! The forwarding threads. Each worker owns one TUN queue and one UDP socket and runs two
//! OS threads: TUN → peers ([`Egress`]) and peers → TUN ([`Ingress`]). Buffers are allocated
//! once per thread; the hot path only reads, rewrites in place and makes batched syscalls.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::counters::{Counters, DropReason, Tally};
use super::gso::{self, TcpRun, TcpSegment, VnetHdr, Wire, RUN_HEADER_MAX, VNET_HDR_LEN};
use super::packet::{self, ICMP_ERROR_MAX};
use super::socket::{Outgoing, RecvBatch, SendBatch, MAX_GSO_SEGMENTS, MAX_UDP_PAYLOAD};
use super::table::{SharedTable, TableReader};

/// Packets read from the TUN device before one `sendmmsg`.
const EGRESS_BATCH: usize = 8;
/// Datagrams per `recvmmsg`.
const INGRESS_BATCH: usize = 16;
/// A TUN read: virtio-net header plus the largest IPv4 packet.
const TUN_BUF: usize = VNET_HDR_LEN + gso::MAX_IP_PACKET;
/// Segmenting 64 KiB at the smallest MSS a TSO packet may use (536) repeats the headers
/// ~123 times; three times the input covers even 120-byte headers on every segment.
const SEGMENT_BUF: usize = 3 * gso::MAX_IP_PACKET;
/// Poll timeout: how quickly an idle egress thread notices it should stop.
const POLL_MS: libc::c_int = 200;

/// What every thread of the datapath shares.
pub(super) struct Shared {
    pub table: SharedTable,
    pub counters: Counters,
    pub network: Ipv4Net,
    pub port: u16,
    /// The TUN address (own lease's network IP) as u32; 0 before activation.
    pub own_ip: AtomicU32,
    pub stop: AtomicBool,
    /// Cleared when the kernel refuses a `UDP_SEGMENT` send (e.g. the route's device lacks
    /// checksum offload); segments are then sent as separate datagrams.
    pub gso: AtomicBool,
}

/// How the TUN device was opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct TunMode {
    pub vnet_hdr: bool,
    pub tso: bool,
}

fn write_tun(fd: &OwnedFd, parts: &[libc::iovec]) -> io::Result<()> {
    // SAFETY: every iovec points into memory borrowed by the caller for this call.
    let rc = unsafe { libc::writev(fd.as_raw_fd(), parts.as_ptr(), parts.len() as libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn iov(data: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    }
}

const NO_VNET: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// TUN → peers.
pub(super) struct Egress {
    pub shared: Arc<Shared>,
    pub tun: Arc<OwnedFd>,
    pub sock: Arc<OwnedFd>,
    pub mode: TunMode,
}

impl Egress {
    pub fn run(self) {
        // Even slots: TUN reads; odd slots: their segmented form.
        let mut bufs: Vec<Vec<u8>> = (0..EGRESS_BATCH)
            .flat_map(|_| [vec![0u8; TUN_BUF], vec![0u8; SEGMENT_BUF]])
            .collect();
        let mut batch = SendBatch::with_capacity(EGRESS_BATCH * 4);
        let mut reader = self.shared.table.reader();
        let mut tally = Tally::default();
        let mut icmp = [0u8; ICMP_ERROR_MAX];
        while !self.shared.stop.load(Ordering::Relaxed) {
            if !self.wait_readable() {
                continue;
            }
            reader.refresh(&self.shared.table);
            for slot in 0..EGRESS_BATCH {
                let read_buf = &mut bufs[2 * slot];
                // SAFETY: read(2) into our own buffer of the given length.
                let n = unsafe {
                    libc::read(
                        self.tun.as_raw_fd(),
                        read_buf.as_mut_ptr().cast(),
                        read_buf.len(),
                    )
                };
                if n <= 0 {
                    break;
                }
                self.forward(
                    slot, n as usize, &mut bufs, &mut batch, &reader, &mut tally, &mut icmp,
                );
            }
            self.flush(&mut batch, &bufs, &mut tally);
            self.shared.counters.flush(&mut tally);
        }
    }

    fn wait_readable(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.tun.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd we own.
        unsafe { libc::poll(&mut p, 1, POLL_MS) > 0 }
    }

    fn flush(&self, batch: &mut SendBatch, bufs: &[Vec<u8>], tally: &mut Tally) {
        if batch.items.is_empty() {
            return;
        }
        let out = batch.flush(&self.sock, bufs);
        if out.failed_packets > 0 {
            tally.drop(DropReason::SendFailed, out.failed_packets);
            tally.packets_out = tally.packets_out.saturating_sub(out.failed_packets);
            if let Some(e) = out.last_error {
                log::debug!("udp backend: send failed: {e}");
            }
        }
        if out.gso_refused && self.shared.gso.swap(false, Ordering::Relaxed) {
            log::warn!("udp backend: the kernel refused UDP_SEGMENT; sending datagrams one by one");
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        slot: usize,
        n: usize,
        bufs: &mut [Vec<u8>],
        batch: &mut SendBatch,
        reader: &TableReader,
        tally: &mut Tally,
        icmp: &mut [u8; ICMP_ERROR_MAX],
    ) {
        let (head, tail) = bufs.split_at_mut(2 * slot + 1);
        let (read_buf, seg_buf) = (&mut head[2 * slot], &mut tail[0]);
        let (hdr, start) = if self.mode.vnet_hdr {
            match VnetHdr::parse(&read_buf[..n]) {
                Some(h) => (h, VNET_HDR_LEN),
                None => return tally.drop(DropReason::Truncated, 1),
            }
        } else {
            (VnetHdr::default(), 0)
        };
        let pkt = &mut read_buf[start..n];
        let h = match packet::parse(pkt) {
            Ok(h) => h,
            Err(reason) => return tally.drop(reason, 1),
        };
        let pkt = &mut pkt[..h.total_len];
        let Some(peer) = reader.table().lookup(h.dst) else {
            tally.drop(DropReason::NoRoute, 1);
            let own = Ipv4Addr::from(self.shared.own_ip.load(Ordering::Relaxed));
            if !own.is_unspecified() {
                if let Some(len) = packet::net_unreachable(pkt, own, icmp) {
                    self.write_icmp(&icmp[..len], tally);
                }
            }
            return;
        };
        if let Err(reason) = packet::decrement_ttl(pkt) {
            return tally.drop(reason, 1);
        }
        let wire = match gso::to_wire(&hdr, pkt, seg_buf) {
            Ok(w) => w,
            Err(reason) => return tally.drop(reason, 1),
        };
        let (buf, base, stride, count, total) = match wire {
            Wire::InPlace { len } => (2 * slot, start, len, 1, len),
            Wire::Segmented {
                stride,
                count,
                total,
            } => (2 * slot + 1, 0, stride, count, total),
        };
        tally.packets_out += count as u64;
        tally.bytes_out += total as u64;
        let gso = self.shared.gso.load(Ordering::Relaxed);
        let per_send = if gso && count > 1 {
            MAX_GSO_SEGMENTS.min(MAX_UDP_PAYLOAD / stride)
        } else {
            1
        };
        let mut at = 0;
        while at < total {
            let len = (per_send * stride).min(total - at);
            if batch.is_full() {
                self.flush(batch, bufs, tally);
            }
            batch.push(Outgoing {
                buf,
                start: base + at,
                len,
                seg: if per_send > 1 { stride as u16 } else { 0 },
                dst: peer,
            });
            at += len;
        }
    }

    fn write_icmp(&self, icmp: &[u8], tally: &mut Tally) {
        let parts = [iov(&NO_VNET), iov(icmp)];
        let parts = if self.mode.vnet_hdr {
            &parts[..]
        } else {
            &parts[1..]
        };
        match write_tun(&self.tun, parts) {
            Ok(()) => tally.icmp_unreachable += 1,
            Err(_) => tally.drop(DropReason::TunWriteFailed, 1),
        }
    }
}

/// Ends the exclusive borrow of a packet that was rewritten in place, keeping its lifetime.
fn downgrade(pkt: &mut [u8]) -> &[u8] {
    pkt
}

/// Peers → TUN.
pub(super) struct Ingress {
    pub shared: Arc<Shared>,
    pub tun: Arc<OwnedFd>,
    pub sock: Arc<OwnedFd>,
    pub mode: TunMode,
}

impl Ingress {
    pub fn run(self) {
        let mut batch = RecvBatch::new(INGRESS_BATCH, gso::MAX_IP_PACKET);
        let mut reader = self.shared.table.reader();
        let mut tally = Tally::default();
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(1024);
        let mut run_hdr = [0u8; RUN_HEADER_MAX];
        while !self.shared.stop.load(Ordering::Relaxed) {
            let got = match batch.recv(&self.sock) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if !self.shared.stop.load(Ordering::Relaxed) {
                        log::warn!("udp backend: receive failed: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    continue;
                }
            };
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            reader.refresh(&self.shared.table);
            let mut out = TunWriter {
                tun: &self.tun,
                mode: self.mode,
                iovs: &mut iovs,
                run_hdr: &mut run_hdr,
                run: None,
                head: [0; RUN_HEADER_MAX],
                first: None,
                last_psh: false,
            };
            for (buf, meta) in batch.bufs.iter_mut().zip(&batch.meta).take(got) {
                let from_peer = meta.src.is_some_and(|s| reader.table().is_peer(*s.ip()));
                let data = &mut buf[..meta.len];
                let seg = meta.seg.unwrap_or(meta.len).max(1);
                if !from_peer {
                    tally.drop(
                        DropReason::UnknownPeer,
                        meta.len.div_ceil(seg).max(1) as u64,
                    );
                    continue;
                }
                if data.is_empty() {
                    tally.drop(DropReason::Truncated, 1);
                    continue;
                }
                for pkt in data.chunks_mut(seg) {
                    match packet::accept_inbound(pkt, self.shared.network) {
                        Ok(len) => {
                            tally.packets_in += 1;
                            tally.bytes_in += len as u64;
                            out.packet(&downgrade(pkt)[..len], &mut tally);
                        }
                        Err(reason) => tally.drop(reason, 1),
                    }
                }
            }
            out.flush(&mut tally);
            self.shared.counters.flush(&mut tally);
        }
    }
}

/// Writes accepted packets into the TUN device, merging runs of one TCP flow into one
/// super-packet when the device takes them (that is most of the throughput: one write per
/// 64 KiB instead of ~45).
struct TunWriter<'a, 'b> {
    tun: &'a OwnedFd,
    mode: TunMode,
    /// [header, first payload, further payloads...] of the current run; the pointers refer
    /// to packets borrowed for `'b`.
    iovs: &'a mut Vec<libc::iovec>,
    run_hdr: &'a mut [u8; RUN_HEADER_MAX],
    run: Option<TcpRun>,
    /// The headers of the run's first packet, to compare followers against.
    head: [u8; RUN_HEADER_MAX],
    first: Option<&'b [u8]>,
    last_psh: bool,
}

impl<'b> TunWriter<'_, 'b> {
    fn packet(&mut self, pkt: &'b [u8], tally: &mut Tally) {
        let seg = if self.mode.tso {
            TcpSegment::parse(pkt)
        } else {
            None
        };
        let Some(seg) = seg else {
            self.flush(tally);
            return self.single(pkt, tally);
        };
        if let Some(run) = self.run.as_mut() {
            if self.iovs.len() < 1000 && run.try_extend(&self.head, pkt, &seg) {
                self.iovs.push(iov(&pkt[seg.hdr_len..]));
                self.last_psh = seg.psh;
                return;
            }
            self.flush(tally);
        }
        self.head[..seg.hdr_len].copy_from_slice(&pkt[..seg.hdr_len]);
        self.run = Some(TcpRun::start(seg));
        self.first = Some(pkt);
        self.last_psh = seg.psh;
        self.iovs.clear();
        self.iovs.push(iov(&[]));
        self.iovs.push(iov(&pkt[seg.hdr_len..]));
    }

    fn single(&mut self, pkt: &[u8], tally: &mut Tally) {
        let parts = [iov(&NO_VNET), iov(pkt)];
        let parts = if self.mode.vnet_hdr {
            &parts[..]
        } else {
            &parts[1..]
        };
        if write_tun(self.tun, parts).is_err() {
            tally.drop(DropReason::TunWriteFailed, 1);
        }
    }

    fn flush(&mut self, tally: &mut Tally) {
        let (Some(run), Some(first)) = (self.run.take(), self.first.take()) else {
            return;
        };
        if run.count == 1 {
            return self.single(first, tally);
        }
        let len = gso::run_header(&run, &self.head, self.last_psh, self.run_hdr);
        self.iovs[0] = iov(&self.run_hdr[..len]);
        if write_tun(self.tun, self.iovs).is_err() {
            tally.drop(DropReason::TunWriteFailed, run.count as u64);
        }
    }
}

//! Offloads between the TUN device and the wire, as pure functions.
//!
//! With `IFF_VNET_HDR` and TSO negotiated, the kernel hands us TCP super-packets of up to
//! 64 KiB with a virtio-net header instead of MTU-sized packets. The wire carries one inner
//! packet per datagram (an upstream peer expects exactly that), so [`to_wire`] cuts a
//! super-packet into MTU-sized TCP/IPv4 packets with correct checksums, laid out back to back
//! at a fixed stride for `UDP_SEGMENT`. In the other direction [`TcpRun`] finds consecutive
//! segments of one TCP flow among received packets, and [`run_header`] builds the header
//! that lets the TUN device take them as one super-packet.

use super::checksum;
use super::packet::{self, PROTO_TCP};
use crate::metrics::DropReason;

pub const VNET_HDR_LEN: usize = 10;
pub const VNET_F_NEEDS_CSUM: u8 = 1;
pub const VNET_GSO_NONE: u8 = 0;
pub const VNET_GSO_TCPV4: u8 = 1;
/// Largest IPv4 packet (Total Length is 16 bits).
pub const MAX_IP_PACKET: usize = 65535;

const TCP_CHECKSUM_AT: usize = 16;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// `struct virtio_net_hdr` in the host's byte order (the TUN default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    pub fn write(&self, out: &mut [u8]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

/// Where [`to_wire`] put the packets: `count` packets at a stride of `stride` bytes, the last
/// one possibly shorter; `total` bytes in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `pkt` itself is the one packet to send (checksum completed in place if asked).
    InPlace { len: usize },
    /// The packets were written to `out`.
    Segmented {
        stride: usize,
        count: usize,
        total: usize,
    },
}

/// Finishes a partial checksum the kernel left to us (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the
/// field already holds the pseudo-header sum, the rest is everything from `csum_start`.
fn complete_checksum(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<(), DropReason> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > pkt.len() || start >= pkt.len() {
        return Err(DropReason::BadOffload);
    }
    let sum = !checksum::fold(checksum::add(0, &pkt[start..]));
    checksum::store(pkt, at, sum);
    Ok(())
}

/// Turns what the TUN device produced (after its virtio-net header) into wire packets.
pub fn to_wire(hdr: &VnetHdr, pkt: &mut [u8], out: &mut [u8]) -> Result<Wire, DropReason> {
    match hdr.gso_type {
        VNET_GSO_NONE => {
            if hdr.flags & VNET_F_NEEDS_CSUM != 0 {
                complete_checksum(hdr, pkt)?;
            }
            Ok(Wire::InPlace { len: pkt.len() })
        }
        VNET_GSO_TCPV4 => segment_tcp4(pkt, usize::from(hdr.gso_size), out),
        _ => Err(DropReason::BadOffload),
    }
}

/// The TCP/IPv4 header lengths of a TSO super-packet, checked against the buffer.
fn tcp4_layout(pkt: &[u8]) -> Result<(usize, usize), DropReason> {
    if pkt.len() < packet::IPV4_MIN_HEADER || pkt[0] >> 4 != 4 {
        return Err(DropReason::BadOffload);
    }
    let ip_len = usize::from(pkt[0] & 0x0f) * 4;
    if ip_len < packet::IPV4_MIN_HEADER || pkt[9] != PROTO_TCP || pkt.len() < ip_len + 20 {
        return Err(DropReason::BadOffload);
    }
    let tcp_len = usize::from(pkt[ip_len + 12] >> 4) * 4;
    if tcp_len < 20 || pkt.len() < ip_len + tcp_len {
        return Err(DropReason::BadOffload);
    }
    Ok((ip_len, tcp_len))
}

/// Writes the IPv4 length and checksum and the TCP checksum of one finished packet.
fn finish_tcp4(p: &mut [u8], ip_len: usize) {
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[10..12].fill(0);
    let ip_sum = checksum::of(&p[..ip_len]);
    checksum::store(p, 10, ip_sum);
    let tcp_total = (p.len() - ip_len) as u16;
    let (src, dst) = ([p[12], p[13], p[14], p[15]], [p[16], p[17], p[18], p[19]]);
    let at = ip_len + TCP_CHECKSUM_AT;
    p[at..at + 2].fill(0);
    let sum = checksum::add(
        checksum::pseudo_v4(src, dst, PROTO_TCP, tcp_total),
        &p[ip_len..],
    );
    checksum::store(p, at, !checksum::fold(sum));
}

/// The fields a segment's header takes from the super-packet's.
#[derive(Clone, Copy)]
struct Segmenter {
    ip_len: usize,
    mss: usize,
    count: usize,
    id: u16,
    seq: u32,
    flags: u8,
}

impl Segmenter {
    fn new(header: &[u8], ip_len: usize, mss: usize, count: usize) -> Segmenter {
        Segmenter {
            ip_len,
            mss,
            count,
            id: u16::from_be_bytes([header[4], header[5]]),
            seq: u32::from_be_bytes(header[ip_len + 4..ip_len + 8].try_into().expect("4 bytes")),
            flags: header[ip_len + 13],
        }
    }

    /// Makes `seg` (header then payload) the `i`-th segment: ID, sequence number, flags
    /// (FIN and PSH on the last only, CWR on the first only), lengths and checksums.
    fn finish(&self, seg: &mut [u8], i: usize) {
        let ip_len = self.ip_len;
        seg[4..6].copy_from_slice(&self.id.wrapping_add(i as u16).to_be_bytes());
        let s = self.seq.wrapping_add((i * self.mss) as u32);
        seg[ip_len + 4..ip_len + 8].copy_from_slice(&s.to_be_bytes());
        let mut f = self.flags;
        if i + 1 < self.count {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        seg[ip_len + 13] = f;
        finish_tcp4(seg, ip_len);
    }
}

/// How a TCP/IPv4 packet with TSO goes on the wire.
enum TcpLayout {
    /// It fits one MSS: its checksums are finished in place and it goes as it is.
    Single,
    Segments {
        ip_len: usize,
        hdr_len: usize,
        payload: usize,
        count: usize,
    },
}

fn tcp4_plan(pkt: &mut [u8], mss: usize) -> Result<TcpLayout, DropReason> {
    let (ip_len, tcp_len) = tcp4_layout(pkt)?;
    let hdr_len = ip_len + tcp_len;
    let payload = pkt.len() - hdr_len;
    if mss == 0 {
        return Err(DropReason::BadOffload);
    }
    if payload <= mss {
        finish_tcp4(pkt, ip_len);
        return Ok(TcpLayout::Single);
    }
    Ok(TcpLayout::Segments {
        ip_len,
        hdr_len,
        payload,
        count: payload.div_ceil(mss),
    })
}

fn segment_tcp4(pkt: &mut [u8], mss: usize, out: &mut [u8]) -> Result<Wire, DropReason> {
    let TcpLayout::Segments {
        ip_len,
        hdr_len,
        payload,
        count,
    } = tcp4_plan(pkt, mss)?
    else {
        return Ok(Wire::InPlace { len: pkt.len() });
    };
    let stride = hdr_len + mss;
    let total = count * hdr_len + payload;
    if total > out.len() {
        return Err(DropReason::BadOffload);
    }
    let (header, data) = pkt.split_at(hdr_len);
    let seg_maker = Segmenter::new(header, ip_len, mss, count);
    for (i, chunk) in data.chunks(mss).enumerate() {
        let seg = &mut out[i * stride..i * stride + hdr_len + chunk.len()];
        seg[..hdr_len].copy_from_slice(header);
        seg[hdr_len..].copy_from_slice(chunk);
        seg_maker.finish(seg, i);
    }
    Ok(Wire::Segmented {
        stride,
        count,
        total,
    })
}

/// Hands every wire packet of what the TUN device produced to `emit`, cutting a TSO
/// super-packet into MSS-sized TCP/IPv4 packets *in place*: segment `i`'s header is written
/// over the last header-length bytes of segment `i - 1`'s payload, so `emit` must be done
/// with a packet's bytes when it returns (WireGuard copies each into its outbox as it
/// encrypts). No payload byte is copied. Returns how many packets were emitted.
pub fn for_each_wire_packet(
    hdr: &VnetHdr,
    pkt: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, DropReason> {
    if hdr.gso_type != VNET_GSO_TCPV4 {
        return match to_wire(hdr, pkt, &mut [])? {
            Wire::InPlace { len } => {
                emit(&pkt[..len]);
                Ok(1)
            }
            // Only a TCPv4 super-packet is ever segmented, and that was not one.
            Wire::Segmented { .. } => Err(DropReason::BadOffload),
        };
    }
    let mss = usize::from(hdr.gso_size);
    let TcpLayout::Segments {
        ip_len,
        hdr_len,
        payload,
        count,
    } = tcp4_plan(pkt, mss)?
    else {
        emit(pkt);
        return Ok(1);
    };
    let mut header = [0u8; MAX_HEADERS];
    header[..hdr_len].copy_from_slice(&pkt[..hdr_len]);
    let seg_maker = Segmenter::new(&header, ip_len, mss, count);
    for i in 0..count {
        let start = i * mss;
        let len = hdr_len + mss.min(payload - i * mss);
        let seg = &mut pkt[start..start + len];
        seg[..hdr_len].copy_from_slice(&header[..hdr_len]);
        seg_maker.finish(seg, i);
        emit(seg);
    }
    Ok(count)
}

/// IPv4 and TCP headers with all their options.
const MAX_HEADERS: usize = 60 + 60;

/// A TCP/IPv4 packet that may join a run: plain 20-byte IPv4 header, not a fragment, payload
/// present, and no flag but ACK and PSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    pub hdr_len: usize,
    pub payload: usize,
    pub seq: u32,
    pub psh: bool,
}

impl TcpSegment {
    /// `pkt` is exactly one validated IPv4 packet (no padding).
    pub fn parse(pkt: &[u8]) -> Option<TcpSegment> {
        if pkt.len() < 40 || pkt[0] != 0x45 || pkt[9] != PROTO_TCP {
            return None;
        }
        let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
        if frag & 0x3fff != 0 {
            return None;
        }
        let tcp_len = usize::from(pkt[32] >> 4) * 4;
        let hdr_len = 20 + tcp_len;
        let flags = pkt[33];
        if tcp_len < 20
            || pkt.len() <= hdr_len
            || flags & !(TCP_ACK | TCP_PSH) != 0
            || flags & TCP_ACK == 0
        {
            return None;
        }
        Some(TcpSegment {
            hdr_len,
            payload: pkt.len() - hdr_len,
            seq: u32::from_be_bytes(pkt[24..28].try_into().expect("4 bytes")),
            psh: flags & TCP_PSH != 0,
        })
    }
}

/// Consecutive segments of one flow that the TUN device can take as one super-packet: every
/// segment but the last carries exactly `gso_size` bytes, sequence numbers follow on, headers
/// agree in everything but length, ID, checksums and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRun {
    pub first: TcpSegment,
    pub count: usize,
    pub payload: usize,
    next_seq: u32,
    closed: bool,
}

impl TcpRun {
    pub fn start(first: TcpSegment) -> TcpRun {
        TcpRun {
            first,
            count: 1,
            payload: first.payload,
            next_seq: first.seq.wrapping_add(first.payload as u32),
            closed: first.psh,
        }
    }

    pub fn gso_size(&self) -> usize {
        self.first.payload
    }

    /// Adds `seg` (the packet `pkt`) if it continues the run whose first packet is `head`.
    pub fn try_extend(&mut self, head: &[u8], pkt: &[u8], seg: &TcpSegment) -> bool {
        let h = self.first.hdr_len;
        let joinable = !self.closed
            && seg.hdr_len == h
            && seg.seq == self.next_seq
            && seg.payload <= self.gso_size()
            && h + self.payload + seg.payload <= MAX_IP_PACKET
            // TOS, DF, TTL, protocol, addresses.
            && head[1] == pkt[1]
            && head[6..10] == pkt[6..10]
            && head[12..20] == pkt[12..20]
            // Ports; then acknowledgment, data offset, window; then options.
            && head[20..24] == pkt[20..24]
            && head[28..33] == pkt[28..33]
            && head[34..36] == pkt[34..36]
            && head[40..h] == pkt[40..h];
        if !joinable {
            return false;
        }
        self.count += 1;
        self.payload += seg.payload;
        self.next_seq = self.next_seq.wrapping_add(seg.payload as u32);
        self.closed = seg.psh || seg.payload < self.gso_size();
        true
    }
}

/// Room for the virtio-net header and the largest TCP/IPv4 header.
pub const RUN_HEADER_MAX: usize = VNET_HDR_LEN + 20 + 60;

/// Writes the virtio-net header and the IPv4/TCP headers of the super-packet `run`, whose
/// first packet is `head` and last `last_psh` says whether the last one pushed. Returns the
/// header length; the payloads of the packets follow it in order.
pub fn run_header(
    run: &TcpRun,
    head: &[u8],
    last_psh: bool,
    out: &mut [u8; RUN_HEADER_MAX],
) -> usize {
    let h = run.first.hdr_len;
    let tcp_total = h - 20 + run.payload;
    VnetHdr {
        flags: VNET_F_NEEDS_CSUM,
        gso_type: VNET_GSO_TCPV4,
        hdr_len: h as u16,
        gso_size: run.gso_size() as u16,
        csum_start: 20,
        csum_offset: TCP_CHECKSUM_AT as u16,
    }
    .write(&mut out[..VNET_HDR_LEN]);
    let p = &mut out[VNET_HDR_LEN..VNET_HDR_LEN + h];
    p.copy_from_slice(&head[..h]);
    p[2..4].copy_from_slice(&((20 + tcp_total) as u16).to_be_bytes());
    p[10..12].fill(0);
    let ip_sum = checksum::of(&p[..20]);
    checksum::store(p, 10, ip_sum);
    if last_psh {
        p[33] |= TCP_PSH;
    }
    // A partial checksum holds the pseudo-header sum, not inverted, for the whole length;
    // the kernel completes it per segment when it segments or delivers.
    let src = [p[12], p[13], p[14], p[15]];
    let dst = [p[16], p[17], p[18], p[19]];
    let pseudo = checksum::fold(checksum::pseudo_v4(src, dst, PROTO_TCP, tcp_total as u16));
    checksum::store(p, 20 + TCP_CHECKSUM_AT, pseudo);
    VNET_HDR_LEN + h
}

#[cfg(test)]
#[path = "gso_tests.rs"]
mod tests;

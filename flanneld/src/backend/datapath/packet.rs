//! IPv4 rules of the udp backend, as pure functions over byte buffers: what a valid inner
//! packet is, TTL handling and the ICMP error upstream sends for unknown destinations.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::checksum;
use crate::metrics::DropReason;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const IPV4_MIN_HEADER: usize = 20;
/// TTL of the ICMP errors we originate, as upstream's proxy.
pub const ICMP_TTL: u8 = 8;
/// Largest ICMP error we build: our header, ICMP header, the offending header (with options)
/// and 8 bytes of its payload.
pub const ICMP_ERROR_MAX: usize = IPV4_MIN_HEADER + 8 + 60 + 8;

const TTL_AT: usize = 8;
const CHECKSUM_AT: usize = 10;

/// The fields of an IPv4 header the datapath looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub header_len: usize,
    /// The Total Length field.
    pub total_len: usize,
    pub ttl: u8,
    pub protocol: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// In 8-byte units; non-zero for every fragment but the first.
    pub fragment_offset: u16,
    pub more_fragments: bool,
}

/// Parses the header of the packet at the start of `buf`. `buf` may hold trailing bytes
/// beyond Total Length (padding); it may not be shorter.
pub fn parse(buf: &[u8]) -> Result<Ipv4Header, DropReason> {
    let first = *buf.first().ok_or(DropReason::Truncated)?;
    if first >> 4 != 4 {
        return Err(DropReason::NotIp);
    }
    if buf.len() < IPV4_MIN_HEADER {
        return Err(DropReason::Truncated);
    }
    let header_len = usize::from(first & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if header_len < IPV4_MIN_HEADER || header_len > total_len || total_len > buf.len() {
        return Err(DropReason::Truncated);
    }
    let frag = u16::from_be_bytes([buf[6], buf[7]]);
    Ok(Ipv4Header {
        header_len,
        total_len,
        ttl: buf[TTL_AT],
        protocol: buf[9],
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
        fragment_offset: frag & 0x1fff,
        more_fragments: frag & 0x2000 != 0,
    })
}

/// Decrements the TTL in place (checksum updated incrementally). A packet whose TTL would
/// reach zero is dropped, as a router does.
pub fn decrement_ttl(pkt: &mut [u8]) -> Result<(), DropReason> {
    if pkt.len() < IPV4_MIN_HEADER {
        return Err(DropReason::Truncated);
    }
    if pkt[TTL_AT] <= 1 {
        return Err(DropReason::TtlExpired);
    }
    let old = u16::from_ne_bytes([pkt[TTL_AT], pkt[TTL_AT + 1]]);
    pkt[TTL_AT] -= 1;
    let new = u16::from_ne_bytes([pkt[TTL_AT], pkt[TTL_AT + 1]]);
    checksum::update(pkt, CHECKSUM_AT, old, new);
    Ok(())
}

/// Checks a packet received from a peer and prepares it for the TUN device: valid IPv4,
/// addressed inside the flannel network, TTL decremented. Returns its length without padding.
pub fn accept_inbound(pkt: &mut [u8], network: Ipv4Net) -> Result<usize, DropReason> {
    let h = parse(pkt)?;
    if !network.contains(&h.dst) {
        return Err(DropReason::OutsideNetwork);
    }
    decrement_ttl(&mut pkt[..h.total_len])?;
    Ok(h.total_len)
}

/// Builds the ICMP "destination net unreachable" answer to `original` into `out`, from
/// `src` (the TUN address). None when no error may be sent: for ICMP itself (no errors
/// about errors, and upstream spares echo too) and for non-first fragments.
pub fn net_unreachable(
    original: &[u8],
    src: Ipv4Addr,
    out: &mut [u8; ICMP_ERROR_MAX],
) -> Option<usize> {
    let h = parse(original).ok()?;
    if h.protocol == PROTO_ICMP || h.fragment_offset != 0 {
        return None;
    }
    let quoted = (h.header_len + 8).min(h.total_len);
    let total = IPV4_MIN_HEADER + 8 + quoted;
    out[..total].fill(0);
    out[0] = 0x45;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[TTL_AT] = ICMP_TTL;
    out[9] = PROTO_ICMP;
    out[12..16].copy_from_slice(&src.octets());
    out[16..20].copy_from_slice(&h.src.octets());
    let ip_sum = checksum::of(&out[..IPV4_MIN_HEADER]);
    checksum::store(out, CHECKSUM_AT, ip_sum);
    let icmp = IPV4_MIN_HEADER;
    out[icmp] = 3; // destination unreachable
    out[icmp + 1] = 0; // net unreachable
    out[icmp + 8..total].copy_from_slice(&original[..quoted]);
    let icmp_sum = checksum::of(&out[icmp..total]);
    checksum::store(out, icmp + 2, icmp_sum);
    Some(total)
}

/// Whether a header is intact (sums to zero); for tests and assertions.
pub fn header_checksum_ok(pkt: &[u8]) -> bool {
    parse(pkt).is_ok_and(|h| checksum::of(&pkt[..h.header_len]) == 0)
}

#[cfg(test)]
#[path = "packet_tests.rs"]
pub(crate) mod tests;

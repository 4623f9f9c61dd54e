//! Counters of the datapaths flanneld runs itself (the udp backend and userspace WireGuard),
//! and their exposition.
//!
//! The forwarding threads add to [`DatapathCounters`] once per batch from a thread-local
//! [`Tally`]; a scrape reads a [`CounterSnapshot`] through a source closure. The totals are
//! the datapath's own, so they are exposed as constant samples rather than mirrored into
//! counters of ours.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// Why a packet or datagram was not forwarded. Declared udp's own first, then what both
/// datapaths drop for, then WireGuard's own, so each backend's reasons are one slice of
/// [`DropReason::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// TTL would reach zero.
    TtlExpired,
    /// From a peer, addressed outside the flannel network.
    OutsideNetwork,
    /// Shorter than its IP header or its own total length says.
    Truncated,
    /// Not an IP packet this path carries (the kernel also sends IPv6 router solicitations
    /// into an IPv4-only TUN device).
    NotIp,
    /// From the TUN device to an address no peer serves.
    NoRoute,
    /// A datagram whose source is no known peer (udp), or a handshake from a public key that
    /// belongs to no peer (WireGuard).
    UnknownPeer,
    /// A virtio-net header or GSO super-packet we cannot segment.
    BadOffload,
    /// The UDP socket refused the datagram (no route to the peer, buffer full, ...).
    SendFailed,
    /// The TUN device refused the packet.
    TunWriteFailed,
    /// Not a WireGuard message: unknown type, or a length its type never has.
    Malformed,
    /// A handshake message whose MAC1 does not match this node's public key.
    BadMac,
    /// A handshake refused because the node is under load: answered with a cookie, or
    /// dropped when no cookie can be sent.
    UnderLoad,
    /// A handshake message that failed the protocol (bad static key, replayed timestamp,
    /// no matching handshake in progress).
    HandshakeFailed,
    /// A data message whose counter was already seen or is older than the replay window.
    Replayed,
    /// A data message for a session index this node does not have (expired or forged).
    UnknownSession,
    /// A data message whose authentication tag is wrong.
    DecryptFailed,
    /// A decrypted packet whose source address is outside the sending peer's allowed IPs.
    DisallowedSource,
}

impl DropReason {
    /// Every reason, in declaration order (the counters' index).
    pub const ALL: [DropReason; 17] = [
        DropReason::TtlExpired,
        DropReason::OutsideNetwork,
        DropReason::Truncated,
        DropReason::NotIp,
        DropReason::NoRoute,
        DropReason::UnknownPeer,
        DropReason::BadOffload,
        DropReason::SendFailed,
        DropReason::TunWriteFailed,
        DropReason::Malformed,
        DropReason::BadMac,
        DropReason::UnderLoad,
        DropReason::HandshakeFailed,
        DropReason::Replayed,
        DropReason::UnknownSession,
        DropReason::DecryptFailed,
        DropReason::DisallowedSource,
    ];

    /// What the udp backend can drop for: its two own reasons and the shared ones.
    pub const UDP: &'static [DropReason] = DropReason::ALL.split_at(9).0;

    /// What userspace WireGuard can drop for: the shared reasons and its own.
    pub const WIREGUARD: &'static [DropReason] = DropReason::ALL.split_at(2).1;

    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            // The udp backend's label since it first had this counter.
            DropReason::NotIp => "not_ipv4",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::OutsideNetwork => "outside_network",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::BadOffload => "bad_offload",
            DropReason::SendFailed => "send_failed",
            DropReason::TunWriteFailed => "tun_write_failed",
            DropReason::Malformed => "malformed",
            DropReason::BadMac => "bad_mac",
            DropReason::UnderLoad => "under_load",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::Replayed => "replayed",
            DropReason::UnknownSession => "unknown_session",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::DisallowedSource => "disallowed_source",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Totals since the datapath started. "Out" is TUN → peers, "in" is peers → TUN; both count
/// inner packets (a GSO super-packet counts as the packets it carries on the wire).
#[derive(Debug, Default)]
pub struct DatapathCounters {
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    icmp_unreachable: AtomicU64,
    cookie_replies: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

/// A consistent-enough copy of [`DatapathCounters`] for reporting, or (as [`Tally`]) what
/// one thread counted before adding it to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// ICMP unreachable messages written back into the TUN device.
    pub icmp_unreachable: u64,
    /// WireGuard cookie replies sent to handshakes that arrived under load.
    pub cookie_replies: u64,
    pub drops: [u64; DropReason::ALL.len()],
}

impl CounterSnapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Counts `packets` dropped for `reason`.
    pub fn drop(&mut self, reason: DropReason, packets: u64) {
        self.drops[reason.index()] += packets;
    }

    /// The sum of two datapaths' counters (WireGuard's two devices in `separate` mode).
    pub fn add(&self, o: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            packets_out: self.packets_out + o.packets_out,
            bytes_out: self.bytes_out + o.bytes_out,
            packets_in: self.packets_in + o.packets_in,
            bytes_in: self.bytes_in + o.bytes_in,
            icmp_unreachable: self.icmp_unreachable + o.icmp_unreachable,
            cookie_replies: self.cookie_replies + o.cookie_replies,
            drops: std::array::from_fn(|i| self.drops[i] + o.drops[i]),
        }
    }
}

impl DatapathCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            packets_out: load(&self.packets_out),
            bytes_out: load(&self.bytes_out),
            packets_in: load(&self.packets_in),
            bytes_in: load(&self.bytes_in),
            icmp_unreachable: load(&self.icmp_unreachable),
            cookie_replies: load(&self.cookie_replies),
            drops: std::array::from_fn(|i| load(&self.drops[i])),
        }
    }

    /// Adds a thread's local tally and clears it.
    pub fn flush(&self, t: &mut Tally) {
        let add = |a: &AtomicU64, v: &mut u64| {
            if *v != 0 {
                a.fetch_add(*v, Ordering::Relaxed);
                *v = 0;
            }
        };
        add(&self.packets_out, &mut t.packets_out);
        add(&self.bytes_out, &mut t.bytes_out);
        add(&self.packets_in, &mut t.packets_in);
        add(&self.bytes_in, &mut t.bytes_in);
        add(&self.icmp_unreachable, &mut t.icmp_unreachable);
        add(&self.cookie_replies, &mut t.cookie_replies);
        for (a, v) in self.drops.iter().zip(t.drops.iter_mut()) {
            add(a, v);
        }
    }
}

/// One forwarding thread's counts since its last flush: the same fields as a snapshot, kept
/// in plain integers so the hot path makes no atomic operation per packet.
pub type Tally = CounterSnapshot;

/// A live view of a userspace datapath's counters, readable from any thread.
pub type CounterSource = Arc<dyn Fn() -> CounterSnapshot + Send + Sync>;

/// The udp backend's families (`flannel_udp_*`).
pub(super) struct UdpCollector(pub CounterSource);

impl fmt::Debug for UdpCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UdpCollector")
    }
}

pub(super) fn const_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

pub(super) fn labelled_counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let c = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, c.metric_type())?;
    for (value, n) in samples {
        ConstCounter::new(n).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

/// `<prefix>_dropped_packets_total{reason}` for the reasons a datapath can drop for.
pub(super) fn drops(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snap: &CounterSnapshot,
    reasons: &[DropReason],
) -> fmt::Result {
    labelled_counters(
        encoder,
        name,
        help,
        "reason",
        reasons.iter().map(|r| (r.as_str(), snap.dropped(*r))),
    )
}

impl Collector for UdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snap = (self.0)();
        labelled_counters(
            &mut encoder,
            "flannel_udp_packets",
            "Inner IPv4 packets forwarded by the udp backend (out: TUN to peers, in: peers to TUN).",
            "direction",
            [("in", snap.packets_in), ("out", snap.packets_out)],
        )?;
        labelled_counters(
            &mut encoder,
            "flannel_udp_bytes",
            "Bytes of inner IPv4 packets forwarded by the udp backend.",
            "direction",
            [("in", snap.bytes_in), ("out", snap.bytes_out)],
        )?;
        drops(
            &mut encoder,
            "flannel_udp_dropped_packets",
            "Packets the udp backend did not forward, by reason.",
            &snap,
            DropReason::UDP,
        )?;
        const_counter(
            &mut encoder,
            "flannel_udp_icmp_unreachable_sent",
            "ICMP net-unreachable replies written back for packets to subnets no peer serves.",
            snap.icmp_unreachable,
        )
    }
}

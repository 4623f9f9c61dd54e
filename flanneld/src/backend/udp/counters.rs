//! Datapath counters, kept in atomics so the daemon (or a later `/metrics`) can read them
//! while the forwarding threads run. Threads add per batch, not per packet.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than its IPv4 header or its own total length says.
    Truncated,
    /// Not IPv4 (the kernel also sends IPv6 router solicitations into the TUN device).
    NotIpv4,
    /// TTL would reach zero.
    TtlExpired,
    /// From the TUN device to an address no peer serves (answered with ICMP net unreachable).
    NoRoute,
    /// From a peer, addressed outside the flannel network.
    OutsideNetwork,
    /// A datagram whose source is no known peer.
    UnknownPeer,
    /// A virtio-net header or GSO super-packet we cannot segment (inconsistent lengths, not TCP).
    BadOffload,
    /// The UDP socket refused the datagram (no route to the peer, buffer full, ...).
    SendFailed,
    /// The TUN device refused the packet.
    TunWriteFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::Truncated,
        DropReason::NotIpv4,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::OutsideNetwork,
        DropReason::UnknownPeer,
        DropReason::BadOffload,
        DropReason::SendFailed,
        DropReason::TunWriteFailed,
    ];

    /// A metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::OutsideNetwork => "outside_network",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::BadOffload => "bad_offload",
            DropReason::SendFailed => "send_failed",
            DropReason::TunWriteFailed => "tun_write_failed",
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

/// Totals since the backend started. "Out" is TUN → peers, "in" is peers → TUN; both count
/// inner IPv4 packets (a GSO super-packet counts as the packets it carries on the wire).
#[derive(Debug, Default)]
pub struct Counters {
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    icmp_unreachable: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

/// A consistent-enough copy of [`Counters`] for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// ICMP net-unreachable messages written back into the TUN device.
    pub icmp_unreachable: u64,
    pub drops: [u64; DropReason::ALL.len()],
}

impl CounterSnapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            packets_out: load(&self.packets_out),
            bytes_out: load(&self.bytes_out),
            packets_in: load(&self.packets_in),
            bytes_in: load(&self.bytes_in),
            icmp_unreachable: load(&self.icmp_unreachable),
            drops: std::array::from_fn(|i| load(&self.drops[i])),
        }
    }

    /// Adds a thread's local tally and clears it.
    pub(super) fn flush(&self, t: &mut Tally) {
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
        for (a, v) in self.drops.iter().zip(t.drops.iter_mut()) {
            add(a, v);
        }
    }
}

/// One thread's counts since its last flush (plain integers: no atomics per packet).
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub icmp_unreachable: u64,
    pub drops: [u64; DropReason::ALL.len()],
}

impl Tally {
    pub fn drop(&mut self, reason: DropReason, packets: u64) {
        self.drops[reason.index()] += packets;
    }
}

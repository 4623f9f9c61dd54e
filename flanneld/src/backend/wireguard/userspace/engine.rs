//! The WireGuard protocol on the shared datapath: packets from the TUN device are encrypted
//! for the peer whose allowed IPs hold their destination; datagrams are matched to a peer by
//! session index (data, handshake responses, cookie replies) or by the static key inside a
//! handshake initiation, and handed to that peer's state machine.
//!
//! The state machine, its timers and all cryptography are boringtun's (`noise::Tunn`); what
//! is ours is routing (cryptokey routing both ways: a decrypted packet must come from an
//! address the sending peer is allowed), roaming (the endpoint follows the source of the last
//! authenticated datagram), the device-wide handshake rate limit that turns on cookie replies
//! under load, and the counters.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::peers::{Peer, PeerState, PeerTable};
use crate::backend::datapath::gso::{self, VnetHdr};
use crate::backend::datapath::packet;
use crate::backend::datapath::{Inbound, Outbox, Published, Reader, Space, Transform, TunSink};
use crate::metrics::{DatapathCounters, DropReason, Tally};
use crate::subnet::WgKey;

/// Handshake initiations per second the device answers before it asks for cookies (the
/// value boringtun's own device uses).
pub(super) const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// A data message: type, receiver index, counter, then the packet and a 16-byte tag.
pub(super) const DATA_OVERHEAD: usize = 32;
const HANDSHAKE_INIT_LEN: usize = 148;
const HANDSHAKE_RESP_LEN: usize = 92;
const COOKIE_REPLY_LEN: usize = 64;
/// Room for the largest message the state machine writes besides data (an initiation).
const MESSAGE_ROOM: usize = HANDSHAKE_INIT_LEN;
/// A buffer for the messages timers produce (initiations, keepalives).
pub(super) const MESSAGE_BUF: usize = 256;
/// IPv4 and TCP headers with all their options: what each segment of a super-packet adds.
const MAX_HEADERS: usize = 120;
const TYPE_HANDSHAKE_INIT: u8 = 1;
const TYPE_HANDSHAKE_RESP: u8 = 2;
const TYPE_COOKIE_REPLY: u8 = 3;
const TYPE_DATA: u8 = 4;

pub(super) struct Engine {
    pub private: StaticSecret,
    pub public: PublicKey,
    /// Guards the expensive anonymous step (a Diffie-Hellman to learn who an initiation is
    /// from); each peer's `Tunn` has its own limiter for the rest.
    pub rate_limiter: RateLimiter,
    pub peers: Published<PeerTable>,
    pub counters: DatapathCounters,
}

/// A forwarding thread's own state.
pub(super) struct Local {
    table: Reader<PeerTable>,
    /// Scratch for messages the state machine writes while handling a handshake.
    scratch: Vec<u8>,
}

impl Engine {
    pub fn new(private: StaticSecret) -> Engine {
        let public = PublicKey::from(&private);
        Engine {
            rate_limiter: RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT),
            private,
            public,
            peers: Published::default(),
            counters: DatapathCounters::default(),
        }
    }

    pub fn public_key(&self) -> WgKey {
        WgKey(*self.public.as_bytes())
    }

    /// A fresh state machine for a peer.
    pub fn tunn(
        &self,
        index: u32,
        public_key: &WgKey,
        psk: Option<&WgKey>,
        keepalive: u16,
    ) -> Tunn {
        Tunn::new(
            self.private.clone(),
            PublicKey::from(public_key.0),
            psk.map(|k| k.0),
            (keepalive > 0).then_some(keepalive),
            index,
            None,
        )
    }
}

/// The destination of an IP packet, if it is one.
fn destination(pkt: &[u8]) -> Result<(IpAddr, usize), DropReason> {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let h = packet::parse(pkt)?;
            Ok((IpAddr::V4(h.dst), h.total_len))
        }
        Some(6) => {
            if pkt.len() < 40 {
                return Err(DropReason::Truncated);
            }
            let total = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            if total > pkt.len() {
                return Err(DropReason::Truncated);
            }
            let dst: [u8; 16] = pkt[24..40].try_into().expect("16 bytes");
            Ok((IpAddr::from(dst), total))
        }
        Some(_) => Err(DropReason::NotIp),
        None => Err(DropReason::Truncated),
    }
}

fn error_reason(e: &WireGuardError) -> DropReason {
    match e {
        WireGuardError::InvalidCounter | WireGuardError::DuplicateCounter => DropReason::Replayed,
        WireGuardError::InvalidAeadTag => DropReason::DecryptFailed,
        WireGuardError::NoCurrentSession | WireGuardError::WrongIndex => DropReason::UnknownSession,
        WireGuardError::InvalidMac => DropReason::BadMac,
        WireGuardError::UnderLoad => DropReason::UnderLoad,
        WireGuardError::InvalidPacket
        | WireGuardError::IncorrectPacketLength
        | WireGuardError::WrongPacketType => DropReason::Malformed,
        _ => DropReason::HandshakeFailed,
    }
}

/// Why a handshake message or cookie reply failed: anything but the checks before the
/// Noise processing is the handshake itself failing (a wrong key or PSK shows as a bad tag).
fn handshake_error_reason(e: &WireGuardError) -> DropReason {
    match e {
        WireGuardError::InvalidMac => DropReason::BadMac,
        WireGuardError::UnderLoad => DropReason::UnderLoad,
        WireGuardError::NoCurrentSession | WireGuardError::WrongIndex => DropReason::UnknownSession,
        _ => DropReason::HandshakeFailed,
    }
}

/// Queues `msg`, already written at the start of `out.space()`, as one datagram to `dst`.
fn commit_one(out: &mut Outbox, dst: SocketAddr, len: usize, inner: u32, tally: &mut Tally) {
    out.commit(dst, len, 1, len, inner, tally);
}

/// Copies a message the state machine wrote elsewhere into `out` for `dst`.
fn send_copy(out: &mut Outbox, dst: SocketAddr, msg: &[u8], tally: &mut Tally) {
    out.reserve(msg.len(), 1, tally);
    out.space()[..msg.len()].copy_from_slice(msg);
    commit_one(out, dst, msg.len(), 0, tally);
}

/// Data messages of one peer written back to back into an outbox, sent as one train while
/// they have the same size (only the last may be shorter).
struct Train {
    dst: SocketAddr,
    /// Bytes written at the start of the outbox's space.
    len: usize,
    stride: usize,
    count: usize,
    closed: bool,
}

impl Train {
    fn new(dst: SocketAddr) -> Train {
        Train {
            dst,
            len: 0,
            stride: 0,
            count: 0,
            closed: false,
        }
    }

    /// Whether a message of `n` bytes written right after the train can join it.
    fn fits(&self, n: usize) -> bool {
        self.count == 0 || (!self.closed && n <= self.stride)
    }

    fn push(&mut self, n: usize) {
        if self.count == 0 {
            self.stride = n;
        } else if n < self.stride {
            self.closed = true;
        }
        self.count += 1;
        self.len += n;
    }

    fn commit(&mut self, out: &mut Outbox, tally: &mut Tally) {
        if self.count > 0 {
            out.commit(self.dst, self.stride, self.count, self.len, 1, tally);
        }
        *self = Train::new(self.dst);
    }
}

/// Encrypts one peer's wire-sized packets into an outbox, under the peer's lock.
struct Sealer<'a> {
    peer: &'a Peer,
    state: std::sync::MutexGuard<'a, PeerState>,
    dst: SocketAddr,
    train: Train,
    sent: usize,
    out: &'a mut Outbox,
    tally: &'a mut Tally,
}

impl Sealer<'_> {
    fn seal(&mut self, pkt: &[u8]) {
        let space = &mut self.out.space()[self.train.len..];
        let (n, ty) = match self.state.tunn.encapsulate(pkt, space) {
            TunnResult::WriteToNetwork(msg) => (msg.len(), msg[0]),
            TunnResult::Err(e) => return self.tally.drop(error_reason(&e), 1),
            TunnResult::Done
            | TunnResult::WriteToTunnelV4(..)
            | TunnResult::WriteToTunnelV6(..) => return,
        };
        self.sent += n;
        if ty == TYPE_DATA {
            self.tally.packets_out += 1;
            self.tally.bytes_out += pkt.len() as u64;
            if self.train.fits(n) {
                return self.train.push(n);
            }
        }
        // A handshake initiation (no session yet: the packet was queued), or a message that
        // cannot join the train. Committing the train moves the outbox's space to just past
        // it, where this message was written.
        self.train.commit(self.out, self.tally);
        if ty == TYPE_DATA {
            self.train.push(n);
        } else {
            commit_one(self.out, self.dst, n, 0, self.tally);
        }
    }

    fn finish(mut self) {
        self.train.commit(self.out, self.tally);
        self.peer.sent(self.sent);
    }
}

impl Engine {
    /// A sealer for `peer`, with room reserved for `bytes` of plaintext in `count` packets;
    /// `None` (counted) when the peer has no endpoint to send to.
    fn sealer<'a>(
        &self,
        peer: &'a Peer,
        bytes: usize,
        count: usize,
        out: &'a mut Outbox,
        tally: &'a mut Tally,
    ) -> Option<Sealer<'a>> {
        let state = peer.lock();
        let Some(dst) = state.endpoint else {
            tally.drop(DropReason::NoRoute, count as u64);
            return None;
        };
        out.reserve(
            bytes + count * (DATA_OVERHEAD + MAX_HEADERS) + MESSAGE_ROOM,
            count + 1,
            tally,
        );
        Some(Sealer {
            peer,
            state,
            dst,
            train: Train::new(dst),
            sent: 0,
            out,
            tally,
        })
    }

    /// Sends what the state machine queued while it had no session (after a handshake).
    fn flush_queue(
        &self,
        peer: &Peer,
        state: &mut PeerState,
        scratch: &mut [u8],
        out: &mut Outbox,
        tally: &mut Tally,
    ) {
        let Some(dst) = state.endpoint else { return };
        let mut sent = 0;
        while let TunnResult::WriteToNetwork(msg) = state.tunn.decapsulate(None, &[], scratch) {
            sent += msg.len();
            if msg[0] == TYPE_DATA {
                tally.packets_out += 1;
                tally.bytes_out += (msg.len() - DATA_OVERHEAD) as u64;
            }
            send_copy(out, dst, msg, tally);
        }
        peer.sent(sent);
    }

    /// A handshake message or cookie reply from `src`.
    fn handshake(
        &self,
        local: &mut Local,
        src: SocketAddr,
        dgram: &[u8],
        replies: &mut Outbox,
        tally: &mut Tally,
    ) {
        let table = local.table.get();
        let peer = match dgram[0] {
            TYPE_HANDSHAKE_INIT => {
                let mut cookie = [0u8; COOKIE_REPLY_LEN];
                let parsed =
                    match self
                        .rate_limiter
                        .verify_packet(Some(src.ip()), dgram, &mut cookie)
                    {
                        Ok(p) => p,
                        Err(TunnResult::WriteToNetwork(reply)) => {
                            send_copy(replies, src, reply, tally);
                            tally.cookie_replies += 1;
                            return tally.drop(DropReason::UnderLoad, 1);
                        }
                        Err(TunnResult::Err(e)) => {
                            return tally.drop(handshake_error_reason(&e), 1)
                        }
                        Err(_) => return tally.drop(DropReason::Malformed, 1),
                    };
                let Packet::HandshakeInit(init) = parsed else {
                    return tally.drop(DropReason::Malformed, 1);
                };
                match parse_handshake_anon(&self.private, &self.public, &init) {
                    Ok(half) => match table.by_key(&WgKey(half.peer_static_public)) {
                        Some(p) => p,
                        None => return tally.drop(DropReason::UnknownPeer, 1),
                    },
                    Err(e) => return tally.drop(handshake_error_reason(&e), 1),
                }
            }
            _ => {
                // Response and cookie reply carry our index for the peer at bytes 4..8 (a
                // response starts with its sender's index, then ours).
                let at = if dgram[0] == TYPE_HANDSHAKE_RESP {
                    8
                } else {
                    4
                };
                let receiver = u32::from_le_bytes(dgram[at..at + 4].try_into().expect("4 bytes"));
                match table.by_session(receiver) {
                    Some(p) => p,
                    None => return tally.drop(DropReason::UnknownSession, 1),
                }
            }
        };
        let peer = Arc::clone(peer);
        let mut state = peer.lock();
        let scratch = &mut local.scratch;
        match state.tunn.decapsulate(Some(src.ip()), dgram, scratch) {
            TunnResult::WriteToNetwork(msg) => {
                // A response to an initiation, or the keepalive that confirms a response:
                // either way the handshake is complete from this side.
                let n = msg.len();
                peer.handshake_completed();
                peer.received(dgram.len());
                peer.sent(n);
                if msg[0] == TYPE_COOKIE_REPLY {
                    tally.cookie_replies += 1;
                }
                let msg = msg.to_vec();
                state.endpoint = Some(src);
                send_copy(replies, src, &msg, tally);
                self.flush_queue(&peer, &mut state, scratch, replies, tally);
            }
            TunnResult::Done => peer.received(dgram.len()),
            TunnResult::Err(e) => tally.drop(handshake_error_reason(&e), 1),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                tally.drop(DropReason::Malformed, 1)
            }
        }
    }
}

impl Transform for Engine {
    type Local = Local;

    fn local(&self) -> Local {
        Local {
            table: self.peers.reader(),
            scratch: vec![0; gso::MAX_IP_PACKET + DATA_OVERHEAD],
        }
    }

    fn refresh(&self, local: &mut Local) {
        local.table.refresh(&self.peers);
    }

    fn outbound(
        &self,
        local: &mut Local,
        hdr: &VnetHdr,
        pkt: &mut [u8],
        out: &mut Outbox,
        _tun: &TunSink<'_>,
        tally: &mut Tally,
    ) {
        let (dst, len) = match destination(pkt) {
            Ok(d) => d,
            Err(reason) => return tally.drop(reason, 1),
        };
        let Some(peer) = local.table.get().route(dst).cloned() else {
            return tally.drop(DropReason::NoRoute, 1);
        };
        let pkt = &mut pkt[..len];
        // Upper bounds: a TSO super-packet becomes at most one packet per MSS, each with
        // its own headers (written in place) and WireGuard's overhead.
        let count = match usize::from(hdr.gso_size) {
            0 => 1,
            mss => len / mss + 1,
        };
        let Some(mut sealer) = self.sealer(&peer, len, count, out, tally) else {
            return;
        };
        let cut = gso::for_each_wire_packet(hdr, pkt, |p| sealer.seal(p));
        sealer.finish();
        if let Err(reason) = cut {
            tally.drop(reason, 1);
        }
    }

    fn inbound<'b>(
        &self,
        local: &mut Local,
        src: SocketAddr,
        dgram: &'b mut [u8],
        space: &mut Space<'b>,
        replies: &mut Outbox,
        tally: &mut Tally,
    ) -> Option<Inbound<'b>> {
        // Type byte, three reserved zero bytes, and a length that type always has.
        let well_formed = dgram.len() >= 4
            && dgram[1..4] == [0, 0, 0]
            && match dgram[0] {
                TYPE_HANDSHAKE_INIT => dgram.len() == HANDSHAKE_INIT_LEN,
                TYPE_HANDSHAKE_RESP => dgram.len() == HANDSHAKE_RESP_LEN,
                TYPE_COOKIE_REPLY => dgram.len() == COOKIE_REPLY_LEN,
                TYPE_DATA => dgram.len() >= DATA_OVERHEAD,
                _ => false,
            };
        if !well_formed {
            tally.drop(DropReason::Malformed, 1);
            return None;
        }
        if dgram[0] != TYPE_DATA {
            self.handshake(local, src, dgram, replies, tally);
            return None;
        }
        let receiver = u32::from_le_bytes(dgram[4..8].try_into().expect("4 bytes"));
        let table = local.table.get();
        let Some(peer) = table.by_session(receiver) else {
            tally.drop(DropReason::UnknownSession, 1);
            return None;
        };
        // The plaintext is never longer than the datagram; `space` holds a batch's worth.
        if space.len() < dgram.len() {
            tally.drop(DropReason::TunWriteFailed, 1);
            return None;
        }
        let mut state = peer.lock();
        let (len, from) = match state.tunn.decapsulate(Some(src.ip()), dgram, space.rest()) {
            TunnResult::WriteToTunnelV4(p, from) => (p.len(), IpAddr::V4(from)),
            TunnResult::WriteToTunnelV6(p, from) => (p.len(), IpAddr::V6(from)),
            // A keepalive: authenticated, nothing to deliver.
            TunnResult::Done => {
                state.endpoint = Some(src);
                drop(state);
                peer.received(dgram.len());
                return None;
            }
            TunnResult::WriteToNetwork(msg) => {
                let msg = msg.to_vec();
                drop(state);
                send_copy(replies, src, &msg, tally);
                return None;
            }
            TunnResult::Err(e) => {
                tally.drop(error_reason(&e), 1);
                return None;
            }
        };
        // Authenticated: the peer is at `src` now, whatever its lease said.
        if state.endpoint != Some(src) {
            state.endpoint = Some(src);
        }
        drop(state);
        peer.received(dgram.len());
        if !table.route(from).is_some_and(|p| Arc::ptr_eq(p, peer)) {
            tally.drop(DropReason::DisallowedSource, 1);
            return None;
        }
        let pkt = space.take(len).expect("decrypted into space");
        Some(Inbound {
            pkt,
            verified: true,
        })
    }

    fn counters(&self) -> &DatapathCounters {
        &self.counters
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

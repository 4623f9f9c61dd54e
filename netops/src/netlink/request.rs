use netlink_packet_core::{Emitable, NetlinkHeader, NetlinkSerializable, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;

/// One prepared netlink request: the message, its `NLM_F_*` flags and the operation text
/// used as error context (`could not add "cni0"`).
///
/// Constructors live next to the object they manipulate (`Request::link_add_bridge`,
/// `Request::route_replace`, ...). Building a request has no side effects, so callers can
/// collect many and hand them to [`super::Handle::batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) op: String,
    pub(crate) message: RouteNetlinkMessage,
    pub(crate) flags: u16,
}

impl Request {
    pub(crate) fn new(op: impl Into<String>, message: RouteNetlinkMessage, flags: u16) -> Request {
        Request {
            op: op.into(),
            message,
            flags,
        }
    }

    pub fn op(&self) -> &str {
        &self.op
    }

    pub fn message(&self) -> &RouteNetlinkMessage {
        &self.message
    }

    /// `NLM_F_*` flags besides `NLM_F_REQUEST | NLM_F_ACK`, which are always set.
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// Appends the wire form of this request, with sequence number `seq`, to `out`.
    pub(crate) fn emit(&self, seq: u32, ack: bool, out: &mut Vec<u8>) {
        emit_message(
            &self.message,
            self.flags | if ack { NLM_F_ACK } else { 0 },
            seq,
            out,
        );
    }
}

pub(crate) fn emit_message(message: &RouteNetlinkMessage, flags: u16, seq: u32, out: &mut Vec<u8>) {
    let payload_len = NetlinkSerializable::buffer_len(message);
    let total = NETLINK_HEADER_LEN + payload_len;
    let start = out.len();
    // Netlink messages in one datagram must each start 4-byte aligned.
    out.resize(start + align4(total), 0);
    let mut header = NetlinkHeader::default();
    header.length = total as u32;
    header.message_type = NetlinkSerializable::message_type(message);
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    header.emit(&mut out[start..start + NETLINK_HEADER_LEN]);
    NetlinkSerializable::serialize(message, &mut out[start + NETLINK_HEADER_LEN..start + total]);
}

pub(crate) const NETLINK_HEADER_LEN: usize = 16;

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

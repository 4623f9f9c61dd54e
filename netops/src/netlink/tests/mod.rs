//! Unit tests over the fake transport: what goes on the wire, and how replies are read.

mod bridge_vlan;
mod links;
mod objects;
mod transport;

use netlink_packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;

use super::fake::FakeClient;
use super::Handle;

pub(super) fn handle() -> Handle<FakeClient> {
    Handle::with_client(FakeClient::new())
}

/// The single request sent so far, with its header flags minus REQUEST|ACK.
pub(super) fn only_sent(h: &Handle<FakeClient>) -> (u16, RouteNetlinkMessage) {
    let sent = h.client().sent();
    assert_eq!(sent.len(), 1, "expected exactly one request, got {sent:?}");
    split(&sent[0])
}

pub(super) fn split(m: &NetlinkMessage<RouteNetlinkMessage>) -> (u16, RouteNetlinkMessage) {
    let flags = m.header.flags & !(NLM_F_REQUEST | NLM_F_ACK);
    match &m.payload {
        netlink_packet_core::NetlinkPayload::InnerMessage(inner) => (flags, inner.clone()),
        other => panic!("not a request: {other:?}"),
    }
}

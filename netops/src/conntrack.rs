//! Deleting connection-tracking entries over ctnetlink (NETLINK_NETFILTER), the way upstream's
//! portmap does through vishvananda/netlink, with no `conntrack` program (most nodes and our
//! image have none): dump the family's table, and delete every entry whose original tuple
//! matches, each by its own tuple, zone and id, so an entry created since the dump with the
//! same tuple is never hit.
//!
//! Runs in the calling thread's network namespace. The kernel loads the ctnetlink module on
//! first use.

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

use crate::Family;

pub use netlink_packet_netfilter::conntrack::Protocol;

/// CTA_ID and CTA_ZONE: with the tuple, what identifies one entry.
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("failed to delete {failed} of {matched} conntrack entries: {first}")]
    Delete {
        failed: usize,
        matched: usize,
        first: io::Error,
    },
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> ConntrackError {
    move |source| ConntrackError::Io { what, source }
}

/// Deletes the entries of `protocol` whose original destination port is `port`, in the
/// table of `family` (`conntrack -D -p udp --dport PORT -f ipv4`). Returns how many were
/// deleted (an entry that went away meanwhile counts, as upstream's).
pub fn delete_by_dst_port(
    family: Family,
    protocol: Protocol,
    port: u16,
) -> Result<usize, ConntrackError> {
    let family = match family {
        Family::V4 => NetfilterProtoFamily::IPv4,
        Family::V6 => NetfilterProtoFamily::IPv6,
    };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(io_err("conntrack socket"))?;
    socket.bind_auto().map_err(io_err("conntrack socket"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(io_err("conntrack socket"))?;

    let mut matched = Vec::new();
    send(
        &mut socket,
        family,
        ConntrackMessage::Get(vec![]),
        NLM_F_DUMP,
        1,
    )
    .map_err(io_err("listing conntrack entries"))?;
    receive(&mut socket, |entry| {
        if let Some(key) = deletion_key(entry, protocol, port) {
            matched.push(key);
        }
    })
    .map_err(io_err("listing conntrack entries"))?;

    let (mut deleted, mut failures) = (0, Vec::new());
    for (seq, key) in (2..).zip(&matched) {
        let outcome = send(
            &mut socket,
            family,
            ConntrackMessage::Delete(key.clone()),
            NLM_F_ACK,
            seq,
        )
        .and_then(|()| receive(&mut socket, |_| {}));
        match outcome {
            Ok(()) => deleted += 1,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => deleted += 1,
            Err(e) => failures.push(e),
        }
    }
    match failures.into_iter().next() {
        None => Ok(deleted),
        Some(first) => Err(ConntrackError::Delete {
            failed: matched.len() - deleted,
            matched: matched.len(),
            first,
        }),
    }
}

/// The attributes that delete exactly `entry`, if its original tuple is `protocol` to `port`.
fn deletion_key(
    entry: &[ConntrackAttribute],
    protocol: Protocol,
    port: u16,
) -> Option<Vec<ConntrackAttribute>> {
    let orig = entry.iter().find_map(|a| match a {
        ConntrackAttribute::CtaTupleOrig(t) => Some(t),
        _ => None,
    })?;
    let proto: &[ProtoTuple] = orig.iter().find_map(|t| match t {
        Tuple::Proto(p) => Some(p.as_slice()),
        _ => None,
    })?;
    let matches = proto.contains(&ProtoTuple::Protocol(protocol))
        && proto.contains(&ProtoTuple::DestinationPort(port));
    if !matches {
        return None;
    }
    let mut key = vec![ConntrackAttribute::CtaTupleOrig(orig.clone())];
    key.extend(
        entry
            .iter()
            .filter(|a| {
                matches!(a, ConntrackAttribute::Other(nla)
            if netlink_packet_core::Nla::kind(nla) == CTA_ID
                || netlink_packet_core::Nla::kind(nla) == CTA_ZONE)
            })
            .cloned(),
    );
    Some(key)
}

fn send(
    socket: &mut Socket,
    family: NetfilterProtoFamily,
    msg: ConntrackMessage,
    flags: u16,
    seq: u32,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            msg,
        )),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0).map(drop)
}

/// Reads replies until the request is answered: a dump's end, an ACK, or an error (as an
/// `io::Error` of the kernel's errno). Each conntrack entry in between goes to `entry`; one
/// the decoder cannot read is skipped (it cannot be a match we could delete anyway).
fn receive(socket: &mut Socket, mut entry: impl FnMut(&[ConntrackAttribute])) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink closed",
            ));
        }
        let mut at = 0;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            if len < 16 || at + len > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            if let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[at..at + len]) {
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        }
                    }
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner:
                            NetfilterMessageInner::Conntrack(
                                ConntrackMessage::New(attrs)
                                | ConntrackMessage::Get(attrs)
                                | ConntrackMessage::Delete(attrs),
                            ),
                        ..
                    }) => entry(&attrs),
                    _ => {}
                }
            }
            at += (len + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::DefaultNla;
    use netlink_packet_netfilter::conntrack::IPTuple;

    fn entry(protocol: Protocol, dport: u16) -> Vec<ConntrackAttribute> {
        vec![
            ConntrackAttribute::CtaTupleOrig(vec![
                Tuple::Ip(vec![
                    IPTuple::SourceAddress("10.0.0.1".parse().unwrap()),
                    IPTuple::DestinationAddress("10.0.0.2".parse().unwrap()),
                ]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(protocol),
                    ProtoTuple::SourcePort(40000),
                    ProtoTuple::DestinationPort(dport),
                ]),
            ]),
            ConntrackAttribute::CtaTupleReply(vec![]),
            ConntrackAttribute::CtaMark(7),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ID, vec![0, 0, 0, 9])),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, vec![0, 0])),
        ]
    }

    #[test]
    fn only_the_protocol_and_destination_port_match() {
        assert!(deletion_key(&entry(Protocol::Udp, 5353), Protocol::Udp, 5353).is_some());
        assert!(deletion_key(&entry(Protocol::Tcp, 5353), Protocol::Udp, 5353).is_none());
        assert!(deletion_key(&entry(Protocol::Udp, 53), Protocol::Udp, 5353).is_none());
        assert!(deletion_key(&[ConntrackAttribute::CtaMark(1)], Protocol::Udp, 53).is_none());
    }

    #[test]
    fn an_entry_is_deleted_by_its_tuple_id_and_zone_only() {
        let key = deletion_key(&entry(Protocol::Udp, 5353), Protocol::Udp, 5353).unwrap();
        assert_eq!(key.len(), 3, "{key:?}");
        assert!(matches!(key[0], ConntrackAttribute::CtaTupleOrig(_)));
        let kinds: Vec<u16> = key[1..]
            .iter()
            .map(|a| match a {
                ConntrackAttribute::Other(nla) => netlink_packet_core::Nla::kind(nla),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, [CTA_ID, CTA_ZONE]);
    }
}

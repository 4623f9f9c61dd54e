//! Bridge-port VLAN entries (PVID/untagged access VLAN, tagged trunk VLANs, listing and
//! removing the default VLAN): `RTM_SETLINK`/`RTM_DELLINK` with `AF_BRIDGE` and
//! `IFLA_AF_SPEC { IFLA_BRIDGE_FLAGS=MASTER, IFLA_BRIDGE_VLAN_INFO }`, as `bridge vlan add`
//! does. `netops` has no bridge VLAN operations yet, so this module carries its own small
//! request/acknowledge client over a NETLINK_ROUTE socket in the current namespace (the host's:
//! ports live there).

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask,
    LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use netops::netlink::errno_text;
use nix::errno::Errno;

#[derive(Debug, thiserror::Error)]
pub enum VlanError {
    #[error("{context}: {}", errno_text(*errno))]
    Kernel { context: String, errno: Errno },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: cannot decode netlink reply: {detail}")]
    Decode { context: String, detail: String },
}

/// What to do with one VLAN on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanOp {
    /// Access VLAN: PVID and egress untagged.
    Access(u16),
    /// Trunk VLAN: tagged.
    Tagged(u16),
    Remove(u16),
}

/// The request for `op` on port `ifindex` (pure; unit-tested).
pub fn request(ifindex: u32, op: VlanOp) -> RouteNetlinkMessage {
    let (vid, flags) = match op {
        VlanOp::Access(v) => (v, BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged),
        VlanOp::Tagged(v) | VlanOp::Remove(v) => (v, BridgeVlanInfoFlags::empty()),
    };
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.header.index = ifindex;
    msg.attributes.push(LinkAttribute::AfSpecBridge(vec![
        // MASTER: the entry is on the port as seen by its bridge, not on the device itself.
        AfSpecBridge::Flags(BridgeFlag::Controller),
        AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid }),
    ]));
    match op {
        VlanOp::Remove(_) => RouteNetlinkMessage::DelLink(msg),
        _ => RouteNetlinkMessage::SetLink(msg),
    }
}

/// VLAN IDs configured on `ifindex`, read from an AF_BRIDGE link dump reply.
pub fn vlans_of(replies: &[RouteNetlinkMessage], ifindex: u32) -> Vec<u16> {
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) if m.header.index == ifindex => Some(m),
            _ => None,
        })
        .flat_map(|m| m.attributes.iter())
        .filter_map(|a| match a {
            LinkAttribute::AfSpecBridge(spec) => Some(spec),
            _ => None,
        })
        .flatten()
        .filter_map(|s| match s {
            AfSpecBridge::VlanInfo(info) => Some(info.vid),
            _ => None,
        })
        .collect()
}

pub struct VlanClient {
    socket: Socket,
    seq: u32,
}

impl VlanClient {
    /// A client for the current thread's network namespace.
    pub fn open() -> Result<VlanClient, VlanError> {
        let io = |source| VlanError::Io {
            context: "failed to open netlink socket".into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io)?;
        socket.bind_auto().map_err(io)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(io)?;
        Ok(VlanClient { socket, seq: 0 })
    }

    fn send(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        context: &str,
    ) -> Result<u32, VlanError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|source| VlanError::Io {
            context: context.into(),
            source,
        })?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until an acknowledgement/error (or, for dumps, NLMSG_DONE).
    fn collect(&mut self, seq: u32, context: &str) -> Result<Vec<RouteNetlinkMessage>, VlanError> {
        let mut out = Vec::new();
        loop {
            let (buf, _) = self
                .socket
                .recv_from_full()
                .map_err(|source| VlanError::Io {
                    context: context.into(),
                    source,
                })?;
            let mut offset = 0;
            while offset < buf.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..])
                    .map_err(|e| VlanError::Decode {
                        context: context.into(),
                        detail: e.to_string(),
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    // A zero length would never advance; the rest of the datagram is junk.
                    break;
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(VlanError::Kernel {
                                context: context.into(),
                                errno: Errno::from_raw(-code.get()),
                            }),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
            }
        }
    }

    pub fn apply(&mut self, ifindex: u32, op: VlanOp, context: &str) -> Result<(), VlanError> {
        let seq = self.send(request(ifindex, op), NLM_F_ACK, context)?;
        self.collect(seq, context).map(drop)
    }

    /// VLAN IDs currently on port `ifindex`.
    pub fn list(&mut self, ifindex: u32, context: &str) -> Result<Vec<u16>, VlanError> {
        let mut query = LinkMessage::default();
        query.header.interface_family = AddressFamily::Bridge;
        query
            .attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let seq = self.send(RouteNetlinkMessage::GetLink(query), NLM_F_DUMP, context)?;
        Ok(vlans_of(&self.collect(seq, context)?, ifindex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(msg: &RouteNetlinkMessage) -> (u32, AddressFamily, Vec<AfSpecBridge>) {
        let m = match msg {
            RouteNetlinkMessage::SetLink(m) | RouteNetlinkMessage::DelLink(m) => m,
            other => panic!("unexpected {other:?}"),
        };
        let spec = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::AfSpecBridge(s) => Some(s.clone()),
                _ => None,
            })
            .expect("IFLA_AF_SPEC");
        (m.header.index, m.header.interface_family, spec)
    }

    #[test]
    fn access_vlan_is_pvid_untagged_on_the_master() {
        let msg = request(7, VlanOp::Access(100));
        assert!(matches!(msg, RouteNetlinkMessage::SetLink(_)));
        let (index, family, spec) = spec(&msg);
        assert_eq!((index, family), (7, AddressFamily::Bridge));
        assert_eq!(
            spec,
            vec![
                AfSpecBridge::Flags(BridgeFlag::Controller),
                AfSpecBridge::VlanInfo(BridgeVlanInfo {
                    flags: BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
                    vid: 100
                })
            ]
        );
    }

    #[test]
    fn trunk_is_tagged_and_removal_is_dellink() {
        let (_, _, spec_t) = spec(&request(7, VlanOp::Tagged(20)));
        assert_eq!(
            spec_t[1],
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::empty(),
                vid: 20
            })
        );
        assert!(matches!(
            request(7, VlanOp::Remove(1)),
            RouteNetlinkMessage::DelLink(_)
        ));
    }

    #[test]
    fn wire_form_round_trips() {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut packet = NetlinkMessage::new(
            header,
            NetlinkPayload::InnerMessage(request(9, VlanOp::Access(4094))),
        );
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).unwrap();
        match back.payload {
            NetlinkPayload::InnerMessage(m) => assert_eq!(m, request(9, VlanOp::Access(4094))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lists_vlans_of_one_port() {
        let mut port = LinkMessage::default();
        port.header.index = 5;
        port.header.interface_family = AddressFamily::Bridge;
        port.attributes.push(LinkAttribute::AfSpecBridge(vec![
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
                vid: 1,
            }),
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::empty(),
                vid: 30,
            }),
        ]));
        let mut other = port.clone();
        other.header.index = 6;
        let replies = vec![
            RouteNetlinkMessage::NewLink(other),
            RouteNetlinkMessage::NewLink(port),
        ];
        assert_eq!(vlans_of(&replies, 5), vec![1, 30]);
        assert!(vlans_of(&replies, 99).is_empty());
    }
}

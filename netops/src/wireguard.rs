//! The kernel's WireGuard device over generic netlink (what `wg` and Go's `wgctrl` speak):
//! the `wireguard` family's `WG_CMD_SET_DEVICE` and `WG_CMD_GET_DEVICE`, as laid out in the
//! kernel's `include/uapi/linux/wireguard.h`.
//!
//! Messages are built by `netlink-packet-wireguard` and carried by a NETLINK_GENERIC socket
//! of the calling thread's network namespace. [`WireguardClient::connect`] resolves the
//! family with `CTRL_CMD_GETFAMILY`; `None` means the kernel has no WireGuard (module absent
//! and not loadable), which is how a caller decides to run WireGuard elsewhere.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardDeviceFlags, WireguardMessage, WireguardPeer, WireguardPeerAttribute,
    WireguardPeerFlags,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr as NlAddr};
use nix::errno::Errno;

use crate::netlink::NetlinkError;

/// Peers per `WG_CMD_SET_DEVICE` message: `wg` splits large configurations the same way,
/// because one netlink message must fit the kernel's receive allocation.
const PEERS_PER_MESSAGE: usize = 64;
const RECV_BUF: usize = 64 * 1024;

/// A peer as it should be on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerConfig {
    pub public_key: [u8; 32],
    /// `WGPEER_F_REMOVE_ME`: every other field is ignored.
    pub remove: bool,
    /// `None` leaves the kernel's as it is; `Some([0; 32])` clears it.
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds, 0 off; `None` leaves it.
    pub persistent_keepalive: Option<u16>,
    /// `Some`: the peer's allowed IPs become exactly these (`WGPEER_F_REPLACE_ALLOWEDIPS`).
    pub allowed_ips: Option<Vec<IpNet>>,
}

/// A `WG_CMD_SET_DEVICE` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgDeviceConfig {
    pub ifname: String,
    pub private_key: Option<[u8; 32]>,
    pub listen_port: Option<u16>,
    /// `WGDEVICE_F_REPLACE_PEERS`: peers not listed are removed.
    pub replace_peers: bool,
    pub peers: Vec<WgPeerConfig>,
}

/// A peer as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WgPeerState {
    pub public_key: [u8; 32],
    pub has_preshared_key: bool,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: u16,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub allowed_ips: Vec<IpNet>,
}

/// A device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WgDeviceState {
    pub ifindex: u32,
    pub ifname: String,
    pub public_key: Option<[u8; 32]>,
    pub listen_port: u16,
    pub peers: Vec<WgPeerState>,
}

fn allowed_ip(net: &IpNet) -> WireguardAllowedIp {
    let family = match net {
        IpNet::V4(_) => WireguardAddressFamily::Ipv4,
        IpNet::V6(_) => WireguardAddressFamily::Ipv6,
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(net.network()),
        WireguardAllowedIpAttr::Cidr(net.prefix_len()),
    ])
}

fn peer_nla(p: &WgPeerConfig) -> WireguardPeer {
    let mut attrs = vec![WireguardPeerAttribute::PublicKey(p.public_key)];
    if p.remove {
        attrs.push(WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe));
        return WireguardPeer(attrs);
    }
    if p.allowed_ips.is_some() {
        attrs.push(WireguardPeerAttribute::Flags(
            WireguardPeerFlags::ReplaceAllowedIps,
        ));
    }
    attrs.extend(p.preshared_key.map(WireguardPeerAttribute::PresharedKey));
    attrs.extend(p.endpoint.map(WireguardPeerAttribute::Endpoint));
    attrs.extend(
        p.persistent_keepalive
            .map(WireguardPeerAttribute::PersistentKeepalive),
    );
    if let Some(ips) = &p.allowed_ips {
        attrs.push(WireguardPeerAttribute::AllowedIps(
            ips.iter().map(allowed_ip).collect(),
        ));
    }
    WireguardPeer(attrs)
}

/// The `WG_CMD_SET_DEVICE` messages for `cfg`: device attributes (and the replace flag) in
/// the first, peers spread over as many as needed.
pub fn set_device_messages(cfg: &WgDeviceConfig) -> Vec<WireguardMessage> {
    let mut out = Vec::new();
    let mut chunks = cfg.peers.chunks(PEERS_PER_MESSAGE);
    let first_peers = chunks.next().unwrap_or(&[]);
    let mut first = vec![WireguardAttribute::IfName(cfg.ifname.clone())];
    first.extend(cfg.private_key.map(WireguardAttribute::PrivateKey));
    first.extend(cfg.listen_port.map(WireguardAttribute::ListenPort));
    if cfg.replace_peers {
        first.push(WireguardAttribute::Flags(
            WireguardDeviceFlags::ReplacePeers,
        ));
    }
    if !first_peers.is_empty() {
        first.push(WireguardAttribute::Peers(
            first_peers.iter().map(peer_nla).collect(),
        ));
    }
    out.push(WireguardMessage {
        cmd: WireguardCmd::SetDevice,
        attributes: first,
    });
    for chunk in chunks {
        out.push(WireguardMessage {
            cmd: WireguardCmd::SetDevice,
            attributes: vec![
                WireguardAttribute::IfName(cfg.ifname.clone()),
                WireguardAttribute::Peers(chunk.iter().map(peer_nla).collect()),
            ],
        });
    }
    out
}

/// The whole netlink datagram of a generic netlink request.
pub fn encode<F>(payload: F, family_id: u16, flags: u16, seq: u32) -> Vec<u8>
where
    F: netlink_packet_generic::GenlFamily + netlink_packet_core::Emitable + std::fmt::Debug,
{
    let mut genl = GenlMessage::from_payload(payload);
    genl.set_resolved_family_id(family_id);
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(genl));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

fn peer_state(p: &WireguardPeer) -> WgPeerState {
    let mut s = WgPeerState::default();
    for a in &p.0 {
        match a {
            WireguardPeerAttribute::PublicKey(k) => s.public_key = *k,
            WireguardPeerAttribute::PresharedKey(k) => s.has_preshared_key = k != &[0; 32],
            WireguardPeerAttribute::Endpoint(e) => s.endpoint = Some(*e),
            WireguardPeerAttribute::PersistentKeepalive(k) => s.persistent_keepalive = *k,
            WireguardPeerAttribute::LastHandshake(t) => {
                s.last_handshake = (t.seconds > 0 || t.nano_seconds > 0).then(|| {
                    UNIX_EPOCH
                        + Duration::from_secs(t.seconds.max(0) as u64)
                        + Duration::from_nanos(t.nano_seconds.max(0) as u64)
                })
            }
            WireguardPeerAttribute::RxBytes(n) => s.rx_bytes = *n,
            WireguardPeerAttribute::TxBytes(n) => s.tx_bytes = *n,
            WireguardPeerAttribute::AllowedIps(ips) => {
                for ip in ips {
                    let (mut addr, mut cidr) = (None, None);
                    for a in &ip.0 {
                        match a {
                            WireguardAllowedIpAttr::IpAddr(x) => addr = Some(*x),
                            WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
                            _ => {}
                        }
                    }
                    if let (Some(a), Some(c)) = (addr, cidr) {
                        s.allowed_ips.extend(IpNet::new(a, c).ok());
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// Folds one `WG_CMD_GET_DEVICE` reply message into `dev` (a large device comes in several:
/// each repeats the device attributes and carries the next peers; a peer whose allowed IPs
/// did not fit continues, same key, in the next message).
pub fn merge_device_reply(dev: &mut WgDeviceState, msg: &WireguardMessage) {
    for a in &msg.attributes {
        match a {
            WireguardAttribute::IfIndex(i) => dev.ifindex = *i,
            WireguardAttribute::IfName(n) => dev.ifname = n.clone(),
            WireguardAttribute::PublicKey(k) => dev.public_key = Some(*k),
            WireguardAttribute::ListenPort(p) => dev.listen_port = *p,
            WireguardAttribute::Peers(peers) => {
                for p in peers {
                    let s = peer_state(p);
                    match dev.peers.last_mut() {
                        Some(last) if last.public_key == s.public_key => {
                            last.allowed_ips.extend(s.allowed_ips)
                        }
                        _ => dev.peers.push(s),
                    }
                }
            }
            _ => {}
        }
    }
}

/// A generic netlink connection that speaks to the `wireguard` family.
pub struct WireguardClient {
    socket: Socket,
    family_id: u16,
    seq: u32,
    buf: Vec<u8>,
}

fn io_err(op: &str, source: io::Error) -> NetlinkError {
    NetlinkError::Io {
        op: op.to_owned(),
        source,
    }
}

impl WireguardClient {
    /// Connects in the calling thread's network namespace. `Ok(None)`: the kernel has no
    /// `wireguard` family (the module is not loaded; creating a `wireguard` link loads it
    /// where it exists, so callers try that first).
    pub fn connect() -> Result<Option<WireguardClient>, NetlinkError> {
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&NlAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        let mut c = WireguardClient {
            socket,
            family_id: 0,
            seq: 0,
            buf: vec![0; RECV_BUF],
        };
        let op = "resolve generic netlink family \"wireguard\"";
        let ctrl = GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("wireguard".into())],
        };
        let seq = c.next_seq();
        // The controller's own family id is fixed (GENL_ID_CTRL).
        let req = encode(
            ctrl,
            netlink_packet_generic::constants::GENL_ID_CTRL,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
        );
        let replies = match c.exchange::<GenlCtrl>(op, &req, seq, false) {
            Ok(r) => r,
            Err(e) if e.errno() == Some(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let id = replies
            .iter()
            .flat_map(|m| &m.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::Unexpected {
                op: op.into(),
                detail: "no family id in the reply".into(),
            })?;
        c.family_id = id;
        Ok(Some(c))
    }

    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends `req` and collects the replies to `seq` until the acknowledgement (or, for a
    /// dump, the end).
    fn exchange<F>(
        &mut self,
        op: &str,
        req: &[u8],
        seq: u32,
        dump: bool,
    ) -> Result<Vec<GenlMessage<F>>, NetlinkError>
    where
        F: netlink_packet_generic::GenlFamily
            + netlink_packet_core::Emitable
            + netlink_packet_core::ParseableParametrized<[u8], netlink_packet_generic::GenlHeader>
            + std::fmt::Debug,
    {
        self.socket.send(req, 0).map_err(|e| io_err(op, e))?;
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            self.socket
                .recv(&mut self.buf, 0)
                .map_err(|e| io_err(op, e))?;
            let mut at = 0;
            while at < self.buf.len() {
                let bytes = &self.buf[at..];
                let msg = NetlinkMessage::<GenlMessage<F>>::deserialize(bytes).map_err(|e| {
                    NetlinkError::Decode {
                        op: op.into(),
                        detail: e.to_string(),
                    }
                })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                at += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(NetlinkError::Kernel {
                                op: op.into(),
                                errno: Errno::from_raw(-code.get()),
                            }),
                        }
                    }
                    NetlinkPayload::Done(_) if dump => return Ok(out),
                    _ => {}
                }
            }
        }
    }

    /// Applies `cfg` (in as many messages as its peers need).
    pub fn set_device(&mut self, cfg: &WgDeviceConfig) -> Result<(), NetlinkError> {
        let op = format!("configure wireguard device {:?}", cfg.ifname);
        for msg in set_device_messages(cfg) {
            let seq = self.next_seq();
            let req = encode(msg, self.family_id, NLM_F_REQUEST | NLM_F_ACK, seq);
            self.exchange::<WireguardMessage>(&op, &req, seq, false)?;
        }
        Ok(())
    }

    /// The device named `ifname`, with all its peers.
    pub fn get_device(&mut self, ifname: &str) -> Result<WgDeviceState, NetlinkError> {
        let op = format!("read wireguard device {ifname:?}");
        let seq = self.next_seq();
        let msg = WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::IfName(ifname.to_owned())],
        };
        let req = encode(
            msg,
            self.family_id,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
            seq,
        );
        let mut dev = WgDeviceState::default();
        for m in self.exchange::<WireguardMessage>(&op, &req, seq, true)? {
            merge_device_reply(&mut dev, &m.payload);
        }
        Ok(dev)
    }
}

#[cfg(test)]
#[path = "wireguard_tests.rs"]
mod tests;

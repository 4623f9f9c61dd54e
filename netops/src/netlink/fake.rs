//! An in-memory [`Client`] that records requests and replays scripted replies, so message
//! construction and reply handling are testable without root or a kernel.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroI32;

use netlink_packet_core::{
    DoneMessage, ErrorMessage, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_MULTIPART,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::transport::Client;

/// The scripted answer to one request (consumed in request order).
#[derive(Debug, Clone)]
pub enum Reply {
    /// Success acknowledgement.
    Ack,
    /// The kernel rejects the request with this errno.
    Errno(Errno),
    /// For a dump: these objects, then NLMSG_DONE. For a get: the first object.
    Objects(Vec<RouteNetlinkMessage>),
    /// Like `Objects`, but the dump is flagged NLM_F_DUMP_INTR (raced with a change).
    InterruptedDump(Vec<RouteNetlinkMessage>),
    /// No answer; the next receive reports ENOBUFS, as when the kernel drops an ack.
    Lost,
}

pub struct FakeClient {
    sent: Vec<NetlinkMessage<RouteNetlinkMessage>>,
    datagrams: usize,
    script: VecDeque<Reply>,
    inbox: VecDeque<Vec<u8>>,
    overrun: bool,
    max_in_flight: usize,
    max_datagram: usize,
}

impl Default for FakeClient {
    fn default() -> Self {
        FakeClient::new()
    }
}

impl FakeClient {
    pub fn new() -> FakeClient {
        FakeClient {
            sent: Vec::new(),
            datagrams: 0,
            script: VecDeque::new(),
            inbox: VecDeque::new(),
            overrun: false,
            max_in_flight: 64,
            max_datagram: 64 * 1024,
        }
    }

    /// Replies for the next requests, in order; unscripted requests are acknowledged.
    pub fn reply(&mut self, reply: Reply) -> &mut Self {
        self.script.push_back(reply);
        self
    }

    /// Limits the batch window, to exercise windowing with few requests.
    pub fn with_limits(mut self, max_in_flight: usize, max_datagram: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self.max_datagram = max_datagram;
        self
    }

    /// Every request sent so far, decoded.
    pub fn sent(&self) -> &[NetlinkMessage<RouteNetlinkMessage>] {
        &self.sent
    }

    /// The inner messages of every request sent so far.
    pub fn sent_messages(&self) -> Vec<&RouteNetlinkMessage> {
        self.sent
            .iter()
            .filter_map(|m| match &m.payload {
                NetlinkPayload::InnerMessage(inner) => Some(inner),
                _ => None,
            })
            .collect()
    }

    /// Number of `send` calls (datagrams) so far.
    pub fn datagrams(&self) -> usize {
        self.datagrams
    }

    fn answer(&mut self, request: &NetlinkMessage<RouteNetlinkMessage>, raw_header: &[u8]) {
        let seq = request.header.sequence_number;
        let wants_dump = request.header.flags & NLM_F_DUMP == NLM_F_DUMP;
        let wants_ack = request.header.flags & NLM_F_ACK != 0;
        match self.script.pop_front().unwrap_or(Reply::Ack) {
            Reply::Ack => self.push(seq, 0, error_payload(None, raw_header)),
            Reply::Errno(errno) => self.push(
                seq,
                0,
                error_payload(NonZeroI32::new(-(errno as i32)), raw_header),
            ),
            Reply::Lost => self.overrun = true,
            Reply::Objects(objects) | Reply::InterruptedDump(objects) if !wants_dump => {
                let first = objects
                    .into_iter()
                    .next()
                    .expect("a get reply needs one object");
                self.push(seq, 0, NetlinkPayload::InnerMessage(first));
                if wants_ack {
                    self.push(seq, 0, error_payload(None, raw_header));
                }
            }
            Reply::Objects(objects) => self.push_dump(seq, objects, 0),
            Reply::InterruptedDump(objects) => {
                self.push_dump(seq, objects, netlink_packet_core::NLM_F_DUMP_INTR)
            }
        }
    }

    fn push_dump(&mut self, seq: u32, objects: Vec<RouteNetlinkMessage>, extra_flags: u16) {
        // Real dumps pack several objects per datagram; do the same to exercise splitting.
        let mut datagram = Vec::new();
        for object in objects {
            datagram.extend(encode(
                seq,
                NLM_F_MULTIPART | extra_flags,
                NetlinkPayload::InnerMessage(object),
            ));
        }
        let mut done = DoneMessage::default();
        done.code = 0;
        datagram.extend(encode(
            seq,
            NLM_F_MULTIPART | extra_flags,
            NetlinkPayload::Done(done),
        ));
        self.inbox.push_back(datagram);
    }

    fn push(&mut self, seq: u32, flags: u16, payload: NetlinkPayload<RouteNetlinkMessage>) {
        self.inbox.push_back(encode(seq, flags, payload));
    }
}

fn error_payload(
    code: Option<NonZeroI32>,
    raw_header: &[u8],
) -> NetlinkPayload<RouteNetlinkMessage> {
    let mut err = ErrorMessage::default();
    err.code = code;
    err.header = raw_header.to_vec();
    NetlinkPayload::Error(err)
}

fn encode(seq: u32, flags: u16, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = seq;
    header.flags = flags;
    let mut msg = NetlinkMessage::new(header, payload);
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf.resize((buf.len() + 3) & !3, 0);
    buf
}

impl Client for FakeClient {
    fn send(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.datagrams += 1;
        let mut offset = 0;
        while offset + 16 <= datagram.len() {
            let len = u32::from_ne_bytes(datagram[offset..offset + 4].try_into().unwrap()) as usize;
            let raw = &datagram[offset..offset + len];
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.answer(&msg, &raw[..16]);
            self.sent.push(msg);
            offset += (len + 3) & !3;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        match self.inbox.pop_front() {
            Some(datagram) => {
                *buf = datagram;
                Ok(())
            }
            None if self.overrun => {
                self.overrun = false;
                Err(io::Error::from_raw_os_error(libc::ENOBUFS))
            }
            None => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "fake netlink: no scripted reply left",
            )),
        }
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn max_datagram(&self) -> usize {
        self.max_datagram
    }
}

//! Request/acknowledge and dump exchanges over a [`Client`], including windowed batches.

use std::io;
use std::path::Path;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_DUMP_INTR,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::errno::Errno;

use super::error::NetlinkError;
use super::request::{emit_message, Request};
use super::socket::SocketClient;
use crate::netns::NetnsGuard;

/// Datagram transport beneath a [`Handle`]: the real socket, or a fake in unit tests.
pub trait Client {
    /// Sends one datagram holding one or more netlink messages.
    fn send(&mut self, datagram: &[u8]) -> io::Result<()>;
    /// Receives one whole datagram into `buf` (replacing its contents).
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<()>;
    /// How many requests may be in flight before their acknowledgements risk overflowing the
    /// receive queue (see [`Handle::batch`]).
    fn max_in_flight(&self) -> usize;
    /// Largest datagram the kernel accepts from us in one `send`.
    fn max_datagram(&self) -> usize;
}

/// A NETLINK_ROUTE connection bound to one network namespace.
pub struct Handle<C: Client = SocketClient> {
    client: C,
    seq: u32,
    rx: Vec<u8>,
}

/// How often a dump is restarted when the kernel reports it raced with a change.
const DUMP_ATTEMPTS: usize = 5;

impl Handle<SocketClient> {
    /// A handle for the current thread's network namespace.
    pub fn new() -> Result<Handle, NetlinkError> {
        Ok(Handle::with_client(
            SocketClient::open().map_err(NetlinkError::Socket)?,
        ))
    }

    /// A handle for the namespace at `path`. The thread enters the namespace only to create
    /// the socket and is back in its own namespace when this returns; the socket keeps
    /// operating on the target namespace for its whole life.
    pub fn in_netns(path: impl AsRef<Path>) -> Result<Handle, NetlinkError> {
        let guard = NetnsGuard::enter_path(path)?;
        let client = SocketClient::open().map_err(NetlinkError::Socket);
        drop(guard);
        Ok(Handle::with_client(client?))
    }
}

impl<C: Client> Handle<C> {
    pub fn with_client(client: C) -> Handle<C> {
        Handle {
            client,
            seq: 0,
            rx: Vec::new(),
        }
    }

    pub fn client(&self) -> &C {
        &self.client
    }

    pub fn client_mut(&mut self) -> &mut C {
        &mut self.client
    }

    fn next_seq(&mut self) -> u32 {
        // Zero is what unsolicited kernel messages carry; never use it for our requests.
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Executes one request and waits for its acknowledgement.
    pub fn execute(&mut self, req: &Request) -> Result<(), NetlinkError> {
        self.batch(std::slice::from_ref(req))
            .pop()
            .expect("one result per request")
    }

    /// Executes a request that creates an object; `Ok(false)` if it exists already (EEXIST).
    pub fn execute_create(&mut self, req: &Request) -> Result<bool, NetlinkError> {
        match self.execute(req) {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Executes a request that removes an object; `Ok(false)` if there was no such object.
    pub fn execute_remove(&mut self, req: &Request) -> Result<bool, NetlinkError> {
        match self.execute(req) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Executes many requests with few round trips and returns one result per request, in
    /// order. Requests are independent: one failing does not stop the others.
    ///
    /// Requests are sent in windows: all messages of a window go out in one datagram (the
    /// kernel processes them in order within that single `send`), then the window's
    /// acknowledgements are collected. Windows exist because the kernel queues every
    /// acknowledgement on our socket while we are still inside `send`; if the queue exceeds
    /// SO_RCVBUF it silently drops acknowledgements (ENOBUFS) and we could no longer tell
    /// which requests succeeded. The client sizes the window from the real buffer size, and
    /// the datagram is capped below SO_SNDBUF (the kernel rejects larger sends with EMSGSIZE).
    pub fn batch(&mut self, reqs: &[Request]) -> Vec<Result<(), NetlinkError>> {
        let mut results: Vec<Option<Result<(), NetlinkError>>> = Vec::with_capacity(reqs.len());
        results.resize_with(reqs.len(), || None);
        let max_in_flight = self.client.max_in_flight().max(1);
        let max_datagram = self.client.max_datagram();
        let mut next = 0;
        let mut out = Vec::new();
        while next < reqs.len() {
            out.clear();
            let first = next;
            let mut seqs = Vec::new();
            while next < reqs.len() && seqs.len() < max_in_flight {
                let before = out.len();
                let seq = self.next_seq();
                reqs[next].emit(seq, true, &mut out);
                if out.len() > max_datagram && !seqs.is_empty() {
                    out.truncate(before);
                    self.seq = seq.wrapping_sub(1);
                    break;
                }
                seqs.push(seq);
                next += 1;
            }
            let window = &reqs[first..next];
            if let Err(e) = self.client.send(&out) {
                for (slot, req) in results[first..next].iter_mut().zip(window) {
                    *slot = Some(Err(NetlinkError::Io {
                        op: req.op.clone(),
                        source: clone_io(&e),
                    }));
                }
                continue;
            }
            self.collect_acks(window, &seqs, &mut results[first..next]);
        }
        results
            .into_iter()
            .map(|r| r.expect("every request answered"))
            .collect()
    }

    fn collect_acks(
        &mut self,
        window: &[Request],
        seqs: &[u32],
        results: &mut [Option<Result<(), NetlinkError>>],
    ) {
        let mut pending = window.len();
        while pending > 0 {
            if let Err(e) = self.client.recv(&mut self.rx) {
                let lost = e.raw_os_error() == Some(Errno::ENOBUFS as i32);
                for (slot, req) in results.iter_mut().zip(window).filter(|(s, _)| s.is_none()) {
                    *slot = Some(Err(if lost {
                        NetlinkError::AckLost { op: req.op.clone() }
                    } else {
                        NetlinkError::Io {
                            op: req.op.clone(),
                            source: clone_io(&e),
                        }
                    }));
                }
                return;
            }
            let rx = std::mem::take(&mut self.rx);
            for item in split_datagram(&rx) {
                let (seq, parsed) = match item {
                    Ok((seq, payload)) => (seq, Ok(payload)),
                    Err((seq, detail)) => (seq, Err(detail)),
                };
                let Some(i) = seqs.iter().position(|s| *s == seq) else {
                    continue;
                };
                if results[i].is_some() {
                    continue;
                }
                let outcome = match parsed {
                    Ok(NetlinkPayload::Error(err)) => match err.code {
                        None => Ok(()),
                        Some(code) => Err(NetlinkError::Kernel {
                            op: window[i].op.clone(),
                            errno: Errno::from_raw(-code.get()),
                        }),
                    },
                    // Replies to NLM_F_ECHO and the like precede the ACK; keep waiting.
                    Ok(_) => continue,
                    Err(detail) => Err(NetlinkError::Decode {
                        op: window[i].op.clone(),
                        detail,
                    }),
                };
                results[i] = Some(outcome);
                pending -= 1;
            }
            self.rx = rx;
        }
    }

    /// Sends a request that is answered by exactly one message (a "get" by key).
    pub(crate) fn get(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
    ) -> Result<RouteNetlinkMessage, NetlinkError> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        emit_message(&message, 0, seq, &mut out);
        self.client.send(&out).map_err(|source| NetlinkError::Io {
            op: op.into(),
            source,
        })?;
        loop {
            self.recv(op)?;
            let rx = std::mem::take(&mut self.rx);
            let mut answer = None;
            for item in split_datagram(&rx) {
                match item {
                    Ok((s, payload)) if s == seq => {
                        answer = Some(match payload {
                            NetlinkPayload::InnerMessage(m) => Ok(m),
                            NetlinkPayload::Error(e) if e.code.is_some() => {
                                Err(NetlinkError::Kernel {
                                    op: op.into(),
                                    errno: Errno::from_raw(-e.raw_code()),
                                })
                            }
                            other => Err(NetlinkError::Unexpected {
                                op: op.into(),
                                detail: format!("{other:?}"),
                            }),
                        });
                        break;
                    }
                    Err((s, detail)) if s == seq => {
                        answer = Some(Err(NetlinkError::Decode {
                            op: op.into(),
                            detail,
                        }));
                        break;
                    }
                    _ => {}
                }
            }
            self.rx = rx;
            if let Some(a) = answer {
                return a;
            }
        }
    }

    /// Runs a dump request and returns every object of the reply. The dump is restarted when
    /// the kernel flags it as interrupted by a concurrent change (NLM_F_DUMP_INTR), because an
    /// interrupted dump may silently miss objects.
    pub(crate) fn dump(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        for _ in 0..DUMP_ATTEMPTS {
            if let Some(objects) = self.dump_once(op, &message)? {
                return Ok(objects);
            }
        }
        Err(NetlinkError::DumpInterrupted { op: op.into() })
    }

    fn dump_once(
        &mut self,
        op: &str,
        message: &RouteNetlinkMessage,
    ) -> Result<Option<Vec<RouteNetlinkMessage>>, NetlinkError> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        emit_message(message, NLM_F_DUMP, seq, &mut out);
        self.client.send(&out).map_err(|source| NetlinkError::Io {
            op: op.into(),
            source,
        })?;
        let mut objects = Vec::new();
        let mut interrupted = false;
        loop {
            self.recv(op)?;
            let rx = std::mem::take(&mut self.rx);
            let mut finished = None;
            for (flags, item) in split_datagram_with_flags(&rx) {
                let (s, payload) = match item {
                    Ok(v) => v,
                    Err((s, detail)) => {
                        if s == seq {
                            // One object the parser does not understand must not hide all
                            // the others; the caller can only act on what it can read anyway.
                            log::warn!("{op}: skipping undecodable object: {detail}");
                        }
                        continue;
                    }
                };
                if s != seq {
                    continue;
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match payload {
                    NetlinkPayload::InnerMessage(m) => objects.push(m),
                    NetlinkPayload::Done(done) if done.code < 0 => {
                        finished = Some(Err(NetlinkError::Kernel {
                            op: op.into(),
                            errno: Errno::from_raw(-done.code),
                        }));
                    }
                    NetlinkPayload::Done(_) => finished = Some(Ok(())),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        finished = Some(Err(NetlinkError::Kernel {
                            op: op.into(),
                            errno: Errno::from_raw(-e.raw_code()),
                        }));
                    }
                    _ => {}
                }
                if finished.is_some() {
                    break;
                }
            }
            self.rx = rx;
            match finished {
                Some(Ok(())) => return Ok(if interrupted { None } else { Some(objects) }),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }

    fn recv(&mut self, op: &str) -> Result<(), NetlinkError> {
        self.client
            .recv(&mut self.rx)
            .map_err(|source| NetlinkError::Io {
                op: op.into(),
                source,
            })
    }
}

type Parsed = Result<(u32, NetlinkPayload<RouteNetlinkMessage>), (u32, String)>;

pub(super) fn split_datagram(buf: &[u8]) -> impl Iterator<Item = Parsed> + '_ {
    split_datagram_with_flags(buf).map(|(_, p)| p)
}

/// Splits a datagram into its netlink messages, decoding each independently so one bad
/// message does not poison its neighbours.
fn split_datagram_with_flags(buf: &[u8]) -> impl Iterator<Item = (u16, Parsed)> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let rest = &buf[offset.min(buf.len())..];
        let header = NetlinkBuffer::new_checked(rest).ok()?;
        let len = header.length() as usize;
        let (seq, flags) = (header.sequence_number(), header.flags());
        offset += super::request::align4(len).max(1);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map(|m| (seq, m.payload))
            .map_err(|e| (seq, e.to_string()));
        Some((flags, parsed))
    })
}

fn clone_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

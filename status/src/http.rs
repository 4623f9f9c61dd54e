//! The one HTTP GET the readers of `/status` use: plain HTTP/1.1 over a blocking `TcpStream`,
//! one request per connection, every step bounded by the caller's timeout and the answer by
//! [`MAX_RESPONSE`]. Enough for flanneld's own endpoint on this node; not a general client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A status document is a few KB per hundred peers; anything far larger is not flanneld.
pub const MAX_RESPONSE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("cannot resolve {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    /// Nothing listens there: the daemon is not running, or runs without `--healthz-port`.
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    #[error("{addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} answered something that is not HTTP: {head:?}")]
    NotHttp { addr: SocketAddr, head: String },
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub body: Vec<u8>,
}

/// `GET path` at `authority` (`host:port`), trying each address it resolves to until one
/// answers in HTTP; the last failure otherwise.
pub fn get(authority: &str, path: &str, timeout: Duration) -> Result<Response, GetError> {
    let targets = authority.to_socket_addrs().map_err(|e| GetError::Resolve {
        addr: authority.to_owned(),
        reason: e.to_string(),
    })?;
    let mut last = GetError::Resolve {
        addr: authority.to_owned(),
        reason: "no addresses".into(),
    };
    for target in targets {
        match get_from(target, authority, path, timeout) {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn get_from(
    target: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Response, GetError> {
    let io = |source| GetError::Io {
        addr: target,
        source,
    };
    let mut conn = TcpStream::connect_timeout(&target, timeout).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            GetError::Refused(target)
        } else {
            io(e)
        }
    })?;
    conn.set_read_timeout(Some(timeout)).map_err(io)?;
    conn.set_write_timeout(Some(timeout)).map_err(io)?;
    // One write: a server that answers as soon as it has the request head must not see
    // the rest arrive after it closed.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    conn.take(MAX_RESPONSE).read_to_end(&mut raw).map_err(io)?;
    let not_http = || GetError::NotHttp {
        addr: target,
        head: String::from_utf8_lossy(&raw).chars().take(80).collect(),
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(not_http)?;
    let code = std::str::from_utf8(&raw[..split])
        .ok()
        .and_then(|head| head.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(not_http)?;
    Ok(Response {
        code,
        body: raw[split + 4..].to_vec(),
    })
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

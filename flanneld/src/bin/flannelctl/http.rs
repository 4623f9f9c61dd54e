//! Just enough HTTP/1.1 to GET a document from flanneld's status endpoint: one request per
//! connection, bounded by a timeout, body read to the end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
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

/// Status code and body of `GET path` at `addr` (`host:port`).
pub fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), HttpError> {
    let targets: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| HttpError::Resolve {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = None;
    for target in targets {
        match fetch(target, addr, path, timeout) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| HttpError::Resolve {
        addr: addr.to_owned(),
        reason: "no addresses".into(),
    }))
}

fn fetch(
    target: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    let io = |source| HttpError::Io {
        addr: target,
        source,
    };
    let mut conn = TcpStream::connect_timeout(&target, timeout).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            HttpError::Refused(target)
        } else {
            io(e)
        }
    })?;
    conn.set_read_timeout(Some(timeout)).map_err(io)?;
    conn.set_write_timeout(Some(timeout)).map_err(io)?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let not_http = || HttpError::NotHttp {
        addr: target,
        head: text.chars().take(80).collect(),
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(not_http)?;
    let code = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(not_http)?;
    Ok((code, body.to_owned()))
}

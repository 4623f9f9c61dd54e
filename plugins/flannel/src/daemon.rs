//! Asking the node's flanneld how it is doing, so that STATUS and a failed ADD can say *why*
//! the pod network is not there instead of only naming a missing file.
//!
//! flanneld serves its state as JSON at `/status` on `--healthz-ip:--healthz-port`. The
//! plugin config key `daemonStatusURL` says where (default [`DEFAULT_STATUS_URL`], the port
//! kube-flannel.yml gives flanneld); an empty string turns the check off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

pub const DEFAULT_STATUS_URL: &str = "http://127.0.0.1:8081/status";
/// A daemon on this node answers in microseconds; a runtime polls STATUS and must not hang.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// A status document is a few KB per hundred peers; anything far larger is not flanneld.
const MAX_RESPONSE: u64 = 16 << 20;

/// Where to ask: `host:port` and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUrl {
    pub authority: String,
    pub path: String,
}

impl StatusUrl {
    /// Parses `http://host:port[/path]`; the path defaults to `/status`, the port to 80.
    pub fn parse(url: &str) -> Result<StatusUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("daemonStatusURL {url:?}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/status"),
        };
        if authority.is_empty() {
            return Err(format!("daemonStatusURL {url:?}: no host"));
        }
        let has_port = match authority.rfind(']') {
            Some(close) => authority[close..].contains(':'),
            None => authority.contains(':'),
        };
        Ok(StatusUrl {
            authority: if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            },
            path: path.to_owned(),
        })
    }
}

/// What the daemon said, or why it said nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    Ready,
    NotReady {
        reason: String,
        last_error: Option<String>,
    },
    /// Connection refused: no flanneld, or one running without `--healthz-port`.
    NotRunning {
        at: String,
    },
    /// Something answered (or hung) but gave no usable status.
    NoAnswer {
        at: String,
        why: String,
    },
}

impl DaemonState {
    pub fn is_ready(&self) -> bool {
        matches!(self, DaemonState::Ready)
    }

    /// One sentence for an error message.
    pub fn describe(&self) -> String {
        match self {
            DaemonState::Ready => "flanneld is running and ready".into(),
            DaemonState::NotReady { reason, last_error } => match last_error {
                Some(e) if !e.ends_with(reason.as_str()) => {
                    format!("flanneld is running but not ready: {reason} (last error: {e})")
                }
                _ => format!("flanneld is running but not ready: {reason}"),
            },
            DaemonState::NotRunning { at } => format!(
                "flanneld is not running (nothing answers at {at}; flanneld serves its status \
                 only when started with --healthz-port)"
            ),
            DaemonState::NoAnswer { at, why } => {
                format!("flanneld did not answer at {at}: {why}")
            }
        }
    }

    /// Reads a `/status` document.
    pub fn from_status(doc: &Value) -> Result<DaemonState, String> {
        let ready = doc
            .get("ready")
            .and_then(Value::as_bool)
            .ok_or("no \"ready\" in the status document")?;
        if ready {
            return Ok(DaemonState::Ready);
        }
        let reason = doc
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given")
            .to_owned();
        let last_error = doc
            .pointer("/last_error/message")
            .and_then(Value::as_str)
            .map(
                |m| match doc.pointer("/last_error/time").and_then(Value::as_str) {
                    Some(t) => format!("{t} {m}"),
                    None => m.to_owned(),
                },
            );
        Ok(DaemonState::NotReady { reason, last_error })
    }
}

/// Asks the daemon at `url`.
pub fn probe(url: &StatusUrl, timeout: Duration) -> DaemonState {
    let at = url.authority.clone();
    let no_answer = |why: String| DaemonState::NoAnswer {
        at: at.clone(),
        why,
    };
    let targets: Vec<SocketAddr> = match url.authority.to_socket_addrs() {
        Ok(t) => t.collect(),
        Err(e) => return no_answer(format!("cannot resolve: {e}")),
    };
    let mut state = no_answer("no address to connect to".into());
    for target in targets {
        state = match fetch(target, url, timeout) {
            Ok((200, body)) => match serde_json::from_slice::<Value>(&body)
                .map_err(|e| format!("status is not JSON: {e}"))
                .and_then(|doc| DaemonState::from_status(&doc))
            {
                Ok(s) => return s,
                Err(why) => no_answer(why),
            },
            Ok((code, _)) => no_answer(format!(
                "HTTP {code} for {} (a flanneld without /status?)",
                url.path
            )),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                DaemonState::NotRunning { at: at.clone() }
            }
            Err(e) => no_answer(netconf::goerror::io_error_text(&e)),
        };
    }
    state
}

fn fetch(
    target: SocketAddr,
    url: &StatusUrl,
    timeout: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut conn = TcpStream::connect_timeout(&target, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    // One write: a server that answers as soon as it has the request head must not see
    // the rest arrive after it closed.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        url.path, url.authority
    );
    conn.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    conn.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let code = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(bad)?;
    Ok((code, raw[split + 4..].to_vec()))
}

#[cfg(test)]
#[path = "daemon_tests.rs"]
mod tests;

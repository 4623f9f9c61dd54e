//! Asking the node's flanneld how it is doing, so that STATUS and a failed ADD can say *why*
//! the pod network is not there instead of only naming a missing file.
//!
//! flanneld serves its state as JSON at `/status` on `--healthz-ip:--healthz-port`. The
//! plugin config key `daemonStatusURL` says where (default [`DEFAULT_STATUS_URL`], the port
//! kube-flannel.yml gives flanneld); an empty string turns the check off.

use std::time::Duration;

use flannel_status::http::{self, GetError};
use flannel_status::StatusReport;

pub const DEFAULT_STATUS_URL: &str = "http://127.0.0.1:8081/status";
/// A daemon on this node answers in microseconds; a runtime polls STATUS and must not hang.
pub const TIMEOUT: Duration = Duration::from_secs(2);

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
    pub fn from_status(body: &[u8]) -> Result<DaemonState, String> {
        let report: StatusReport =
            serde_json::from_slice(body).map_err(|e| format!("unreadable status: {e}"))?;
        Ok(DaemonState::from_report(&report))
    }

    pub fn from_report(report: &StatusReport) -> DaemonState {
        if report.ready {
            return DaemonState::Ready;
        }
        DaemonState::NotReady {
            reason: report
                .reason
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
            last_error: report
                .last_error
                .as_ref()
                .map(|e| format!("{} {}", e.time, e.message)),
        }
    }
}

/// Asks the daemon at `url`.
pub fn probe(url: &StatusUrl, timeout: Duration) -> DaemonState {
    diagnose(url, http::get(&url.authority, &url.path, timeout))
}

/// What an answer (or its absence) says about the daemon.
fn diagnose(url: &StatusUrl, answer: Result<http::Response, GetError>) -> DaemonState {
    let no_answer = |why: String| DaemonState::NoAnswer {
        at: url.authority.clone(),
        why,
    };
    match answer {
        Ok(http::Response { code: 200, body }) => {
            DaemonState::from_status(&body).unwrap_or_else(no_answer)
        }
        Ok(http::Response { code, .. }) => no_answer(format!(
            "HTTP {code} for {} (a flanneld without /status?)",
            url.path
        )),
        Err(GetError::Refused(_)) => DaemonState::NotRunning {
            at: url.authority.clone(),
        },
        Err(GetError::Resolve { reason, .. }) => no_answer(format!("cannot resolve: {reason}")),
        Err(GetError::Io { source, .. }) => no_answer(netconf::goerror::io_error_text(&source)),
        Err(GetError::NotHttp { .. }) => no_answer("not an HTTP response".into()),
    }
}

#[cfg(test)]
#[path = "daemon_tests.rs"]
mod tests;

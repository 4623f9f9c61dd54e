use std::io::{Read, Write};
use std::net::TcpListener;

use serde_json::json;

use super::*;

/// Serves one connection with `response` and returns the URL to reach it.
fn serve_once(response: &'static str) -> StatusUrl {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        c.write_all(response.as_bytes()).unwrap();
    });
    StatusUrl::parse(&format!("http://{addr}/status")).unwrap()
}

#[test]
fn urls() {
    assert_eq!(
        StatusUrl::parse(DEFAULT_STATUS_URL).unwrap(),
        StatusUrl {
            authority: "127.0.0.1:8081".into(),
            path: "/status".into()
        }
    );
    assert_eq!(
        StatusUrl::parse("http://node.local").unwrap(),
        StatusUrl {
            authority: "node.local:80".into(),
            path: "/status".into()
        }
    );
    assert_eq!(
        StatusUrl::parse("http://[::1]:9/x").unwrap().authority,
        "[::1]:9"
    );
    assert_eq!(
        StatusUrl::parse("http://[::1]").unwrap().authority,
        "[::1]:80"
    );
    assert!(StatusUrl::parse("https://127.0.0.1:8081/status").is_err());
    assert!(StatusUrl::parse("http:///status").is_err());
}

#[test]
fn status_documents() {
    assert_eq!(
        DaemonState::from_status(json!({"ready": true, "peers": []}).to_string().as_bytes())
            .unwrap(),
        DaemonState::Ready
    );
    let s = DaemonState::from_status(json!({
        "ready": false,
        "reason": "lease failed: etcd: connection refused",
        "last_error": {"time": "2026-11-23T17:00:00Z", "message": "lease failed: etcd: connection refused"}
    }).to_string().as_bytes())
    .unwrap();
    assert_eq!(
        s.describe(),
        "flanneld is running but not ready: lease failed: etcd: connection refused"
    );
    let s = DaemonState::from_status(
        json!({
            "ready": false,
            "reason": "waiting for network config",
            "last_error": {"time": "2026-11-23T17:00:00Z", "message": "renewing lease: timed out"}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        s.describe(),
        "flanneld is running but not ready: waiting for network config (last error: 2026-11-23T17:00:00Z renewing lease: timed out)"
    );
    assert!(DaemonState::from_status(json!({"status": "ok"}).to_string().as_bytes()).is_err());
}

#[test]
fn probes_over_http() {
    let body = r#"{"ready":false,"reason":"waiting for network config"}"#;
    let resp: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    assert_eq!(
        probe(&serve_once(resp), TIMEOUT),
        DaemonState::NotReady {
            reason: "waiting for network config".into(),
            last_error: None
        }
    );
    let old = probe(
        &serve_once("HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n"),
        TIMEOUT,
    );
    assert!(
        matches!(&old, DaemonState::NoAnswer { why, .. } if why.starts_with("HTTP 404")),
        "{old:?}"
    );
    let junk = probe(&serve_once("SSH-2.0-OpenSSH\r\n"), TIMEOUT);
    assert!(matches!(junk, DaemonState::NoAnswer { .. }), "{junk:?}");
}

#[test]
fn nothing_listening_is_not_running() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let url = StatusUrl::parse(&format!("http://{addr}")).unwrap();
    let s = probe(&url, TIMEOUT);
    assert_eq!(
        s,
        DaemonState::NotRunning {
            at: addr.to_string()
        }
    );
    assert!(s.describe().contains("--healthz-port"), "{}", s.describe());
    assert!(!s.is_ready());
}

use std::net::TcpListener;

use serde_json::json;

use super::*;

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
fn answers_and_failures() {
    let url = StatusUrl::parse("http://127.0.0.1:8081/status").unwrap();
    let ok = |code: u16, body: &str| {
        diagnose(
            &url,
            Ok(http::Response {
                code,
                body: body.as_bytes().to_vec(),
            }),
        )
    };
    assert_eq!(
        ok(
            200,
            r#"{"ready":false,"reason":"waiting for network config"}"#
        ),
        DaemonState::NotReady {
            reason: "waiting for network config".into(),
            last_error: None
        }
    );
    let old = ok(404, "404 page not found\n");
    assert!(
        matches!(&old, DaemonState::NoAnswer { why, .. } if why.starts_with("HTTP 404")),
        "{old:?}"
    );
    let garbled = ok(200, "<html>");
    assert!(
        matches!(&garbled, DaemonState::NoAnswer { why, .. } if why.starts_with("unreadable status")),
        "{garbled:?}"
    );
    let addr: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
    let junk = diagnose(
        &url,
        Err(GetError::NotHttp {
            addr,
            head: "SSH-2.0-OpenSSH".into(),
        }),
    );
    assert_eq!(
        junk.describe(),
        "flanneld did not answer at 127.0.0.1:8081: not an HTTP response"
    );
    let hung = diagnose(
        &url,
        Err(GetError::Io {
            addr,
            // EAGAIN: what a read that hit its timeout returns on Linux.
            source: std::io::Error::from_raw_os_error(11),
        }),
    );
    assert!(
        matches!(&hung, DaemonState::NoAnswer { why, .. } if why == "resource temporarily unavailable"),
        "{hung:?}"
    );
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

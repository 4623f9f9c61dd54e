use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Serves one connection with `response`; returns its address and the request it read.
fn serve_once(response: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
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
        String::from_utf8(head).unwrap()
    });
    (addr, server)
}

#[test]
fn reads_code_and_body_and_sends_one_request() {
    let (addr, server) =
        serve_once("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nnope");
    let r = get(&addr, "/status", TIMEOUT).unwrap();
    assert_eq!(
        r,
        Response {
            code: 503,
            body: b"nope".to_vec()
        }
    );
    let request = server.join().unwrap();
    assert!(
        request.starts_with(&format!("GET /status HTTP/1.1\r\nHost: {addr}\r\n")),
        "{request}"
    );
    assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
}

#[test]
fn something_else_answering_is_not_http() {
    let (addr, _server) = serve_once("SSH-2.0-OpenSSH\r\n");
    let e = get(&addr, "/status", TIMEOUT).unwrap_err();
    assert!(
        matches!(&e, GetError::NotHttp { head, .. } if head == "SSH-2.0-OpenSSH\r\n"),
        "{e:?}"
    );
}

#[test]
fn nothing_listening_is_refused_and_bad_names_do_not_resolve() {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let e = get(&addr.to_string(), "/status", TIMEOUT).unwrap_err();
    assert!(matches!(e, GetError::Refused(a) if a == addr), "{e:?}");
    assert_eq!(e.to_string(), format!("connection refused by {addr}"));
    let e = get("no port here", "/status", TIMEOUT).unwrap_err();
    assert!(matches!(e, GetError::Resolve { .. }), "{e:?}");
}

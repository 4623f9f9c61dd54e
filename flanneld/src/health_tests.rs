use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn routes_and_texts() {
    let answer = |m: &Method, path: &str, ready: bool| fixed_answer(route(m, path), ready);
    assert_eq!(
        answer(&Method::GET, "/healthz", false),
        (StatusCode::OK, "flanneld is running")
    );
    assert_eq!(
        answer(&Method::GET, "/readyz", false),
        (StatusCode::SERVICE_UNAVAILABLE, "flanneld is not ready yet")
    );
    assert_eq!(
        answer(&Method::GET, "/readyz", true),
        (StatusCode::OK, "flanneld is ready")
    );
    assert_eq!(
        answer(&Method::GET, "/other", true),
        (StatusCode::NOT_FOUND, "404 page not found\n")
    );
    assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
    assert_eq!(route(&Method::HEAD, "/status"), Route::Status);
    assert_eq!(route(&Method::DELETE, "/status"), Route::MethodNotAllowed);
    assert_eq!(
        answer(&Method::POST, "/healthz", true),
        (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
    );
}

/// A server on a free loopback port, for `state`.
async fn serving(state: &State) -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    start(addr, state.clone()).await.unwrap();
    addr
}

/// Sends `request` as it is and reads the answer to the end.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    // The server may close before reading all of a request it refuses.
    let _ = c.read_to_end(&mut raw).await;
    String::from_utf8(raw).unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
}

fn body(response: &str) -> &str {
    &response[response.find("\r\n\r\n").expect("a complete head") + 4..]
}

#[tokio::test(flavor = "current_thread")]
async fn serves_over_tcp_and_follows_readiness() {
    let state = State::new();
    let addr = serving(&state).await;
    let r = get(addr, "/readyz").await;
    assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
    assert!(
        r.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{r}"
    );
    assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
    assert_eq!(body(&r), "flanneld is not ready yet", "{r}");
    state.set_phase(crate::state::Phase::Ready);
    let r = get(addr, "/readyz?verbose").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert_eq!(body(&r), "flanneld is ready", "{r}");
    assert_eq!(body(&get(addr, "/healthz").await), "flanneld is running");
    let r = get(addr, "/status").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("\r\nContent-Type: application/json\r\n"), "{r}");
    let v: serde_json::Value = serde_json::from_str(body(&r)).unwrap();
    assert_eq!(v["ready"], serde_json::json!(true), "{v}");
    assert_eq!(v["peers"], serde_json::json!([]), "{v}");
    let r = get(addr, "/metrics").await;
    assert!(
        r.contains(&format!(
            "\r\nContent-Type: {}\r\n",
            crate::metrics::CONTENT_TYPE
        )),
        "{r}"
    );
    assert!(
        r.contains("\nflannel_peers 0\n") && r.ends_with("# EOF\n"),
        "{r}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_paths_other_methods_and_head() {
    let state = State::new();
    let addr = serving(&state).await;
    let r = get(addr, "/nope").await;
    assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
    assert_eq!(body(&r), "404 page not found\n", "{r}");
    let r = exchange(
        addr,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
    assert_eq!(body(&r), "method not allowed\n", "{r}");
    // HEAD: the GET's head, with the length the body would have, and no body.
    let r = exchange(addr, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("\r\nContent-Length: 19\r\n"), "{r}");
    assert_eq!(body(&r), "", "{r}");
    // HTTP/1.0 clients (old probes) get an answer too.
    let r = exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
    assert_eq!(body(&r), "flanneld is running", "{r}");
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_oversized_and_silent_requests_are_refused() {
    let state = State::new();
    let addr = serving(&state).await;
    for junk in [
        &b"this is not http\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let r = exchange(addr, junk).await;
        assert!(
            r.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?}: {r}",
            String::from_utf8_lossy(junk)
        );
    }
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(2 * MAX_REQUEST)
    );
    let r = exchange(addr, big.as_bytes()).await;
    assert!(
        r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{r}"
    );
    // A client that connects and says nothing is let go, and the server still answers.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(REQUEST_TIMEOUT * 6, idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle connection was kept open");
    assert_eq!(body(&get(addr, "/healthz").await), "flanneld is running");
}

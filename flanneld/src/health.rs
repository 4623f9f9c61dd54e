//! `/healthz` and `/readyz` over a minimal HTTP/1.1 server: one request per connection, GET
//! and HEAD only, bounded request size and time, so a misbehaving client cannot hold the
//! daemon's resources.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::state::State;

const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Status line and body for a request line such as `GET /readyz HTTP/1.1`.
pub fn respond(request_line: &str, ready: bool) -> (&'static str, &'static str) {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "method not allowed\n");
    }
    match path {
        "/healthz" => ("200 OK", "flanneld is running"),
        "/readyz" if ready => ("200 OK", "flanneld is ready"),
        "/readyz" => ("503 Service Unavailable", "flanneld is not ready yet"),
        _ => ("404 Not Found", "404 page not found\n"),
    }
}

async fn serve_one(mut conn: TcpStream, state: State) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_REQUEST {
            conn.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").await?;
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let line = head.lines().next().unwrap_or("");
    let (status, body) = respond(line, state.lock().ready);
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !line.starts_with("HEAD ") {
        out.push_str(body);
    }
    conn.write_all(out.as_bytes()).await?;
    conn.shutdown().await
}

/// Binds `addr` (errors surface to the caller) and serves in the background.
pub async fn start(addr: SocketAddr, state: State) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    log::info!("health endpoints (/healthz, /readyz) on http://{addr}");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((conn, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(REQUEST_TIMEOUT, serve_one(conn, state)).await {
                            Ok(Err(e)) => log::debug!("health request failed: {e}"),
                            Err(_) => log::debug!("health request timed out"),
                            Ok(Ok(())) => {}
                        }
                    });
                }
                Err(e) => {
                    log::warn!("health endpoint accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_texts() {
        assert_eq!(
            respond("GET /healthz HTTP/1.1", false),
            ("200 OK", "flanneld is running")
        );
        assert_eq!(
            respond("GET /readyz HTTP/1.1", false),
            ("503 Service Unavailable", "flanneld is not ready yet")
        );
        assert_eq!(
            respond("GET /readyz?verbose HTTP/1.1", true),
            ("200 OK", "flanneld is ready")
        );
        assert_eq!(respond("GET /other HTTP/1.1", true).0, "404 Not Found");
        assert_eq!(
            respond("POST /healthz HTTP/1.1", true).0,
            "405 Method Not Allowed"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn serves_over_tcp_and_follows_readiness() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let state = State::new();
        start(addr, state.clone()).await.unwrap();
        let get = |path: &'static str| async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).await.unwrap();
            s
        };
        let r = get("/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        assert!(r.ends_with("\r\n\r\nflanneld is not ready yet"), "{r}");
        state.lock().ready = true;
        let r = get("/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("flanneld is ready"),
            "{r}"
        );
        assert!(get("/healthz")
            .await
            .ends_with("\r\n\r\nflanneld is running"));
    }
}

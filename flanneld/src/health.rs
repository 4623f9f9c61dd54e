//! The daemon's HTTP endpoints on `--healthz-ip`/`--healthz-port`: `/healthz` and `/readyz`
//! as upstream, `/metrics` (OpenMetrics text) and `/status` (JSON, see [`crate::status`]).
//! A minimal HTTP/1.1 server: one request per connection, GET and HEAD only, bounded request
//! size and time, so a misbehaving client cannot hold the daemon's resources.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::{DatapathSource, ScrapeView};
use crate::state::State;
use crate::status::{self, Counts, KernelRoutes};

const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const TEXT: &str = "text/plain; charset=utf-8";

/// What a request asks for, decided from its request line alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    Status,
    NotFound,
    MethodNotAllowed,
}

/// The endpoint for a request line such as `GET /readyz HTTP/1.1`.
pub fn route(request_line: &str) -> Route {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/status" => Route::Status,
        _ => Route::NotFound,
    }
}

/// Status line and body of the endpoints whose answer is fixed text (upstream's texts).
pub fn respond(request_line: &str, ready: bool) -> (&'static str, &'static str) {
    match route(request_line) {
        Route::Healthz => ("200 OK", "flanneld is running"),
        Route::Readyz if ready => ("200 OK", "flanneld is ready"),
        Route::Readyz => ("503 Service Unavailable", "flanneld is not ready yet"),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "method not allowed\n"),
        Route::Metrics | Route::Status | Route::NotFound => {
            ("404 Not Found", "404 page not found\n")
        }
    }
}

/// The kernel's routes, read off the async threads; the reason when they cannot be read.
async fn kernel_routes() -> Result<KernelRoutes, String> {
    match tokio::task::spawn_blocking(KernelRoutes::read).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("route check task: {e}")),
    }
}

/// `/status` as JSON; always 200, readiness is in the document.
pub async fn status_json(state: &State) -> String {
    let kernel = kernel_routes().await;
    let snapshot = state.snapshot();
    let m = state.metrics();
    let counts = Counts {
        drift_repairs: m.repairs_total(),
        lease_renewals: m.lease_renewals(),
        lease_errors: m.lease_errors(),
    };
    // The kernel device is read over netlink: off the async threads, like the routes.
    let wireguard = match snapshot.datapath.clone() {
        Some(DatapathSource::Wireguard(source)) => {
            tokio::task::spawn_blocking(move || source()).await.ok()
        }
        _ => None,
    };
    let report = status::report(
        &snapshot,
        counts,
        kernel.as_ref().map_err(Clone::clone),
        wireguard.as_ref(),
    );
    let mut body = serde_json::to_string_pretty(&report).expect("plain data serializes");
    body.push('\n');
    body
}

/// `/metrics` in the OpenMetrics text format.
pub async fn metrics_text(state: &State) -> String {
    let kernel = kernel_routes().await;
    let snapshot = state.snapshot();
    let backend_type = snapshot
        .lease
        .as_ref()
        .map_or("", |l| l.attrs.backend_type.as_str());
    let view = ScrapeView {
        routes_programmed: kernel.ok().map(|k| {
            snapshot
                .peers
                .iter()
                .filter(|p| k.has_route(backend_type, p))
                .count()
        }),
        lease: snapshot.lease.clone(),
        peers: snapshot.peers.len(),
    };
    state.metrics().encode(&view)
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
    let (status, content_type, body) = match route(line) {
        Route::Metrics => (
            "200 OK",
            crate::metrics::CONTENT_TYPE,
            metrics_text(&state).await,
        ),
        Route::Status => ("200 OK", "application/json", status_json(&state).await),
        _ => {
            let (status, body) = respond(line, state.lock().ready());
            (status, TEXT, body.to_owned())
        }
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !line.starts_with("HEAD ") {
        out.push_str(&body);
    }
    conn.write_all(out.as_bytes()).await?;
    conn.shutdown().await
}

/// Binds `addr` (errors surface to the caller) and serves in the background.
pub async fn start(addr: SocketAddr, state: State) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    log::info!(
        "health and status endpoints (/healthz, /readyz, /metrics, /status) on http://{addr}"
    );
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
        assert_eq!(route("GET /metrics HTTP/1.1"), Route::Metrics);
        assert_eq!(route("HEAD /status?x=1 HTTP/1.1"), Route::Status);
        assert_eq!(route("DELETE /status HTTP/1.1"), Route::MethodNotAllowed);
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
        state.set_phase(crate::state::Phase::Ready);
        let r = get("/readyz").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("flanneld is ready"),
            "{r}"
        );
        assert!(get("/healthz")
            .await
            .ends_with("\r\n\r\nflanneld is running"));
        let r = get("/status").await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"),
            "{r}"
        );
        let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["ready"], serde_json::json!(true), "{v}");
        assert_eq!(v["peers"], serde_json::json!([]), "{v}");
        let r = get("/metrics").await;
        assert!(
            r.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
            "{r}"
        );
        assert!(
            r.contains("\nflannel_peers 0\n") && r.ends_with("# EOF\n"),
            "{r}"
        );
    }
}

//! The daemon's HTTP endpoints on `--healthz-ip`/`--healthz-port`: `/healthz` and `/readyz`
//! as upstream, `/metrics` (OpenMetrics text) and `/status` (JSON, see [`crate::status`]).
//! HTTP/1.1 through hyper's server (request parsing, HEAD, malformed and oversized requests);
//! one request per connection, a bounded request head and a bounded time per connection, so
//! a misbehaving client cannot hold the daemon's resources.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::{DatapathSource, ScrapeView};
use crate::state::State;
use crate::status::{self, Counts, KernelRoutes};

/// hyper's smallest request buffer; past it a request is answered 431.
const MAX_REQUEST: usize = 8192;
/// For the whole connection: reading the request, building the answer, writing it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const TEXT: &str = "text/plain; charset=utf-8";

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    Status,
    NotFound,
    MethodNotAllowed,
}

/// The endpoint for a method and a path (the query is not part of it).
pub fn route(method: &Method, path: &str) -> Route {
    if method != Method::GET && method != Method::HEAD {
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

/// Status and body of the endpoints whose answer is fixed text (upstream's texts).
pub fn fixed_answer(route: Route, ready: bool) -> (StatusCode, &'static str) {
    match route {
        Route::Healthz => (StatusCode::OK, "flanneld is running"),
        Route::Readyz if ready => (StatusCode::OK, "flanneld is ready"),
        Route::Readyz => (StatusCode::SERVICE_UNAVAILABLE, "flanneld is not ready yet"),
        Route::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        Route::Metrics | Route::Status | Route::NotFound => {
            (StatusCode::NOT_FOUND, "404 page not found\n")
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

async fn answer(req: Request<Incoming>, state: State) -> Result<Response<Full<Bytes>>, Infallible> {
    let (code, content_type, body) = match route(req.method(), req.uri().path()) {
        Route::Metrics => (
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            metrics_text(&state).await,
        ),
        Route::Status => (
            StatusCode::OK,
            "application/json",
            status_json(&state).await,
        ),
        other => {
            let ready = state.lock().ready();
            let (code, body) = fixed_answer(other, ready);
            (code, TEXT, body.to_owned())
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(response)
}

async fn serve(conn: TcpStream, state: State) {
    let service = service_fn(move |req| answer(req, state.clone()));
    let connection = http1::Builder::new()
        // One request per connection (`Connection: close`) bounds what a client can hold;
        // header names keep the `Content-Type` spelling scrapers and probes have seen so far.
        .keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_REQUEST)
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .serve_connection(TokioIo::new(conn), service);
    match tokio::time::timeout(REQUEST_TIMEOUT, connection).await {
        Ok(Err(e)) => log::debug!("health request failed: {e}"),
        Err(_) => log::debug!("health request timed out"),
        Ok(Ok(())) => {}
    }
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
                    tokio::spawn(serve(conn, state.clone()));
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
#[path = "health_tests.rs"]
mod tests;

//! The HTTP(S) side of the v2 API: one pooled hyper client, TLS from the `--etcd-*` files,
//! basic auth, and failover across the endpoints.
//!
//! A request goes to the endpoint that answered last and moves on to the next one only when
//! no HTTP answer came back at all (refused, reset, timed out); any answer, error statuses
//! included, is the cluster speaking and is returned as is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::wire::INDEX_HEADER;
use super::V2Error;
use crate::subnet::etcd::EtcdConfig;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive: a peer that vanished without a FIN is noticed on idle pooled connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// An answer from etcd: status, the store index it was served at, and the body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub etcd_index: Option<u64>,
    pub body: Bytes,
    /// The endpoint that answered, for error messages.
    pub endpoint: String,
}

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoints: Arc<Vec<Uri>>,
    /// Index of the endpoint that answered last, where the next request starts.
    preferred: Arc<AtomicUsize>,
    auth: Option<HeaderValue>,
}

fn read_file(what: &'static str, path: &str) -> Result<Vec<u8>, V2Error> {
    std::fs::read(path).map_err(|source| V2Error::TlsFile {
        what,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(what: &'static str, path: &str, e: impl std::fmt::Display) -> V2Error {
    V2Error::Tls(format!("{what} {path}: {e}"))
}

/// The rustls config for `https://` endpoints: the server verified against `--etcd-cafile`
/// (the system roots without one), our certificate presented when both `--etcd-certfile` and
/// `--etcd-keyfile` are given, as the v3 client does.
fn tls_config(cfg: &EtcdConfig) -> Result<rustls::ClientConfig, V2Error> {
    let mut roots = rustls::RootCertStore::empty();
    if cfg.cafile.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            log::warn!("loading system CA certificates: {e}");
        }
        roots.add_parsable_certificates(native.certs);
    } else {
        let pem = read_file("CA", &cfg.cafile)?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| pem_error("CA", &cfg.cafile, e))?;
            roots
                .add(cert)
                .map_err(|e| pem_error("CA", &cfg.cafile, e))?;
        }
        if roots.is_empty() {
            return Err(pem_error("CA", &cfg.cafile, "no certificate in file"));
        }
    }
    // An explicit provider: several rustls users share this process, and the process-wide
    // default is ambiguous when more than one crypto backend is compiled in.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| V2Error::Tls(e.to_string()))?
        .with_root_certificates(roots);
    if cfg.certfile.is_empty() || cfg.keyfile.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let cert_pem = read_file("certificate", &cfg.certfile)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", &cfg.certfile, e))?;
    if chain.is_empty() {
        return Err(pem_error(
            "certificate",
            &cfg.certfile,
            "no certificate in file",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read_file("key", &cfg.keyfile)?)
        .map_err(|e| pem_error("key", &cfg.keyfile, e))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| V2Error::Tls(e.to_string()))
}

/// `Basic base64(user:password)`, or nothing without a user name.
pub fn basic_auth(username: &str, password: &str) -> Option<String> {
    if username.is_empty() {
        return None;
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    Some(format!("Basic {token}"))
}

impl HttpClient {
    /// Builds the client; nothing is dialled until the first request.
    pub fn new(cfg: &EtcdConfig) -> Result<HttpClient, V2Error> {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| {
                let uri: Uri = e
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|err| V2Error::Endpoint(e.clone(), format!("{err}")))?;
                match uri.scheme_str() {
                    Some("http" | "https") if uri.host().is_some() => Ok(uri),
                    _ => Err(V2Error::Endpoint(
                        e.clone(),
                        "expected http://host:port or https://host:port".into(),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(V2Error::Endpoint(String::new(), "no endpoints".into()));
        }
        let tls = if endpoints.iter().any(|u| u.scheme_str() == Some("https")) {
            tls_config(cfg)?
        } else {
            // Never used for plain endpoints; the connector still wants one.
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| V2Error::Tls(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let auth = basic_auth(&cfg.username, &cfg.password)
            .map(|v| HeaderValue::from_str(&v))
            .transpose()
            .map_err(|e| V2Error::Endpoint(String::new(), format!("bad credentials: {e}")))?;
        Ok(HttpClient {
            client,
            endpoints: Arc::new(endpoints),
            preferred: Arc::new(AtomicUsize::new(0)),
            auth,
        })
    }

    /// Sends `method path_and_query` (with a form `body` if any) to the endpoints in turn,
    /// each attempt bounded by `timeout`.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Answer, V2Error> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let base = &self.endpoints[idx];
            let endpoint = base.to_string().trim_end_matches('/').to_owned();
            let uri = format!("{endpoint}{path_and_query}");
            let mut req = Request::builder().method(method.clone()).uri(&uri);
            if let Some(auth) = &self.auth {
                req = req.header(AUTHORIZATION, auth.clone());
            }
            let payload = match &body {
                Some(b) => {
                    req = req.header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    );
                    Full::new(Bytes::from(b.clone()))
                }
                None => Full::new(Bytes::new()),
            };
            let req = req
                .body(payload)
                .map_err(|e| V2Error::Endpoint(uri.clone(), e.to_string()))?;
            match tokio::time::timeout(timeout, self.exchange(req)).await {
                Ok(Ok((status, etcd_index, body))) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(Answer {
                        status,
                        etcd_index,
                        body,
                        endpoint,
                    });
                }
                Ok(Err(e)) => failures.push(format!("{endpoint}: {e}")),
                Err(_) => failures.push(format!("{endpoint}: no answer within {timeout:?}")),
            }
        }
        Err(V2Error::Unreachable(failures.join("; ")))
    }

    async fn exchange(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Option<u64>, Bytes), String> {
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let etcd_index = resp
            .headers()
            .get(INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| error_chain(&e))?
            .to_bytes();
        Ok((status, etcd_index, body))
    }
}

/// hyper's errors say "client error (Connect)"; the cause (refused, certificate unknown) is
/// further down the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

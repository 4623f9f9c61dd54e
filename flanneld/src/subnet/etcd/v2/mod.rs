//! The etcd v2 store (`--etcd-api=v2`): config and leases in etcd's v2 keyspace,
//! as flannel v0.10–v0.17 kept them, so nodes of both generations share one cluster.
//!
//! Same keys as the v3 store (`<prefix>/config`, `<prefix>/subnets/10.244.1.0-24`); a lease
//! is a key with a TTL instead of a key on an etcd lease. Writes that must not clobber
//! anything are conditional: a new lease is created with `prevExist=false`, a renewal only
//! succeeds while the key still holds exactly our value (`prevValue`).

mod client;
#[cfg(test)]
mod tests;
mod watch;
pub mod wire;
mod write;

pub use client::basic_auth;
pub use watch::watch_subnets;

use std::time::Duration;

use hyper::{Method, StatusCode};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::subnet::store::{join_key, EtcdConfig, SubnetError};
use crate::subnet::{subnet_key, Lease};
use client::{Answer, HttpClient};
use wire::{code, key_path, ApiError, NodeError, Response};

/// Unary requests that take longer than this count as failed (and move to the next endpoint).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    #[error("etcd v2 {op} {key}: {} (code {}, cause {:?}, index {})",
        .error.message, .error.code, .error.cause, .error.index)]
    Api {
        op: &'static str,
        key: String,
        error: ApiError,
    },
    /// An HTTP answer that is not etcd's v2 JSON: typically `404 page not found` from an
    /// etcd 3.4+ started without `--enable-v2`.
    #[error("etcd at {endpoint} does not serve the v2 API (HTTP {status}: {body})")]
    Http {
        endpoint: String,
        status: StatusCode,
        body: String,
    },
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(String),
    #[error("invalid etcd endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("reading {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("etcd TLS setup: {0}")]
    Tls(String),
    #[error("etcd v2 {op} {key}: unexpected answer: {detail}")]
    Decode {
        op: &'static str,
        key: String,
        detail: String,
    },
}

impl V2Error {
    /// The etcd error code of an API error.
    pub fn code(&self) -> Option<u64> {
        match self {
            V2Error::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Errors retrying cannot fix (bad flags or files).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            V2Error::Endpoint(..) | V2Error::TlsFile { .. } | V2Error::Tls(_)
        )
    }
}

impl From<V2Error> for SubnetError {
    fn from(e: V2Error) -> SubnetError {
        SubnetError::V2(Box::new(e))
    }
}

/// A successful answer and the store index it was served at.
#[derive(Debug)]
struct Served {
    response: Response,
    etcd_index: Option<u64>,
}

/// A client for the v2 keyspace plus the key layout. Cheap to clone (the client pools).
#[derive(Clone)]
pub struct V2Registry {
    http: HttpClient,
    prefix: String,
    ttl: Duration,
}

impl V2Registry {
    /// Builds the client from the same `--etcd-*` settings as the v3 one. Nothing is dialled
    /// until the first request.
    pub fn connect(cfg: &EtcdConfig, ttl: Duration) -> Result<V2Registry, V2Error> {
        Ok(V2Registry {
            http: HttpClient::new(cfg)?,
            prefix: cfg.prefix.clone(),
            ttl,
        })
    }

    fn ttl_secs(&self) -> String {
        self.ttl.as_secs().max(1).to_string()
    }

    pub fn config_key(&self) -> String {
        join_key(&self.prefix, "config")
    }

    pub fn subnets_dir(&self) -> String {
        join_key(&self.prefix, "subnets")
    }

    pub fn subnet_path(&self, subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> String {
        join_key(&self.subnets_dir(), &subnet_key(subnet, ipv6_subnet))
    }

    /// One request: `query` goes into the URL, `form` into the body.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        form: Option<&[(&str, &str)]>,
        timeout: Duration,
    ) -> Result<Served, V2Error> {
        let mut target = key_path(key);
        if !query.is_empty() {
            target.push('?');
            target.push_str(&wire::form(query));
        }
        let body = form.map(wire::form);
        let answer = self.http.request(method, &target, body, timeout).await?;
        decode(op, key, answer)
    }

    /// The raw network config JSON; `Ok(None)` when the key does not exist.
    pub async fn get_network_config(&self) -> Result<Option<String>, V2Error> {
        let key = self.config_key();
        match self
            .call("get", Method::GET, &key, &[], None, REQUEST_TIMEOUT)
            .await
        {
            Ok(served) => match served.response.node {
                Some(node) if !node.dir => Ok(Some(node.value.unwrap_or_default())),
                _ => Err(V2Error::Decode {
                    op: "get",
                    key,
                    detail: "a directory, not a value".into(),
                }),
            },
            Err(e) if e.code() == Some(code::KEY_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// All lease records and the store index they were read at (a watch continues after it).
    pub async fn list_subnets(&self) -> Result<(Vec<Lease>, u64), SubnetError> {
        let (nodes, index) = self.list_nodes().await?;
        let mut leases = Vec::with_capacity(nodes.len());
        for node in &nodes {
            match wire::lease_from_node(node) {
                Ok(lease) => leases.push(lease),
                Err(e @ NodeError::BadKey(_)) => log::warn!("{e}"),
                Err(NodeError::BadValue { key, source }) => {
                    log::warn!("Ignoring lease {key}: {source}")
                }
            }
        }
        Ok((leases, index))
    }

    /// The nodes under the subnets directory and the store index they were read at.
    async fn list_nodes(&self) -> Result<(Vec<wire::Node>, u64), SubnetError> {
        let dir = self.subnets_dir();
        let served = match self
            .call(
                "list",
                Method::GET,
                &dir,
                &[("recursive", "true")],
                None,
                REQUEST_TIMEOUT,
            )
            .await
        {
            Ok(served) => served,
            // No lease was ever written: an empty set, watchable from the error's index.
            Err(V2Error::Api { error, .. }) if error.code == code::KEY_NOT_FOUND => {
                return Ok((Vec::new(), error.index));
            }
            Err(e) => return Err(e.into()),
        };
        let nodes = served.response.node.map(|n| n.nodes).unwrap_or_default();
        Ok((nodes, served.etcd_index.unwrap_or(0)))
    }

    /// Waits up to `timeout` for the first change under the subnets directory at index
    /// `from` or later; `Ok(None)` when nothing happened in that time.
    pub(crate) async fn wait(
        &self,
        from: u64,
        timeout: Duration,
    ) -> Result<Option<Response>, V2Error> {
        let from = from.to_string();
        let query = [
            ("wait", "true"),
            ("recursive", "true"),
            ("waitIndex", &*from),
        ];
        let dir = self.subnets_dir();
        // A quiet long poll is not a failure to fail over from, so the attempt itself gets
        // more time than the poll; an endpoint that went silent is left on the next poll,
        // whose fresh connection it cannot accept.
        let call = self.call("watch", Method::GET, &dir, &query, None, timeout * 2);
        match tokio::time::timeout(timeout, call).await {
            Ok(served) => Ok(Some(served?.response)),
            Err(_) => Ok(None),
        }
    }
}

/// Turns an HTTP answer into etcd's success or error JSON.
fn decode(op: &'static str, key: &str, answer: Answer) -> Result<Served, V2Error> {
    if answer.status.is_success() {
        let response: Response =
            serde_json::from_slice(&answer.body).map_err(|e| V2Error::Decode {
                op,
                key: key.to_owned(),
                detail: format!("{e}: {}", String::from_utf8_lossy(&answer.body)),
            })?;
        return Ok(Served {
            response,
            etcd_index: answer.etcd_index,
        });
    }
    match serde_json::from_slice::<ApiError>(&answer.body) {
        Ok(error) => Err(V2Error::Api {
            op,
            key: key.to_owned(),
            error,
        }),
        Err(_) => Err(V2Error::Http {
            endpoint: answer.endpoint,
            status: answer.status,
            body: String::from_utf8_lossy(&answer.body).trim().to_owned(),
        }),
    }
}

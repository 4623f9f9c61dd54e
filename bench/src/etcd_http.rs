//! Writing lease records to etcd with a precise send timestamp.
//!
//! `etcdctl put` spends tens of milliseconds starting up before the request
//! leaves, which would swamp a route-programming latency measured in
//! milliseconds. etcd's JSON gateway (`/v3/...`) takes one small HTTP request
//! instead; the connection is opened inside the namespace etcd is reachable
//! from and kept alive, so the timed request is a single write.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::in_netns;

#[derive(Debug, thiserror::Error)]
pub enum EtcdHttpError {
    #[error("etcd gateway at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("etcd gateway at {addr} answered {status} to {path}: {body}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
        body: String,
    },
    #[error("etcd gateway at {addr}: malformed response to {path}: {detail}")]
    Malformed {
        addr: SocketAddr,
        path: String,
        detail: String,
    },
}

/// A keep-alive HTTP/1.1 connection to etcd's JSON gateway.
pub struct EtcdHttp {
    addr: SocketAddr,
    conn: BufReader<TcpStream>,
    /// The path of a request sent but not yet answered.
    pending: Option<String>,
}

impl EtcdHttp {
    /// Connects from inside the namespace at `netns` to etcd at `addr`.
    pub fn connect(netns: &Path, addr: SocketAddr) -> Result<EtcdHttp, EtcdHttpError> {
        let io = |source| EtcdHttpError::Io { addr, source };
        let stream = in_netns::run(netns, move || {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            Ok(s)
        })
        .map_err(io)?;
        Ok(EtcdHttp {
            addr,
            conn: BufReader::new(stream),
            pending: None,
        })
    }

    /// Grants an etcd lease of `ttl` seconds; returns its id (as etcd's JSON
    /// prints 64-bit ids: a decimal string).
    pub fn grant(&mut self, ttl: u64) -> Result<String, EtcdHttpError> {
        let path = "/v3/lease/grant";
        let v = self.call(path, &json!({"TTL": ttl}))?;
        v["ID"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.malformed(path, format!("no ID in {v}")))
    }

    /// Sends a put of `key` = `value` (attached to `lease` if given) without
    /// waiting for the answer, so a watcher can start at once; returns the
    /// instant just before the request was written. Call [`EtcdHttp::finish`]
    /// before the next request.
    pub fn send_put(
        &mut self,
        key: &str,
        value: &str,
        lease: Option<&str>,
    ) -> Result<Instant, EtcdHttpError> {
        let mut body = json!({"key": b64(key), "value": b64(value)});
        if let Some(id) = lease {
            body["lease"] = Value::String(id.to_owned());
        }
        self.send("/v3/kv/put", &body)
    }

    /// Sends a delete of `key`, like [`EtcdHttp::send_put`].
    pub fn send_delete(&mut self, key: &str) -> Result<Instant, EtcdHttpError> {
        self.send("/v3/kv/deleterange", &json!({"key": b64(key)}))
    }

    /// Reads and checks the answer to the request sent last.
    pub fn finish(&mut self) -> Result<Value, EtcdHttpError> {
        let path = self
            .pending
            .take()
            .ok_or_else(|| self.malformed("-", "no request is waiting for an answer".into()))?;
        let (status, text) = self.read_response(&path)?;
        if status != 200 {
            return Err(EtcdHttpError::Status {
                addr: self.addr,
                path,
                status,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| self.malformed(&path, format!("{e}: {text}")))
    }

    fn call(&mut self, path: &str, body: &Value) -> Result<Value, EtcdHttpError> {
        self.send(path, body)?;
        self.finish()
    }

    fn send(&mut self, path: &str, body: &Value) -> Result<Instant, EtcdHttpError> {
        if self.pending.is_some() {
            self.finish()?;
        }
        let addr = self.addr;
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        self.conn
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|source| EtcdHttpError::Io { addr, source })?;
        self.pending = Some(path.to_owned());
        Ok(sent)
    }

    fn read_response(&mut self, path: &str) -> Result<(u16, String), EtcdHttpError> {
        let addr = self.addr;
        let io = |source| EtcdHttpError::Io { addr, source };
        let mut status_line = String::new();
        self.conn.read_line(&mut status_line).map_err(io)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| self.malformed(path, format!("status line {status_line:?}")))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            self.conn.read_line(&mut line).map_err(io)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let body = if chunked {
            self.read_chunked(path)?
        } else {
            let n =
                length.ok_or_else(|| self.malformed(path, "neither length nor chunks".into()))?;
            let mut buf = vec![0; n];
            self.conn.read_exact(&mut buf).map_err(io)?;
            buf
        };
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    fn read_chunked(&mut self, path: &str) -> Result<Vec<u8>, EtcdHttpError> {
        let addr = self.addr;
        let io = |source| EtcdHttpError::Io { addr, source };
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            self.conn.read_line(&mut size_line).map_err(io)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| self.malformed(path, format!("chunk size {size_line:?}")))?;
            let mut chunk = vec![0; size + 2];
            self.conn.read_exact(&mut chunk).map_err(io)?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    fn malformed(&self, path: &str, detail: String) -> EtcdHttpError {
        EtcdHttpError::Malformed {
            addr: self.addr,
            path: path.to_owned(),
            detail,
        }
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conformance::etcd::{Etcd, EtcdOptions};

    #[test]
    fn puts_with_a_lease_and_deletes_through_the_gateway() {
        let etcd = Etcd::start(EtcdOptions::loopback()).unwrap();
        let addr = etcd.client_addr();
        let mut http = EtcdHttp::connect(Path::new("/proc/self/ns/net"), addr).unwrap();
        let lease = http.grant(60).unwrap();
        assert!(lease.parse::<i64>().is_ok(), "{lease}");

        let before = Instant::now();
        let sent = http
            .send_put("/fr/k", r#"{"PublicIP":"192.168.1.9"}"#, Some(&lease))
            .unwrap();
        assert!(sent >= before);
        http.finish().unwrap();
        assert_eq!(
            etcd.get("/fr/k").unwrap().as_deref(),
            Some(r#"{"PublicIP":"192.168.1.9"}"#)
        );
        let listed = etcd.etcdctl(&["get", "/fr/k", "-w", "json"]).unwrap();
        let v: Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(
            v["kvs"][0]["lease"].as_i64().map(|l| l.to_string()),
            Some(lease)
        );

        http.send_delete("/fr/k").unwrap();
        http.finish().unwrap();
        assert_eq!(etcd.get("/fr/k").unwrap(), None);
        assert!(matches!(
            http.finish(),
            Err(EtcdHttpError::Malformed { .. })
        ));
    }
}

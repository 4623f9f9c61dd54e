//! Counting the requests etcd served, from its own Prometheus counters.
//!
//! etcd (3.4, `--metrics=basic`, the default) counts every finished gRPC call in
//! `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}`. Two readings taken
//! around a run and subtracted give exactly the calls the run made, broken down by
//! method, without instrumenting the client under test. The JSON gateway and etcdctl
//! go through the same gRPC server, so nothing else may talk to etcd between the
//! readings. The WAL fsync histogram's sum and count come along: when they account for
//! most of a run's wall time, etcd was waiting on the disk, not on its clients.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const COUNTER: &str = "grpc_server_handled_total";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("GET http://{addr}/metrics: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("GET http://{addr}/metrics answered {status_line:?}")]
    Status {
        addr: SocketAddr,
        status_line: String,
    },
}

/// Time etcd spent in fsync(2) of its write-ahead log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WalFsync {
    pub count: u64,
    pub secs: f64,
}

impl WalFsync {
    pub fn parse(text: &str) -> WalFsync {
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        WalFsync {
            count: value("etcd_disk_wal_fsync_duration_seconds_count") as u64,
            secs: value("etcd_disk_wal_fsync_duration_seconds_sum"),
        }
    }

    pub fn since(&self, before: &WalFsync) -> WalFsync {
        WalFsync {
            count: self.count.saturating_sub(before.count),
            secs: (self.secs - before.secs).max(0.0),
        }
    }
}

/// Both readings etcd's `/metrics` gives a benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub calls: GrpcCalls,
    pub fsync: WalFsync,
}

impl Reading {
    /// Reads etcd's client endpoint at `addr` (plain HTTP).
    pub fn read(addr: SocketAddr) -> Result<Reading, MetricsError> {
        let text = scrape(addr)?;
        Ok(Reading {
            calls: GrpcCalls::parse(&text),
            fsync: WalFsync::parse(&text),
        })
    }

    pub fn since(&self, before: &Reading) -> Reading {
        Reading {
            calls: self.calls.since(&before.calls),
            fsync: self.fsync.since(&before.fsync),
        }
    }
}

/// The text of `http://<addr>/metrics`.
fn scrape(addr: SocketAddr) -> Result<String, MetricsError> {
    let io = |source| MetricsError::Io { addr, source };
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(io)?;
    let status_line = text.lines().next().unwrap_or("").to_owned();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(MetricsError::Status { addr, status_line });
    }
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned()))
}

/// Finished gRPC calls per `service/method` (e.g. `etcdserverpb.KV/Range`), all result
/// codes summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcCalls(BTreeMap<String, u64>);

impl GrpcCalls {
    /// The counter lines of a Prometheus text exposition.
    pub fn parse(text: &str) -> GrpcCalls {
        let mut calls = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(COUNTER) else {
                continue;
            };
            let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.split_once('}'))
            else {
                continue;
            };
            // Counters are printed as floats ("12" or "1.2e+06").
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (Some(service), Some(method)) =
                (label(labels, "grpc_service"), label(labels, "grpc_method"))
            else {
                continue;
            };
            *calls.entry(format!("{service}/{method}")).or_insert(0) += value as u64;
        }
        GrpcCalls(calls)
    }

    /// Calls made since `before` was read.
    pub fn since(&self, before: &GrpcCalls) -> GrpcCalls {
        GrpcCalls(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k))))
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `(service/method, count)`, most frequent first.
    pub fn by_count(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.0.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

/// The value of `name="..."` in a label set (etcd's label values hold no quotes).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# HELP grpc_server_handled_total Total number of RPCs completed on the server.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1200
grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 3
grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1.5e+03
grpc_server_handled_total{grpc_code="OK",grpc_method="LeaseGrant",grpc_service="etcdserverpb.Lease",grpc_type="unary"} 0
grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 9999
"#;

    #[test]
    fn sums_result_codes_per_method_and_ignores_other_series() {
        let c = GrpcCalls::parse(SAMPLE);
        assert_eq!(c.get("etcdserverpb.KV/Range"), 1203);
        assert_eq!(c.get("etcdserverpb.KV/Txn"), 1500);
        assert_eq!(c.get("etcdserverpb.Lease/LeaseGrant"), 0);
        assert_eq!(c.total(), 2703);
    }

    #[test]
    fn wal_fsync_sum_and_count() {
        let text = "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 3\netcd_disk_wal_fsync_duration_seconds_sum 0.25\netcd_disk_wal_fsync_duration_seconds_count 40\n";
        let f = WalFsync::parse(text);
        assert_eq!(
            f,
            WalFsync {
                count: 40,
                secs: 0.25
            }
        );
        let d = f.since(&WalFsync {
            count: 10,
            secs: 0.05,
        });
        assert_eq!(d.count, 30);
        assert!((d.secs - 0.2).abs() < 1e-9);
    }

    #[test]
    fn difference_keeps_only_methods_that_were_called() {
        let before = GrpcCalls::parse(SAMPLE);
        let after = GrpcCalls::parse(&SAMPLE.replace("} 1200", "} 1250"));
        let d = after.since(&before);
        assert_eq!(d.by_count(), vec![("etcdserverpb.KV/Range", 50)]);
        assert_eq!(d.total(), 50);
    }

    #[test]
    fn reads_live_counters_from_a_real_etcd() {
        let etcd = crate::etcd::Etcd::start(crate::etcd::EtcdOptions::loopback()).unwrap();
        let addr = etcd.client_addr();
        let before = Reading::read(addr).unwrap();
        etcd.put("/fr/metrics", "v").unwrap();
        let d = Reading::read(addr).unwrap().since(&before);
        assert_eq!(d.calls.get("etcdserverpb.KV/Put"), 1, "{d:?}");
        // A put is committed to the WAL before it is acknowledged.
        assert!(d.fsync.count >= 1, "{d:?}");
    }
}

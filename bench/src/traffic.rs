//! Traffic between namespaces: ping (reachability and round-trip times) and
//! iperf3 (TCP throughput), each run bounded in time and parsed.

use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::interrupt::{self, Interrupted};
use conformance::cmd::{self, CmdError};
use conformance::netns::Netns;

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error("`{cmd}` did not finish within {limit:?}")]
    Timeout { cmd: String, limit: Duration },
    #[error("iperf3 server in {netns} not listening on port {port} after {waited:?}")]
    ServerNotReady {
        netns: String,
        port: u16,
        waited: Duration,
    },
    #[error("iperf3 {target}: {detail}")]
    Iperf { target: String, detail: String },
    #[error("i/o with a child process: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs `c` to completion within `limit` (killing it otherwise), waking up
/// for Ctrl-C. Output is collected whatever the exit status.
pub fn run_bounded(c: &mut Command, limit: Duration) -> Result<Output, TrafficError> {
    let described = cmd::describe(c);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            cmd: described.clone(),
            source,
        })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    // Readers on their own threads: a child filling a pipe must not stall.
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let stop = interrupt::check().err();
        if stop.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(match stop {
                Some(i) => i.into(),
                None => TrafficError::Timeout {
                    cmd: described,
                    limit,
                },
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// What one `ping` run saw.
#[derive(Debug, Clone, PartialEq)]
pub struct PingReport {
    pub sent: u32,
    pub received: u32,
    /// Round-trip time of each reply, in seconds.
    pub rtts: Vec<f64>,
}

impl PingReport {
    pub fn all_replied(&self) -> bool {
        self.sent > 0 && self.received == self.sent
    }
}

/// `count` echo requests every 50 ms from `from` to `to`.
pub fn ping(from: &Netns, to: Ipv4Addr, count: u32) -> Result<PingReport, TrafficError> {
    let count_s = count.to_string();
    let to_s = to.to_string();
    let limit = Duration::from_secs(5) + Duration::from_millis(50) * count;
    let out = run_bounded(
        from.command("ping")
            .args(["-n", "-c", &count_s, "-i", "0.05", "-W", "1", &to_s]),
        limit,
    )?;
    Ok(parse_ping(count, &String::from_utf8_lossy(&out.stdout)))
}

/// Pings once a second-long attempt at a time until a reply comes or
/// `within` passes (routes converge asynchronously after a daemon starts).
pub fn wait_reachable(from: &Netns, to: Ipv4Addr, within: Duration) -> Result<bool, TrafficError> {
    let deadline = Instant::now() + within;
    loop {
        if ping(from, to, 1)?.all_replied() {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        interrupt::sleep(Duration::from_millis(100))?;
    }
}

fn parse_ping(sent: u32, text: &str) -> PingReport {
    let rtts: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| {
            let mut parts = t.split_whitespace();
            let v: f64 = parts.next()?.parse().ok()?;
            match parts.next() {
                Some("ms") => Some(v / 1e3),
                Some("s") => Some(v),
                Some("us") | Some("µs") => Some(v / 1e6),
                _ => None,
            }
        })
        .collect();
    PingReport {
        sent,
        received: rtts.len() as u32,
        rtts,
    }
}

/// An `iperf3 -s` in a namespace, killed on drop.
pub struct IperfServer {
    child: Child,
    ip: Ipv4Addr,
    port: u16,
}

impl IperfServer {
    /// Starts the server bound to `ip` (an address of `ns`) and waits until
    /// it listens.
    pub fn start(ns: &Netns, ip: Ipv4Addr, port: u16) -> Result<IperfServer, TrafficError> {
        let child = cmd::spawn_quiet(ns.command("iperf3").args([
            "-s",
            "-B",
            &ip.to_string(),
            "-p",
            &port.to_string(),
        ]))?;
        let server = IperfServer { child, ip, port };
        let started = Instant::now();
        let filter = format!("sport = :{port}");
        loop {
            let out = cmd::output(ns.command("ss").args(["-Hltn", &filter]))?;
            if !out.stdout.is_empty() {
                return Ok(server);
            }
            if started.elapsed() > Duration::from_secs(5) {
                return Err(TrafficError::ServerNotReady {
                    netns: ns.name().to_owned(),
                    port,
                    waited: started.elapsed(),
                });
            }
            interrupt::sleep(Duration::from_millis(20))?;
        }
    }

    /// TCP throughput from `client` to this server over `secs` seconds with
    /// `streams` parallel streams, in bits per second as the receiver saw it.
    pub fn measure(&self, client: &Netns, secs: u32, streams: u32) -> Result<f64, TrafficError> {
        let target = format!("{}:{} from {}", self.ip, self.port, client.name());
        let out = run_bounded(
            client.command("iperf3").args([
                "-c",
                &self.ip.to_string(),
                "-p",
                &self.port.to_string(),
                "-t",
                &secs.to_string(),
                "-P",
                &streams.to_string(),
                "--connect-timeout",
                "3000",
                "-J",
            ]),
            Duration::from_secs(u64::from(secs) + 15),
        )?;
        parse_iperf(&String::from_utf8_lossy(&out.stdout))
            .map_err(|detail| TrafficError::Iperf { target, detail })
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_iperf(json: &str) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("unreadable report ({e}): {json}"))?;
    if let Some(err) = v["error"].as_str() {
        return Err(err.to_owned());
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| format!("no end.sum_received.bits_per_second in {json}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_output_yields_each_rtt() {
        let text = "PING 10.244.1.2 (10.244.1.2) 56(84) bytes of data.\n\
            64 bytes from 10.244.1.2: icmp_seq=1 ttl=63 time=0.081 ms\n\
            64 bytes from 10.244.1.2: icmp_seq=3 ttl=63 time=1.50 ms\n\
            \n--- 10.244.1.2 ping statistics ---\n3 packets transmitted, 2 received, 33% packet loss\n";
        let r = parse_ping(3, text);
        assert_eq!(r.received, 2);
        assert_eq!(r.rtts, vec![0.000_081, 0.0015]);
        assert!(!r.all_replied());
        assert!(!parse_ping(0, "").all_replied());
    }

    #[test]
    fn bounded_runs_return_output_or_time_out() {
        let out = run_bounded(
            Command::new("sh").args(["-c", "echo hi; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.status.code(), Some(3));
        let started = Instant::now();
        let err =
            run_bounded(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, TrafficError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn iperf_report_gives_receiver_throughput_or_its_error() {
        let ok = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":2e9},"sum_received":{"bits_per_second":1.9e9}}}"#;
        assert_eq!(parse_iperf(ok), Ok(1.9e9));
        let failed =
            r#"{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}"#;
        assert_eq!(
            parse_iperf(failed),
            Err("unable to connect to server: Connection refused".to_owned())
        );
        assert!(parse_iperf("garbage").is_err());
    }
}

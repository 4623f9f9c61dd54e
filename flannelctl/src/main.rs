//! `flannelctl status`: this node's flannel health in one command, read from flanneld's
//! `/status` endpoint.
//!
//! Exit status: 0 ready, 1 the daemon answered but is not ready, 2 usage error, 3 the daemon
//! could not be asked (not running, or running without `--healthz-port`).

mod table;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flannel_status::http::{self, GetError};
use flannel_status::StatusReport;

/// kube-flannel.yml runs flanneld with `--healthz-port=8081`; flanneld's own default (0)
/// serves nothing, so there is no better guess.
const DEFAULT_ADDR: &str = "127.0.0.1:8081";
const TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str = "\
usage: flannelctl status [-o table|json] [--addr HOST:PORT]

  -o, --output   table (default) or json (the daemon's /status document)
      --addr     where flanneld serves /status: its --healthz-ip and --healthz-port
                 (default 127.0.0.1:8081, the port kube-flannel.yml uses)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    output: Output,
    addr: String,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("status") => {}
        Some("-h" | "--help" | "help") => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("missing command".into()),
    }
    let mut parsed = Args {
        output: Output::Table,
        addr: DEFAULT_ADDR.into(),
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "-o" | "--output" => {
                parsed.output = match value()?.as_str() {
                    "json" => Output::Json,
                    "table" | "wide" => Output::Table,
                    other => return Err(format!("unknown output format {other:?}")),
                }
            }
            "--addr" | "-a" => parsed.addr = value()?,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(Some(parsed))
}

fn unreachable_hint(addr: &str, e: &GetError) -> String {
    let mut msg = format!("flannelctl: cannot reach flanneld at {addr}: {e}\n");
    if matches!(e, GetError::Refused(_)) {
        msg.push_str(
            "flanneld is not running on this node, or runs without --healthz-port (its status \
             endpoint is off by default); start it with --healthz-port=<port> and pass \
             --addr 127.0.0.1:<port>\n",
        );
    }
    msg
}

fn run(args: Args) -> i32 {
    let http::Response { code, body } = match http::get(&args.addr, "/status", TIMEOUT) {
        Ok(r) => r,
        Err(e) => {
            eprint!("{}", unreachable_hint(&args.addr, &e));
            return 3;
        }
    };
    if code != 200 {
        eprintln!(
            "flannelctl: {} answered /status with HTTP {code}: is it a flanneld that serves /status?",
            args.addr
        );
        return 3;
    }
    let report: StatusReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flannelctl: unreadable /status from {}: {e}", args.addr);
            return 3;
        }
    };
    match args.output {
        Output::Json => print!("{}", String::from_utf8_lossy(&body)),
        Output::Table => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            print!("{}", table::render(&report, now));
        }
    }
    if report.ready {
        0
    } else {
        1
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse_args(&args) {
        Ok(Some(a)) => run(a),
        Ok(None) => {
            print!("{USAGE}");
            0
        }
        Err(e) => {
            eprint!("flannelctl: {e}\n{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Option<Args>, String> {
        parse_args(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_in_both_spellings() {
        assert_eq!(
            args(&["status"]).unwrap().unwrap(),
            Args {
                output: Output::Table,
                addr: DEFAULT_ADDR.into()
            }
        );
        assert_eq!(
            args(&["status", "-o", "json", "--addr=10.0.0.1:9000"])
                .unwrap()
                .unwrap(),
            Args {
                output: Output::Json,
                addr: "10.0.0.1:9000".into()
            }
        );
        assert_eq!(
            args(&["status", "--output=table", "--addr", "[::1]:8081"])
                .unwrap()
                .unwrap()
                .addr,
            "[::1]:8081"
        );
        assert_eq!(args(&["--help"]).unwrap(), None);
        assert!(args(&[]).is_err());
        assert!(args(&["status", "-o", "yaml"]).is_err());
        assert!(args(&["status", "--addr"]).is_err());
        assert!(args(&["stats"]).is_err());
    }

    #[test]
    fn refused_connections_explain_the_healthz_port() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap().to_string();
        drop(probe);
        let e = http::get(&addr, "/status", TIMEOUT).unwrap_err();
        let msg = unreachable_hint(&addr, &e);
        assert!(
            msg.starts_with(&format!(
                "flannelctl: cannot reach flanneld at {addr}: connection refused by {addr}\n"
            )),
            "{msg}"
        );
        assert!(msg.contains("--healthz-port"), "{msg}");
    }
}

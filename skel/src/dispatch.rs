//! `run_with`: Go skel's `pluginMain`, step for step.

use std::io::{Read, Write};

use netconf::conf::{decode_version, validate_network_config};
use netconf::env::{command_missing, read_env, RawEnv};
use netconf::gojson::encode;
use netconf::version::{self, incompatible};
use netconf::{codes, CniError, CniVersion, Command, NetConf};
use serde_json::{json, Value};

use crate::{netns, Plugin, Request};

/// Largest network config accepted on stdin. Real configs are a few KiB; the bound keeps a
/// runaway writer from exhausting memory.
pub const MAX_STDIN_BYTES: u64 = 16 * 1024 * 1024;

/// [`crate::run`] with injected environment and streams, for tests and embedding.
pub fn run_with<P: Plugin + ?Sized>(
    get: impl Fn(&str) -> Option<String>,
    stdin: impl Read,
    mut stdout: impl Write,
    mut stderr: impl Write,
    plugin: &P,
) -> i32 {
    match dispatch(&get, stdin, &mut stdout, &mut stderr, plugin) {
        Ok(()) => 0,
        Err(e) => {
            if let Err(io) = stdout
                .write_all(e.to_json().as_bytes())
                .and_then(|()| stdout.flush())
            {
                let _ = writeln!(stderr, "Error writing error JSON to stdout: {io}");
            }
            1
        }
    }
}

fn supported_list() -> String {
    CniVersion::all_strs().join(", ")
}

fn read_stdin(stdin: impl Read) -> Result<Vec<u8>, CniError> {
    let mut buf = Vec::new();
    stdin
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(codes::IO, format!("error reading from stdin: {e}")))?;
    if buf.len() as u64 > MAX_STDIN_BYTES {
        return Err(CniError::new(
            codes::IO,
            format!(
                "error reading from stdin: network config is larger than {MAX_STDIN_BYTES} bytes"
            ),
        ));
    }
    Ok(buf)
}

fn dispatch<P: Plugin + ?Sized>(
    get: &impl Fn(&str) -> Option<String>,
    stdin: impl Read,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
    plugin: &P,
) -> Result<(), CniError> {
    let raw = match read_env(get) {
        Ok(raw) => raw,
        Err(e) => {
            let about = plugin.about();
            if e.code == codes::INVALID_ENV && command_missing(get) && !about.is_empty() {
                let _ = writeln!(stderr, "{about}");
                let _ = writeln!(
                    stderr,
                    "CNI protocol versions supported: {}",
                    supported_list()
                );
                return Ok(());
            }
            return Err(e);
        }
    };
    if raw.command == Command::Version.as_str() {
        return print_version(stdout);
    }
    let stdin = read_stdin(stdin)?;
    validate_network_config(&stdin)?;

    let netns_override = raw.netns_override();
    let netns = raw.netns.clone();
    let env = RawEnv::into_env(raw)?;
    let command = env.command;
    let call = |req: Request| -> Result<Option<netconf::CniResult>, CniError> {
        match command {
            Command::Add => plugin.add(&req).map(Some),
            Command::Del => plugin.del(&req).map(|()| None),
            Command::Check => plugin.check(&req).map(|()| None),
            Command::Status => plugin.status(&req).map(|()| None),
            Command::Gc => plugin.gc(&req).map(|()| None),
            Command::Version => unreachable!("answered before stdin was read"),
        }
    };
    let request = |stdin: Vec<u8>| -> Result<Request, CniError> {
        let conf = NetConf::parse(&stdin)?;
        Ok(Request {
            env: env.clone(),
            stdin,
            conf,
        })
    };

    match command {
        Command::Add | Command::Del => {
            check_version(&stdin)?;
            let req = request(stdin)?;
            let version = req.conf.cni_version;
            if let Some(result) = call(req)? {
                let text = result.to_json(version)?;
                stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .map_err(|e| {
                        CniError::new(codes::IO, format!("error writing result to stdout: {e}"))
                    })?;
            }
            if !netns_override && netns::is_own_netns(&netns)? {
                return Err(CniError::new(
                    codes::INVALID_NETNS,
                    "plugin's netns and netns from CNI_NETNS should not be the same",
                ));
            }
            Ok(())
        }
        Command::Check | Command::Status | Command::Gc => {
            let floor = if command == Command::Check {
                "0.4.0"
            } else {
                "1.1.0"
            };
            let config = decode_version(&stdin)?;
            let decode = |m: String| CniError::new(codes::DECODE, m);
            if !version::greater_or_equal(&config, floor).map_err(decode)? {
                return Err(CniError::new(
                    codes::INCOMPATIBLE_VERSION,
                    format!("config version does not allow {}", command.as_str()),
                ));
            }
            for supported in CniVersion::all_strs() {
                if version::greater_or_equal(supported, &config).map_err(decode)? {
                    check_version(&stdin)?;
                    call(request(stdin)?)?;
                    return Ok(());
                }
            }
            Err(CniError::new(
                codes::INCOMPATIBLE_VERSION,
                format!("plugin version does not allow {}", command.as_str()),
            ))
        }
        Command::Version => unreachable!("answered before stdin was read"),
    }
}

/// Go skel's `checkVersionAndCall` gate: the config version must be one the plugin supports.
fn check_version(stdin: &[u8]) -> Result<(), CniError> {
    let config = decode_version(stdin)?;
    CniVersion::parse(&config)
        .map(|_| ())
        .map_err(|_| incompatible(&config))
}

/// VERSION: Go's `json.Encoder` output of the plugin info, newline-terminated.
fn print_version(stdout: &mut impl Write) -> Result<(), CniError> {
    let info = json!({
        "cniVersion": CniVersion::CURRENT.as_str(),
        "supportedVersions": Value::from(CniVersion::all_strs()),
    });
    let mut text = encode::to_string_compact(&info, false);
    text.push('\n');
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CniError::new(codes::IO, e.to_string()))
}

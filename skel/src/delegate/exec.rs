//! Spawning one plugin process and turning its outcome into bytes or a CNI error.

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command as Process, ExitStatus, Stdio};
use std::time::Duration;

use netconf::goerror::io_error_text;
use netconf::{gofmt, CniEnv, CniError, Command};

/// Linux's ETXTBSY: the binary is still open for writing (e.g. mid-upgrade).
const ETXTBSY: i32 = 26;
/// libcni retries a busy binary five times, a second apart.
const BUSY_RETRIES: u32 = 5;
const BUSY_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the plugin at `path` with the caller's environment, the `CNI_*` variables taken from
/// `env` and `CNI_COMMAND` set to `command`, feeding `stdin`. Returns its stdout on success; on
/// a non-zero exit, the error JSON it printed (verbatim) or a `netplugin failed` error. The
/// child's stderr is copied to ours either way.
pub fn exec_plugin(
    path: &Path,
    command: Command,
    stdin: &[u8],
    env: &CniEnv,
) -> Result<Vec<u8>, CniError> {
    let mut attempt = 0;
    let output = loop {
        match spawn_and_wait(path, command, stdin, env) {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(BUSY_BACKOFF);
            }
            Err(e) => {
                return Err(CniError::internal(format!(
                    "fork/exec {}: {}",
                    path.display(),
                    io_error_text(&e)
                )))
            }
            Ok(out) => break out,
        }
    };
    if !output.stderr.is_empty() {
        let _ = io::stderr().write_all(&output.stderr);
    }
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(plugin_error(output.status, &output.stdout, &output.stderr))
}

fn spawn_and_wait(
    path: &Path,
    command: Command,
    stdin: &[u8],
    env: &CniEnv,
) -> io::Result<std::process::Output> {
    let mut cmd = Process::new(path);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in cni_vars(command, env) {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let mut child = cmd.spawn()?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // Feed stdin from a second thread: a child that writes a lot before reading everything
    // would otherwise deadlock against us.
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            // A child that exits without reading stdin closes the pipe; that is its business.
            let _ = pipe.write_all(stdin);
        });
        let out = child.wait_with_output();
        let _ = writer.join();
        out
    })
}

/// The `CNI_*` variables a delegate gets, on top of (or, for `None`, removed from) the
/// caller's own environment; an exec and an in-process run use this one list.
pub(super) fn cni_vars(command: Command, env: &CniEnv) -> [(&'static str, Option<OsString>); 6] {
    [
        ("CNI_COMMAND", Some(command.as_str().into())),
        ("CNI_CONTAINERID", Some(env.container_id.clone().into())),
        ("CNI_IFNAME", Some(env.ifname.clone().into())),
        ("CNI_ARGS", Some(env.args.clone().into())),
        ("CNI_PATH", Some(env.path_string().into())),
        ("CNI_NETNS", env.netns.clone().map(Into::into)),
    ]
}

/// libcni's `pluginErr`.
pub(super) fn plugin_error(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> CniError {
    if stdout.is_empty() {
        let why = exit_text(status);
        return if stderr.is_empty() {
            CniError::internal(format!("netplugin failed with no error message: {why}"))
        } else {
            CniError::internal(format!(
                "netplugin failed: {}: {why}",
                gofmt::quote(&String::from_utf8_lossy(stderr))
            ))
        };
    }
    CniError::from_json(stdout).unwrap_or_else(|e| {
        CniError::internal(format!(
            "netplugin failed but error parsing its diagnostic message {}: {e}",
            gofmt::quote(&String::from_utf8_lossy(stdout))
        ))
    })
}

/// Go's `exec.ExitError` text.
fn exit_text(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    let sig = status.signal().unwrap_or(0);
    let name = match sig {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        _ => return format!("signal: signal {sig}"),
    };
    format!("signal: {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_texts_like_go() {
        assert_eq!(exit_text(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(exit_text(ExitStatus::from_raw(9)), "signal: killed");
        assert_eq!(exit_text(ExitStatus::from_raw(40)), "signal: signal 40");
    }

    #[test]
    fn plugin_errors_like_libcni() {
        let st = ExitStatus::from_raw(1 << 8);
        let e = plugin_error(st, b"", b"");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (999, "netplugin failed with no error message: exit status 1")
        );
        let e = plugin_error(st, b"", b"boom\n");
        assert_eq!(e.msg, "netplugin failed: \"boom\\n\": exit status 1");
        let e = plugin_error(st, br#"{"code":7,"msg":"bad","details":"d"}"#, b"ignored");
        assert_eq!(e, CniError::new(7, "bad").with_details("d"));
        let e = plugin_error(st, b"oops", b"");
        assert!(
            e.msg.starts_with(
                "netplugin failed but error parsing its diagnostic message \"oops\": "
            ),
            "{}",
            e.msg
        );
    }
}

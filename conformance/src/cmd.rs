//! Running helper commands with errors that say what ran and what it printed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}):\nstdout: {stdout}\nstderr: {stderr}")]
    Failed {
        cmd: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    #[error("`{cmd}` printed invalid JSON ({source}):\n{stdout}")]
    Json {
        cmd: String,
        stdout: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Sends `sig` to our own child.
pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child, so it
    // cannot have been recycled.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// SIGTERM, then waits up to `within` for the child to exit. `None` means it is still
/// running: whether to kill it or call that a failure is the caller's decision.
pub fn terminate(child: &mut Child, within: Duration) -> std::io::Result<Option<ExitStatus>> {
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shell-like rendering of a command, for error messages only.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"') {
            let _ = write!(s, " {arg:?}");
        } else {
            let _ = write!(s, " {arg}");
        }
    }
    s
}

/// Starts `cmd` in the background with no stdio attached (a server, a daemon).
pub fn spawn_quiet(cmd: &mut Command) -> Result<Child, CmdError> {
    crate::programs::require(cmd.get_program());
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            cmd: describe(cmd),
            source,
        })
}

/// Runs `cmd` to completion and returns its output whatever the exit status. Panics if the
/// program is not one `scripts/setup.sh` installs (see [`crate::programs`]).
pub fn output(cmd: &mut Command) -> Result<Output, CmdError> {
    crate::programs::require(cmd.get_program());
    cmd.output().map_err(|source| CmdError::Spawn {
        cmd: describe(cmd),
        source,
    })
}

/// Starts `cmd` with `stdin` written to its standard input (as a runtime feeds a CNI plugin
/// its config) and closed, stdout and stderr piped. Panics like [`output`] for a program
/// setup.sh does not install.
pub fn spawn_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Result<Child, CmdError> {
    crate::programs::require(cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            cmd: describe(cmd),
            source,
        })?;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // A plugin reads all of stdin before writing much; a write error only means it exited
    // early, which its exit status reports.
    let _ = pipe.write_all(stdin);
    Ok(child)
}

/// [`spawn_with_stdin`], then waits: the output whatever the exit status.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Result<Output, CmdError> {
    let child = spawn_with_stdin(cmd, stdin)?;
    child.wait_with_output().map_err(|source| CmdError::Spawn {
        cmd: describe(cmd),
        source,
    })
}

/// Runs `cmd` and requires exit status 0.
pub fn run(cmd: &mut Command) -> Result<Output, CmdError> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(failed(cmd, &out))
    }
}

/// Runs `cmd`, requires success and returns stdout as text.
pub fn run_stdout(cmd: &mut Command) -> Result<String, CmdError> {
    let out = run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, requires success and parses stdout as JSON.
pub fn run_json(cmd: &mut Command) -> Result<serde_json::Value, CmdError> {
    let stdout = run_stdout(cmd)?;
    serde_json::from_str(&stdout).map_err(|source| CmdError::Json {
        cmd: describe(cmd),
        stdout,
        source,
    })
}

pub(crate) fn failed(cmd: &Command, out: &Output) -> CmdError {
    CmdError::Failed {
        cmd: describe(cmd),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_only_arguments_that_need_it() {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", "a b", ""]);
        assert_eq!(describe(&cmd), r#"ip netns exec "a b" """#);
    }

    #[test]
    fn run_reports_status_and_stderr_of_a_failing_command() {
        let err =
            run(Command::new("sh").args(["-c", "echo out; echo boom >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("stdout: out"), "{text}");
        assert!(text.contains("stderr: boom"), "{text}");
    }

    #[test]
    fn run_json_rejects_non_json_output() {
        let err = run_json(Command::new("echo").arg("not json")).unwrap_err();
        assert!(matches!(err, CmdError::Json { .. }), "{err}");
    }

    #[test]
    fn spawn_failure_names_the_program() {
        let err = run(&mut Command::new("/nonexistent/program")).unwrap_err();
        assert!(
            matches!(&err, CmdError::Spawn { cmd, .. } if cmd == "/nonexistent/program"),
            "{err}"
        );
    }
}

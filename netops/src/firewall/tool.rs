//! Running a firewall front-end (`iptables-restore`, `nft`) with a script on stdin.
//!
//! No shell: the program and its arguments are passed as a vector, and the script goes
//! through a pipe. The child runs in the calling thread's network namespace.

use std::io::{self, Write};
use std::process::{Child, Command, ExitStatus, Stdio};

/// What a finished front-end run left behind.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args`, feeding `input` on stdin (stdin is `/dev/null` without one), and
/// waits for it. Only failing to start or reap the child is an error here; a non-zero exit
/// is the caller's to interpret, with the captured stderr.
pub(crate) fn run(program: &str, args: &[&str], input: Option<&str>) -> io::Result<Output> {
    match input {
        Some(text) => Started::spawn(program, args)?.finish(text),
        None => {
            let output = Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .output()?;
            Ok(Output::from(output))
        }
    }
}

/// A front-end started before its input is known, so that its exec and library loading
/// overlap the caller's other work instead of following it. Until [`Started::finish`] it
/// has read nothing and so changed nothing; dropped unfinished, it is killed and reaped.
pub(crate) struct Started {
    /// `None` once [`Started::finish`] has taken it over.
    child: Option<Child>,
}

impl Started {
    /// Signal dispositions are inherited: a caller that must not be cut short by SIGTERM
    /// ignores it while spawning (a `pre_exec` hook here would cost a full `fork` instead
    /// of the `posix_spawn` std uses otherwise).
    pub(crate) fn spawn(program: &str, args: &[&str]) -> io::Result<Started> {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(Started { child: Some(child) })
    }

    /// Feeds `input`, closes stdin and waits for the exit.
    pub(crate) fn finish(mut self, input: &str) -> io::Result<Output> {
        let mut child = self.child.take().expect("only finish takes the child");
        let output = std::thread::scope(|scope| {
            // Feed stdin concurrently with draining stdout/stderr: a child that reports
            // errors while we are still writing a large script must not deadlock on a full
            // pipe.
            if let Some(mut stdin) = child.stdin.take() {
                scope.spawn(move || {
                    // A write error means the child exited early; its status and stderr
                    // explain why.
                    let _ = stdin.write_all(input.as_bytes());
                });
            }
            child.wait_with_output()
        })?;
        Ok(Output::from(output))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl From<std::process::Output> for Output {
    fn from(output: std::process::Output) -> Output {
        Output {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_reaches_the_child_and_both_streams_come_back() {
        let out = run(
            "sh",
            &["-c", "cat; echo oops >&2; exit 3"],
            Some("script\n"),
        )
        .unwrap();
        assert_eq!(out.stdout, "script\n");
        assert_eq!(out.stderr, "oops\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn large_input_to_a_child_that_fails_early_does_not_hang() {
        let big = "x".repeat(4 << 20);
        let out = run("sh", &["-c", "echo early >&2; exit 1"], Some(&big)).unwrap();
        assert_eq!(
            (out.status.code(), out.stderr.as_str()),
            (Some(1), "early\n")
        );
    }

    #[test]
    fn without_input_stdin_is_empty() {
        let out = run("cat", &[], None).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, "");
    }

    #[test]
    fn a_started_tool_reads_input_given_later() {
        let started = Started::spawn("sh", &["-c", "cat; exit 4"]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let out = started.finish("late\n").unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.status.code()),
            ("late\n", Some(4))
        );
    }

    #[test]
    fn a_started_tool_dropped_unfinished_is_killed_before_it_acts() {
        let marker = std::env::temp_dir().join(format!("netops-started-{}", std::process::id()));
        let script = format!("read line; touch {}", marker.display());
        let started = Started::spawn("sh", &["-c", &script]).unwrap();
        let pid = started.child.as_ref().unwrap().id();
        drop(started);
        let acted = marker.exists();
        let _ = std::fs::remove_file(&marker);
        assert!(!acted, "it never saw input, so it did nothing");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "killed and reaped"
        );
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let err = run("/nonexistent/nft", &[], Some("x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

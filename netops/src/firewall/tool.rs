//! Running a firewall front-end (`iptables-restore`, `nft`) with a script on stdin.
//!
//! No shell: the program and its arguments are passed as a vector, and the script goes
//! through a pipe. The child runs in the calling thread's network namespace.

use std::io::{self, Write};
use std::process::{Command, ExitStatus, Stdio};

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
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let output = std::thread::scope(|scope| {
        // Feed stdin concurrently with draining stdout/stderr: a child that reports errors
        // while we are still writing a large script must not deadlock on a full pipe.
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            scope.spawn(move || {
                // A write error means the child exited early; its status and stderr explain why.
                let _ = stdin.write_all(text.as_bytes());
            });
        }
        child.wait_with_output()
    })?;
    Ok(Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
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
    fn a_missing_program_is_not_found() {
        let err = run("/nonexistent/nft", &[], Some("x")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

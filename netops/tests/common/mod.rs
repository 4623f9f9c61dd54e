//! Throwaway network namespaces for root integration tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A named namespace (`ip netns add fr-nl-<pid>-<n>`), deleted on drop even if the test
/// panics, so parallel tests never share state and nothing outlives the run.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new() -> TestNetns {
        assert!(
            nix::unistd::geteuid().is_root(),
            "netops integration tests need root: they create network namespaces"
        );
        let name = format!(
            "fr-nl-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = TestNetns { name };
        // Loopback is down in a fresh namespace; several kernel paths (route get to local
        // addresses) behave differently without it.
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs `ip -n <ns> args...` and returns stdout; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        self.tool("ip", args)
    }

    /// Runs an iproute2 tool (`ip`, `bridge`) as `<program> -n <ns> args...`.
    pub fn tool(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run(program, &full)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: could not delete test netns {}", self.name);
        }
    }
}

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

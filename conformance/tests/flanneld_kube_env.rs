//! kube mode's environment variables, read as upstream reads them: a malformed
//! `EVENT_QUEUE_DEPTH` stops flanneld with upstream's error instead of being replaced by the
//! default. No API server is needed: upstream checks it before contacting one, and so do we.

use std::process::Stdio;
use std::time::Duration;

use conformance::flanneld::flanneld_bin;
use conformance::{cmd, Netns};

/// What the log shows once flanneld got past its environment and waits for the API server.
const WAITING: &str = "for node controller to sync";

/// Runs kube-mode flanneld in a fresh namespace with `EVENT_QUEUE_DEPTH=depth` until it exits
/// or logs [`WAITING`]; returns the exit code (`None`: it was waiting, then stopped) and its
/// log.
fn run_with_depth(depth: &str) -> (Option<i32>, String) {
    let ns = Netns::new("kenv").unwrap();
    ns.set_loopback_up().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("fr-kenv-")
        .tempdir()
        .unwrap();
    let net_conf = dir.path().join("net-conf.json");
    std::fs::write(
        &net_conf,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#,
    )
    .unwrap();
    let log = dir.path().join("flanneld.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = ns
        .command(flanneld_bin())
        .args([
            "--kube-subnet-mgr".to_owned(),
            // Nothing listens there: the variable is checked before the first request.
            "--kube-api-url=http://127.0.0.1:6443".to_owned(),
            format!("--net-config-path={}", net_conf.display()),
            format!("--subnet-file={}", dir.path().join("subnet.env").display()),
        ])
        .env("NODE_NAME", "n1")
        .env("EVENT_QUEUE_DEPTH", depth)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        let waiting = std::fs::read_to_string(&log).unwrap().contains(WAITING);
        if waiting || std::time::Instant::now() > deadline {
            cmd::terminate(&mut child, Duration::from_secs(10)).unwrap();
            assert!(
                waiting,
                "flanneld neither exited nor waited for Nodes in 60 s"
            );
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (code, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn a_malformed_event_queue_depth_is_upstreams_error() {
    let (code, log) = run_with_depth("5k");
    assert_eq!(
        code,
        Some(1),
        "flanneld must refuse EVENT_QUEUE_DEPTH=5k:\n{log}"
    );
    assert!(
        log.contains(
            "Failed to create SubnetManager: error creating network manager: env EVENT_QUEUE_DEPTH=5k format error: strconv.Atoi: parsing \"5k\": invalid syntax"
        ),
        "{log}"
    );
    assert!(
        !log.contains(WAITING),
        "it must stop before waiting for Nodes:\n{log}"
    );
}

#[test]
fn a_well_formed_event_queue_depth_is_accepted() {
    // Upstream's default replaces a number below 1, and an empty value is unset; all go on
    // to wait for the API server, which is not there.
    for depth in ["64", "0", ""] {
        let (code, log) = run_with_depth(depth);
        assert_eq!(
            code, None,
            "EVENT_QUEUE_DEPTH={depth} must be accepted:\n{log}"
        );
        assert!(!log.contains("EVENT_QUEUE_DEPTH"), "{log}");
    }
}

//! The Go texts `netconf` reproduces, checked against the Go toolchain that setup.sh installs:
//! what upstream's plugins print comes from the same standard library.

use std::process::Command;

use conformance::cmd;

/// Builds and runs a one-file Go program (standard library only, no network) and returns
/// its stdout.
fn go_run(source: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.go");
    std::fs::write(&main, source).unwrap();
    // The toolchain's caches stay under target/go, as for the libcni driver.
    let gohome = conformance::target_dir().join("go");
    cmd::run_stdout(
        Command::new("go")
            .arg("run")
            .arg(&main)
            .env("GOPATH", gohome.join("path"))
            .env("GOCACHE", gohome.join("cache"))
            .env("GO111MODULE", "off")
            .env("GOPROXY", "off"),
    )
    .unwrap()
}

#[test]
fn errno_texts_are_gos_syscall_errno_texts() {
    let out = go_run(
        r#"package main

import (
	"fmt"
	"syscall"
)

func main() {
	for i := 0; i <= 300; i++ {
		fmt.Printf("%d\t%s\n", i, syscall.Errno(i).Error())
	}
}
"#,
    );
    let mut checked = 0;
    for line in out.lines() {
        let (n, want) = line.split_once('\t').unwrap();
        let n: i32 = n.parse().unwrap();
        assert_eq!(netconf::goerror::errno_text(n), want, "errno {n}");
        checked += 1;
    }
    assert_eq!(checked, 301);
}

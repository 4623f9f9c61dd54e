//! Every program named in the workspace's sources as something to run comes from a package
//! `scripts/setup.sh` installs (see `conformance::programs`). The bed's spawn points check the
//! same at run time; this scan also covers programs run through a plain `Command` or from code
//! no test happened to reach on this machine.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use conformance::programs;

/// Call shapes that name a program, each followed by the program as a string literal.
const PROGRAM_CALLS: &[&str] = &[
    "Command::new(\"",
    ".command(\"",
    ".exec(&[\"",
    ".exec_ok(&[\"",
];
/// Call shapes whose string literal is a shell snippet.
const SHELL_CALLS: &[&str] = &[".sh(\"", ".sh(&format!(\""];

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The string literal starting at `s` (just after its opening quote), unescaped enough for
/// program names and one-line shell snippets.
fn literal(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// (program, where) for every program the sources name as something to run.
fn named_programs() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_sources(conformance::workspace_root(), &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file
            .strip_prefix(conformance::workspace_root())
            .unwrap()
            .display()
            .to_string();
        for (lineno, line) in text.lines().enumerate() {
            let at = format!("{rel}:{}", lineno + 1);
            for call in PROGRAM_CALLS {
                for (i, _) in line.match_indices(call) {
                    let p = literal(&line[i + call.len()..]);
                    if !p.is_empty() && !p.contains('{') {
                        found.push((p, at.clone()));
                    }
                }
            }
            for call in SHELL_CALLS {
                for (i, _) in line.match_indices(call) {
                    for p in programs::shell_programs(&literal(&line[i + call.len()..])) {
                        if !p.contains('{') {
                            found.push((p, at.clone()));
                        }
                    }
                }
            }
        }
    }
    found
}

#[test]
fn every_program_the_sources_run_is_installed_by_setup_sh() {
    let found = named_programs();
    // The scan must see the programs the suite is known to run, or it checks nothing.
    for known in ["ip", "socat", "iperf3", "etcdctl", "nft", "openssl"] {
        assert!(
            found.iter().any(|(p, _)| p == known),
            "the source scan no longer finds `{known}`; the call shapes it looks for are out of date"
        );
    }
    let mut problems: Vec<String> = found
        .iter()
        .filter_map(|(p, at)| {
            programs::check(OsStr::new(p))
                .err()
                .map(|e| format!("{at}: {e}"))
        })
        .collect();
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_setup_list_names_only_real_packages() {
    // A typo in setup.sh would make apt-get fail on a fresh machine; catch it here too.
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Status}\n"])
        .args(programs::setup_packages())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for pkg in programs::setup_packages() {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{pkg} ")) && l.ends_with("install ok installed")),
            "scripts/setup.sh lists {pkg}, which is not installed after setup ran:\n{text}"
        );
    }
}

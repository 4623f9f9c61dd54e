//! `fuzz list` | `fuzz run <target|all> [count] [seed]`: one `RESULT` line per target
//! (tab-separated: name, execs, seconds, distinct outcomes, crashes), crash inputs saved under
//! `$FUZZ_CRASH_DIR` (default `fuzz/crashes`).

use std::path::PathBuf;
use std::process::ExitCode;

use flannel_rs_fuzz::{all, find, run};

fn usage() -> ExitCode {
    eprintln!("usage: fuzz list | fuzz run <target|all> [count=1000000] [seed=1]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => {
            for t in all() {
                println!("{}", t.name);
            }
            ExitCode::SUCCESS
        }
        Some("run") => {
            let Some(which) = args.get(1) else {
                return usage();
            };
            let count: u64 = match args.get(2).map(|s| s.parse()) {
                None => 1_000_000,
                Some(Ok(n)) => n,
                Some(Err(_)) => return usage(),
            };
            let seed: u64 = match args.get(3).map(|s| s.parse()) {
                None => 1,
                Some(Ok(n)) => n,
                Some(Err(_)) => return usage(),
            };
            let targets = if which == "all" {
                all()
            } else {
                match find(which) {
                    Some(t) => vec![t],
                    None => {
                        eprintln!("unknown target {which:?}; see `fuzz list`");
                        return ExitCode::from(2);
                    }
                }
            };
            let crash_dir = std::env::var_os("FUZZ_CRASH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes"));
            let mut failed = false;
            for t in &targets {
                let o = run(t, count, seed);
                for (i, c) in o.crashes.iter().enumerate() {
                    failed = true;
                    let path = crash_dir.join(format!("{}-{i}.bin", t.name));
                    let saved = std::fs::create_dir_all(&crash_dir)
                        .and_then(|()| std::fs::write(&path, &c.input));
                    eprintln!(
                        "CRASH {}: {} (input: {})",
                        t.name,
                        c.what,
                        match saved {
                            Ok(()) => path.display().to_string(),
                            Err(e) => format!("not saved: {e}"),
                        }
                    );
                }
                println!(
                    "RESULT\t{}\t{}\t{:.1}\t{}\t{}",
                    t.name,
                    o.execs,
                    o.elapsed.as_secs_f64(),
                    o.outcomes,
                    o.crashes.len()
                );
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => usage(),
    }
}

//! A short run of every target (the full campaign is `scripts/fuzz.sh`, 10^6 per target),
//! and checks that the harness itself can fail.

use flannel_rs_fuzz::engine::exec_one;
use flannel_rs_fuzz::{all, find, run, Target};

/// Small enough for every `cargo test`; `FUZZ_SMOKE_COUNT` raises it.
fn smoke_count() -> u64 {
    std::env::var("FUZZ_SMOKE_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000)
}

#[test]
fn every_target_survives_a_short_run() {
    let targets = all();
    assert!(
        targets.len() >= 17,
        "targets went missing: {}",
        targets.len()
    );
    for t in &targets {
        let o = run(t, smoke_count(), 42);
        assert_eq!(o.execs, smoke_count(), "{}", t.name);
        assert!(
            o.outcomes >= 2,
            "{} reached only {} outcome(s)",
            t.name,
            o.outcomes
        );
        assert!(
            o.crashes.is_empty(),
            "{} crashed: {:#?}",
            t.name,
            o.crashes
                .iter()
                .map(|c| (&c.what, String::from_utf8_lossy(&c.input)))
                .collect::<Vec<_>>()
        );
    }
}

fn panics_on_marker(b: &[u8]) -> Result<String, String> {
    if b.windows(3).any(|w| w == b"BUG") {
        panic!("planted bug");
    }
    Ok(format!("len{}", b.len() % 7))
}

fn seeds() -> Vec<Vec<u8>> {
    vec![b"harmless input".to_vec()]
}

#[test]
fn a_planted_panic_is_found_recorded_and_deduplicated() {
    let t = Target {
        name: "planted",
        seeds,
        dict: &[b"BUG"],
        exec: panics_on_marker,
    };
    let o = run(&t, 20_000, 7);
    assert_eq!(o.crashes.len(), 1, "{:?}", o.crashes);
    assert!(o.crash_execs >= 1);
    assert!(
        o.crashes[0].what.contains("planted bug"),
        "{}",
        o.crashes[0].what
    );
    assert!(o.crashes[0].input.windows(3).any(|w| w == b"BUG"));
}

#[test]
fn broken_invariants_count_as_crashes() {
    let skel = find("cni_skel_entry").unwrap();
    assert!(exec_one(&skel, b"CNI_COMMAND=VERSION\n\n").is_ok());
    let t = Target {
        name: "invariant",
        seeds,
        dict: &[],
        exec: |_| Err("invariant broken".into()),
    };
    let o = run(&t, 10, 1);
    assert_eq!(o.crash_execs, 10);
}

#[test]
fn runs_are_reproducible_for_a_seed() {
    let t = find("netconf_subnet_env").unwrap();
    let a = run(&t, 2_000, 9);
    let b = run(&t, 2_000, 9);
    assert_eq!(a.outcomes, b.outcomes);
}

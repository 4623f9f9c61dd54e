//! The execution loop: pick a corpus entry, mutate it, run the target under `catch_unwind`,
//! keep inputs that reach new outcomes, record crashes.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use fastrand::Rng;

use crate::mutate;
use crate::targets::Target;

/// Corpus entries beyond the seeds; old ones are replaced at random once full.
const CORPUS_CAP: usize = 4096;

/// One distinct failure: the first input that produced it.
#[derive(Debug, Clone)]
pub struct Crash {
    /// Panic location and message, or the broken invariant.
    pub what: String,
    pub input: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub execs: u64,
    pub elapsed: Duration,
    /// Distinct outcomes seen (a rough measure of how many paths were reached).
    pub outcomes: usize,
    /// Deduplicated by `what`; `crash_execs` counts every failing execution.
    pub crashes: Vec<Crash>,
    pub crash_execs: u64,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics are expected findings here: record where they happened instead of printing a
/// backtrace per execution.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let captured = LAST_PANIC.with(|slot| {
                let mut slot = slot.borrow_mut();
                if slot.is_some() {
                    return false;
                }
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                *slot = Some(format!("panic at {at}: {msg}"));
                true
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

fn hash_of(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Runs one input; `Err` is a crash description.
pub fn exec_one(target: &Target, input: &[u8]) -> Result<String, String> {
    install_panic_hook();
    LAST_PANIC.with(|slot| *slot.borrow_mut() = None);
    match panic::catch_unwind(AssertUnwindSafe(|| (target.exec)(input))) {
        Ok(result) => result,
        Err(_) => Err(LAST_PANIC
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| "panic".to_string())),
    }
}

/// Executes `count` inputs against `target`, deterministically for a given `seed`.
pub fn run(target: &Target, count: u64, seed: u64) -> Outcome {
    let mut rng = Rng::with_seed(seed);
    let seeds = (target.seeds)();
    let mut corpus: Vec<Vec<u8>> = seeds.clone();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut crashes: HashMap<String, Vec<u8>> = HashMap::new();
    let mut crash_execs = 0u64;
    let start = Instant::now();
    let mut execs = 0u64;

    // Seeds run unmutated first: a crash on a valid input is the clearest report of all.
    let mut record = |input: Vec<u8>,
                      corpus: &mut Vec<Vec<u8>>,
                      rng: &mut Rng,
                      result: Result<String, String>| match result {
        Ok(outcome) => {
            if seen.insert(hash_of(&outcome)) {
                if corpus.len() < seeds.len() + CORPUS_CAP {
                    corpus.push(input);
                } else {
                    let i = rng.usize(seeds.len()..corpus.len());
                    corpus[i] = input;
                }
            }
        }
        Err(what) => {
            crash_execs += 1;
            crashes.entry(what).or_insert(input);
        }
    };
    for s in &seeds {
        if execs >= count {
            break;
        }
        execs += 1;
        let r = exec_one(target, s);
        record(s.clone(), &mut corpus, &mut rng, r);
    }
    while execs < count {
        let mut input = corpus[rng.usize(..corpus.len())].clone();
        mutate::mutate(&mut rng, &mut input, target.dict, &corpus);
        execs += 1;
        let r = exec_one(target, &input);
        record(input, &mut corpus, &mut rng, r);
    }
    let mut crashes: Vec<Crash> = crashes
        .into_iter()
        .map(|(what, input)| Crash { what, input })
        .collect();
    crashes.sort_by(|a, b| a.what.cmp(&b.what));
    Outcome {
        execs,
        elapsed: start.elapsed(),
        outcomes: seen.len(),
        crashes,
        crash_execs,
    }
}

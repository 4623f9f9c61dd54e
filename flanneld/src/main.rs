//! The `flanneld` binary: flags and environment in, exit code out.

use flanneld::options::{self, Invocation};

/// glibc's allocator defaults suit allocation-heavy servers on many cores: an arena per
/// thread (up to eight per core) and an mmap threshold that rises to the largest buffer ever
/// freed, so the start-up listing's and reconcile's buffers stayed resident for the daemon's
/// whole life. flanneld has a handful of mostly idle threads; one arena and a fixed threshold
/// keep its footprint near what it uses (`scripts/bench-scale.sh`, 5,000 peers).
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it runs before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

fn main() {
    tune_allocator();
    let mut argv = std::env::args();
    let program = argv.next().unwrap_or_else(|| "flanneld".to_owned());
    let args: Vec<String> = argv.collect();
    let opts = match options::parse(&program, &args, |k| std::env::var(k).ok()) {
        Ok(Invocation::Run(opts)) => opts,
        Ok(Invocation::Version) => {
            eprintln!("{}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Ok(Invocation::Help) => {
            eprint!("{}", options::flag_set(&program).usage_text());
            return;
        }
        Err(options::OptionsError::Flag(e)) => {
            // Go's flag package: the error, the usage, exit status 2.
            eprintln!("{e}");
            eprint!("{}", options::flag_set(&program).usage_text());
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    flanneld::logger::init(opts.verbosity);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Randomised choices (the subnet picked among free ones, retry jitter) must differ
        // between nodes started at the same moment; fastrand's own per-thread seed is the clock.
        .on_thread_start(|| {
            let mut seed = [0u8; 8];
            if getrandom::fill(&mut seed).is_ok() {
                fastrand::seed(u64::from_ne_bytes(seed));
            }
        })
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("failed to start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(flanneld::daemon::run(*opts)) {
        Ok(()) => {
            // Blocking tasks (an iptables run, a netlink dump) must not hold the exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(3));
        }
        Err(e) => {
            log::error!("{e}");
            std::process::exit(1);
        }
    }
}

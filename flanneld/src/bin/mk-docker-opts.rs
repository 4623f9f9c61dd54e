//! `mk-docker-opts`: writes Docker daemon options derived from flanneld's subnet.env, a
//! drop-in for upstream's `mk-docker-opts.sh` (see `flanneld::docker_opts`).

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};

use flanneld::docker_opts::{self, UsageError};

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let argv0 = argv.next().unwrap_or_else(|| "mk-docker-opts".into());
    let args: Vec<String> = argv.collect();
    let opts = match docker_opts::parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if e != UsageError::Help {
                eprint!("{e}");
            }
            eprint!("{}", docker_opts::usage(&argv0));
            return ExitCode::from(1);
        }
    };

    // Variables as the script sees them: its environment, then whatever the env file sets.
    let mut vars: BTreeMap<String, String> = std::env::vars().collect();
    match std::fs::read_to_string(&opts.flannel_env) {
        Ok(text) => vars.extend(docker_opts::parse_env_file(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            eprintln!("{argv0}: cannot read {}: {e}", opts.flannel_env);
            return ExitCode::from(2);
        }
    }
    let text = match docker_opts::render(&opts, &vars) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = std::fs::write(&opts.docker_env, text) {
        eprintln!("{argv0}: cannot write {}: {e}", opts.docker_env);
        return ExitCode::from(2);
    }

    // The script's last step: refuse when the routing table already sends the subnet
    // elsewhere (a gateway route), which would make Docker's bridge unreachable.
    if let Some(pattern) = vars
        .get("FLANNEL_SUBNET")
        .filter(|s| !s.is_empty())
        .and_then(|s| docker_opts::subnet_pattern(s))
    {
        if let Ok(out) = Command::new("ip").args(["route", "show"]).output() {
            let routes = String::from_utf8_lossy(&out.stdout);
            let conflicts = docker_opts::conflicting_routes(&routes, &pattern);
            if !conflicts.is_empty() {
                eprintln!(
                    "Your routing table already contains the subnet: {}",
                    conflicts.join("\n")
                );
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

//! `mk-docker-opts`: Docker daemon options from subnet.env, as upstream's
//! `dist/mk-docker-opts.sh` writes them, byte for byte.
//!
//! The script is what Docker-without-Kubernetes hosts run after flanneld
//! (`ExecStartPost=mk-docker-opts.sh -k DOCKER_NETWORK_OPTIONS -d /run/flannel/docker`, then
//! `dockerd $DOCKER_NETWORK_OPTIONS`). Its observable contract, reproduced here:
//! - options `-f FILE -d FILE -i -c -m -k KEY` with `getopts` rules (clusters `-ci`, glued
//!   values `-kKEY`, `--` ends options, the first operand ends them too); `-h`/`-?`/an
//!   unknown option/a missing value print the usage to stderr and exit 1;
//! - neither `-i` nor `-c` means both;
//! - variables come from the environment overlaid by the env file (which may be absent);
//! - `DOCKER_OPT_BIP=--bip=$FLANNEL_SUBNET`, `DOCKER_OPT_MTU=--mtu=$FLANNEL_MTU`,
//!   `DOCKER_OPT_IPMASQ=--ip-masq=<not FLANNEL_IPMASQ>` unless `-m`; any other variable whose
//!   name contains `DOCKER_OPT_` (from the environment) joins them; all in name order;
//! - `-i` writes `NAME="value"` per option, `-c` writes `KEY=" v1 v2 ..."`: the initial
//!   value of `$KEY` plus a space when set, then a space before every option;
//! - after writing, a route to the subnet's network address with a gateway (`ip route show`
//!   lines matching the subnet as grep would, and containing `via`) is an error.
//!
//! Deliberate differences: a relative `-f` path is read relative to the working directory
//! (the script's `.` searches `$PATH` for a name without a slash and aborts); option values
//! with blanks stay one value (the script's word splitting mangles them).

use std::collections::BTreeMap;
use std::fmt;

pub const DEFAULT_FLANNEL_ENV: &str = "/run/flannel/subnet.env";
pub const DEFAULT_DOCKER_ENV: &str = "/run/docker_opts.env";

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub flannel_env: String,
    pub docker_env: String,
    pub combined_key: String,
    pub individual: bool,
    pub combined: bool,
    pub ipmasq: bool,
}

/// Why the command line was refused; the usage text follows the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    Illegal(char),
    NoArg(char),
    Help,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Illegal(c) => writeln!(f, "Illegal option -{c}"),
            UsageError::NoArg(c) => writeln!(f, "No arg for -{c} option"),
            UsageError::Help => Ok(()),
        }
    }
}

/// The usage text, naming the program as it was invoked.
pub fn usage(argv0: &str) -> String {
    format!(
        "{argv0} [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]\n\
         \n\
         Generate Docker daemon options based on flannel env file\n\
         OPTIONS:\n\
         \t-f\tPath to flannel env file. Defaults to {DEFAULT_FLANNEL_ENV}\n\
         \t-d\tPath to Docker env file to write to. Defaults to {DEFAULT_DOCKER_ENV}\n\
         \t-i\tOutput each Docker option as individual var. e.g. DOCKER_OPT_MTU=1500\n\
         \t-c\tOutput combined Docker options into DOCKER_OPTS var\n\
         \t-k\tSet the combined options key to this value (default DOCKER_OPTS=)\n\
         \t-m\tDo not output --ip-masq (useful for older Docker version)\n\n"
    )
}

/// Parses `args` (without argv[0]) with the rules of the shell's `getopts "f:d:icmk:?h"`.
pub fn parse_args(args: &[String]) -> Result<Options, UsageError> {
    let mut o = Options {
        flannel_env: DEFAULT_FLANNEL_ENV.to_string(),
        docker_env: DEFAULT_DOCKER_ENV.to_string(),
        combined_key: "DOCKER_OPTS".to_string(),
        individual: false,
        combined: false,
        ipmasq: true,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            break;
        }
        let mut chars = arg[1..].char_indices();
        for (at, c) in chars.by_ref() {
            match c {
                'f' | 'd' | 'k' => {
                    let glued = &arg[1 + at + c.len_utf8()..];
                    let value = if !glued.is_empty() {
                        glued.to_string()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(UsageError::NoArg(c));
                    };
                    match c {
                        'f' => o.flannel_env = value,
                        'd' => o.docker_env = value,
                        _ => o.combined_key = value,
                    }
                    break;
                }
                'i' => o.individual = true,
                'c' => o.combined = true,
                'm' => o.ipmasq = false,
                '?' | 'h' => return Err(UsageError::Help),
                other => return Err(UsageError::Illegal(other)),
            }
        }
    }
    if !o.individual && !o.combined {
        o.individual = true;
        o.combined = true;
    }
    Ok(o)
}

/// Reads `KEY=VALUE` lines of an env file as the shell's `.` would for flanneld's files:
/// blank lines and `#` comments skipped, one level of matching quotes removed.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let unquoted = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(a, b)| v.strip_prefix(*a)?.strip_suffix(*b))
                .unwrap_or(v);
            Some((k.trim().to_string(), unquoted.to_string()))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    InvalidIpMasq(String),
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::InvalidIpMasq(v) => write!(f, "Invalid value of FLANNEL_IPMASQ: {v}"),
        }
    }
}

/// The Docker env file's content for `vars` (environment overlaid by the flannel env file).
pub fn render(o: &Options, vars: &BTreeMap<String, String>) -> Result<String, RenderError> {
    let set = |k: &str| vars.get(k).filter(|v| !v.is_empty());
    let mut opts: BTreeMap<String, String> = vars
        .iter()
        .filter(|(k, _)| k.contains("DOCKER_OPT_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(subnet) = set("FLANNEL_SUBNET") {
        opts.insert("DOCKER_OPT_BIP".into(), format!("--bip={subnet}"));
    }
    if let Some(mtu) = set("FLANNEL_MTU") {
        opts.insert("DOCKER_OPT_MTU".into(), format!("--mtu={mtu}"));
    }
    if let (Some(masq), true) = (set("FLANNEL_IPMASQ"), o.ipmasq) {
        let docker = match masq.as_str() {
            "true" => "false",
            "false" => "true",
            other => return Err(RenderError::InvalidIpMasq(other.to_string())),
        };
        opts.insert("DOCKER_OPT_IPMASQ".into(), format!("--ip-masq={docker}"));
    }

    let mut out = String::new();
    let mut combined = vars.get(&o.combined_key).cloned().unwrap_or_default();
    if !combined.is_empty() {
        combined.push(' ');
    }
    for (name, value) in &opts {
        if o.individual {
            out.push_str(&format!("{name}=\"{value}\"\n"));
        }
        combined.push(' ');
        combined.push_str(value);
    }
    if o.combined {
        out.push_str(&format!("{}=\"{combined}\"\n", o.combined_key));
    }
    Ok(out)
}

/// The script's route sanity check: the network address of FLANNEL_SUBNET (last octet minus
/// one, as the script computes it) with the prefix, as a grep pattern.
pub fn subnet_pattern(flannel_subnet: &str) -> Option<String> {
    let (addr, len) = flannel_subnet.split_once('/')?;
    let (pre, last) = addr.rsplit_once('.')?;
    let last: i64 = last.parse().ok()?;
    Some(format!("{pre}.{}/{len}", last - 1))
}

/// `grep PATTERN | grep via` over `ip route show` output: the lines that conflict. In the
/// pattern only `.` is special (any character), as in the basic regex grep receives.
pub fn conflicting_routes<'a>(routes: &'a str, pattern: &str) -> Vec<&'a str> {
    routes
        .lines()
        .filter(|l| grep_match(l, pattern) && l.contains("via"))
        .collect()
}

fn grep_match(line: &str, pattern: &str) -> bool {
    let (l, p) = (line.as_bytes(), pattern.as_bytes());
    if p.len() > l.len() {
        return false;
    }
    (0..=l.len() - p.len()).any(|s| {
        p.iter()
            .zip(&l[s..])
            .all(|(pc, lc)| *pc == b'.' || pc == lc)
    })
}

#[cfg(test)]
#[path = "docker_opts_tests.rs"]
mod tests;

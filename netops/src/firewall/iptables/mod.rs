//! iptables through `iptables-restore` batches and `iptables-save` snapshots.
//!
//! No shell is involved and rule arguments are token vectors end to end: they are quoted for
//! restore syntax by [`quote::quote`], never split on spaces. Commands run in the calling
//! thread's network namespace.

mod batch;
pub mod quote;
mod save;

use std::sync::OnceLock;

use super::nfquery::{self, IptablesVariant};
use super::nft::TableFamily;
use super::tool;
use crate::Family;

pub use batch::Batch;
pub use save::{save, SavedChain, SavedRule, SavedTable};

impl Family {
    /// The front-end name upstream uses in messages (`iptables` / `ip6tables`).
    pub fn iptables_name(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore_bin(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    /// Resolved once per process: the PATH search and symlink walk would otherwise repeat
    /// for every chain a DEL asks about.
    fn variant(self) -> IptablesVariant {
        static V4: OnceLock<IptablesVariant> = OnceLock::new();
        static V6: OnceLock<IptablesVariant> = OnceLock::new();
        let cell = match self {
            Family::V4 => &V4,
            Family::V6 => &V6,
        };
        *cell.get_or_init(|| nfquery::iptables_variant(self.restore_bin()))
    }

    fn save_bin(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("invalid {kind} name {name:?}")]
    InvalidName { kind: &'static str, name: String },
    #[error("argument {0:?} cannot be expressed in iptables-restore syntax")]
    InvalidToken(String),
    #[error("failed to run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {}{}", stderr.trim_end(), failed_line.as_ref().map(|l| format!(" [line: {l}]")).unwrap_or_default())]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
        failed_line: Option<String>,
    },
    #[error("cannot parse iptables-save output line {line}: {text:?}")]
    Parse { line: usize, text: String },
}

/// Chain and table names: what iptables accepts (≤ 28 bytes, no blanks, no leading dash)
/// and what can be written unquoted into restore input.
fn check_name(kind: &'static str, name: &str) -> Result<(), IptablesError> {
    let ok = !name.is_empty()
        && name.len() <= 28
        && !name.starts_with(['-', '!', ':', '*', '#'])
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\'' && c != '\\');
    if ok {
        Ok(())
    } else {
        Err(IptablesError::InvalidName {
            kind,
            name: name.to_string(),
        })
    }
}

/// Runs `program args`, feeding `input` on stdin; returns stdout.
fn exec(program: &str, args: &[&str], input: Option<&str>) -> Result<String, IptablesError> {
    let output = tool::run(program, args, input).map_err(|source| spawn_error(program, source))?;
    checked(program, input, output)
}

fn spawn_error(program: &str, source: std::io::Error) -> IptablesError {
    IptablesError::Spawn {
        program: program.to_string(),
        source,
    }
}

/// stdout of a run that succeeded; otherwise the failure, with the input line it names.
fn checked(
    program: &str,
    input: Option<&str>,
    output: tool::Output,
) -> Result<String, IptablesError> {
    if !output.status.success() {
        let failed_line = input.and_then(|text| failed_line(&output.stderr, text));
        return Err(IptablesError::Failed {
            program: program.to_string(),
            status: output.status,
            stderr: output.stderr,
            failed_line,
        });
    }
    Ok(output.stdout)
}

const RESTORE_ARGS: &[&str] = &["--noflush", "-w", "5"];

/// An `iptables-restore --noflush -w 5` (or ip6tables-restore) started before the batch it
/// will apply is known. An ADD starts one while IPAM is still choosing the address the rules
/// name, so the tool's exec and library loading are off the critical path. Until it is given
/// a batch it has read nothing and changed nothing; dropped unused, it is killed.
pub struct PendingRestore {
    family: Family,
    started: tool::Started,
}

impl PendingRestore {
    /// Starts the tool in the calling thread's network namespace.
    pub fn start(family: Family) -> Result<PendingRestore, IptablesError> {
        let program = family.restore_bin();
        let started =
            tool::Started::spawn(program, RESTORE_ARGS).map_err(|e| spawn_error(program, e))?;
        Ok(PendingRestore { family, started })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    fn apply(self, input: &str) -> Result<(), IptablesError> {
        let program = self.family.restore_bin();
        let output = self
            .started
            .finish(input)
            .map_err(|e| spawn_error(program, e))?;
        checked(program, Some(input), output).map(drop)
    }
}

/// iptables-restore names the failing input line (`line N failed` from the legacy backend,
/// `Error occurred at line: N` from nft); quote that line of our input back to the caller.
fn failed_line(stderr: &str, input: &str) -> Option<String> {
    let n = stderr.match_indices("line").find_map(|(at, _)| {
        let rest = stderr[at + 4..].trim_start_matches([':', ' ']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<usize>().ok()
    })?;
    // The nft backend reports errors it only detects at commit time against the COMMIT
    // line, which names no culprit; say nothing rather than something misleading.
    input
        .lines()
        .nth(n.checked_sub(1)?)
        .filter(|l| *l != "COMMIT")
        .map(str::to_string)
}

/// Checks that `family`'s tools run and can read the nat table here; the error explains why
/// not (portmap and ipMasq report it when picking a backend).
pub fn probe(family: Family) -> Result<(), IptablesError> {
    exec(family.save_bin(), &["-t", "nat"], None).map(drop)
}

///
/// With iptables-nft tools and a kernel that answers nf_tables queries this needs no
/// process: both parts iptables-nft depends on are then known to be present.
pub fn usable(family: Family) -> bool {
    if family.variant() == IptablesVariant::Nft
        && nfquery::table_exists(TableFamily::from(family), "nat").is_ok()
    {
        return true;
    }
    probe(family).is_ok()
}

/// True only when the kernel says for certain that `chain` is not in `table`: the tools
/// are iptables-nft, whose chains are nf_tables chains, and nf_tables answered. Callers use
/// it to skip an `iptables-save` (and a restore) that could find nothing; on any doubt it
/// says false and the caller asks the tools as before.
pub fn chain_absent(family: Family, table: &str, chain: &str) -> bool {
    family.variant() == IptablesVariant::Nft
        && matches!(
            nfquery::chain_exists(TableFamily::from(family), table, chain),
            Ok(false)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_line_is_quoted_from_input() {
        let input = "*nat\n-A NOPE -j RETURN\nCOMMIT\n";
        let stderr = "iptables-restore: line 2 failed: No chain/target/match by that name.\n";
        assert_eq!(
            failed_line(stderr, input).as_deref(),
            Some("-A NOPE -j RETURN")
        );
        let nft = "iptables-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 2\n";
        assert_eq!(
            failed_line(nft, input).as_deref(),
            Some("-A NOPE -j RETURN")
        );
        assert_eq!(failed_line("something else", input), None);
        assert_eq!(
            failed_line("Error occurred at line: 3", input),
            None,
            "COMMIT names no culprit"
        );
    }

    #[test]
    fn chain_names_are_checked() {
        assert!(check_name("chain", "CNI-9cccacf967e00a3c04e26966").is_ok());
        for bad in ["", "-A", "has space", "x\"y", &"L".repeat(29)] {
            assert!(check_name("chain", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_binary_is_a_spawn_error() {
        let err = exec("/nonexistent/iptables-restore", &[], Some("*nat\nCOMMIT\n")).unwrap_err();
        assert!(matches!(err, IptablesError::Spawn { .. }), "{err}");
    }
}

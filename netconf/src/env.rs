//! The `CNI_*` environment as Go's skel reads and validates it.

use std::path::PathBuf;

use crate::error::{codes, CniError};

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

/// A validated CNI invocation environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// `None` when `CNI_NETNS` is unset or empty (allowed for DEL, GC, STATUS, VERSION).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: String,
    /// `CNI_PATH` split at `:` (Go's `filepath.SplitList`: empty string => no entries).
    pub path: Vec<PathBuf>,
}

/// The variables exactly as read, before the command itself is checked. Go's skel validates
/// the network config between reading these and rejecting an unknown command, so callers that
/// reproduce skel need this intermediate step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEnv {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
    pub netns_override: String,
}

type Validator = fn(&str) -> Result<(), CniError>;

/// Which commands require a variable, and whether skel validates its value.
struct Var {
    name: &'static str,
    required_for: &'static [&'static str],
    validate: Option<Validator>,
}

const VARS: [Var; 7] = [
    Var {
        name: "CNI_COMMAND",
        required_for: &["ADD", "CHECK", "DEL", "GC", "STATUS"],
        validate: None,
    },
    Var {
        name: "CNI_CONTAINERID",
        required_for: &["ADD", "CHECK", "DEL"],
        validate: Some(validate_container_id),
    },
    Var {
        name: "CNI_NETNS",
        required_for: &["ADD", "CHECK"],
        validate: None,
    },
    Var {
        name: "CNI_IFNAME",
        required_for: &["ADD", "CHECK", "DEL"],
        validate: Some(validate_ifname),
    },
    Var {
        name: "CNI_ARGS",
        required_for: &[],
        validate: None,
    },
    Var {
        name: "CNI_PATH",
        required_for: &["ADD", "CHECK", "DEL", "GC", "STATUS"],
        validate: None,
    },
    Var {
        name: "CNI_NETNS_OVERRIDE",
        required_for: &[],
        validate: None,
    },
];

/// Reads the variables in skel's order. A present, required variable is validated on the spot
/// (so a bad container ID is reported even when later variables are missing); missing required
/// ones are collected into `required env variables [A,B] missing` (code 4). An empty
/// `CNI_COMMAND` always counts as missing.
pub fn read_env(get: impl Fn(&str) -> Option<String>) -> Result<RawEnv, CniError> {
    let command = get("CNI_COMMAND").unwrap_or_default();
    let mut values: Vec<String> = Vec::with_capacity(VARS.len());
    let mut missing = Vec::new();
    for var in &VARS {
        let value = get(var.name).unwrap_or_default();
        let required = var.required_for.contains(&command.as_str());
        if value.is_empty() {
            if required || var.name == "CNI_COMMAND" {
                missing.push(var.name);
            }
        } else if required {
            if let Some(validate) = var.validate {
                validate(&value)?;
            }
        }
        values.push(value);
    }
    if !missing.is_empty() {
        return Err(CniError::new(
            codes::INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    let mut it = values.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(RawEnv {
        command: next(),
        container_id: next(),
        netns: next(),
        ifname: next(),
        args: next(),
        path: next(),
        netns_override: next(),
    })
}

/// True when `CNI_COMMAND` is unset or empty: skel then prints its "about" text instead of an
/// error.
pub fn command_missing(get: impl Fn(&str) -> Option<String>) -> bool {
    get("CNI_COMMAND").unwrap_or_default().is_empty()
}

impl RawEnv {
    /// Resolves the command (unknown => code 4 `unknown CNI_COMMAND: X`).
    pub fn into_env(self) -> Result<CniEnv, CniError> {
        let command = Command::parse(&self.command).ok_or_else(|| {
            CniError::new(
                codes::INVALID_ENV,
                format!("unknown CNI_COMMAND: {}", self.command),
            )
        })?;
        Ok(CniEnv {
            command,
            container_id: self.container_id,
            netns: (!self.netns.is_empty()).then(|| PathBuf::from(self.netns)),
            ifname: self.ifname,
            args: self.args,
            path: split_path(&self.path),
        })
    }

    /// `CNI_NETNS_OVERRIDE` disables skel's "CNI_NETNS is my own netns" check.
    pub fn netns_override(&self) -> bool {
        self.netns_override == "1" || self.netns_override.eq_ignore_ascii_case("true")
    }
}

impl CniEnv {
    /// Reads and validates the environment with skel's rules (see [`read_env`]).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
        read_env(get)?.into_env()
    }

    /// `CNI_PATH` joined back with `:`.
    pub fn path_string(&self) -> String {
        self.path
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Go's `filepath.SplitList` on Unix.
pub fn split_path(s: &str) -> Vec<PathBuf> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(':').map(PathBuf::from).collect()
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the rule for container IDs and network names.
pub fn is_valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Go's `utils.ValidateContainerID`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::new(
            codes::UNKNOWN_CONTAINER,
            "missing containerID",
        ));
    }
    if !is_valid_name(id) {
        return Err(
            CniError::new(codes::INVALID_ENV, "invalid characters in containerID").with_details(id),
        );
    }
    Ok(())
}

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Go's `utils.ValidateInterfaceName`.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let invalid = |msg: &str| CniError::new(codes::INVALID_ENV, msg);
    if name.is_empty() {
        return Err(invalid("interface name is empty"));
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(invalid("interface name is too long").with_details(format!(
            "interface name should be less than {} characters",
            MAX_IFNAME_LEN + 1
        )));
    }
    if name == "." || name == ".." {
        return Err(invalid("interface name is . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(invalid(
            "interface name contains / or : or whitespace characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;

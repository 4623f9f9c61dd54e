//! Command-line flags with the semantics of Go's `flag` package, plus coreos' `flagutil`
//! environment fallback — what a drop-in replacement of a Go daemon must accept.
//!
//! Go's rules, as implemented here:
//! - `-name` and `--name` are the same flag; `-name=value` and `-name value` both work for
//!   non-boolean flags (the next word is taken even if it starts with `-`);
//! - boolean flags take a value only with `=` (`-ip-masq` is true, `-ip-masq=false`), accepting
//!   what `strconv.ParseBool` accepts;
//! - `--` ends the flags and is consumed; the first non-flag word (including a lone `-`) ends
//!   them and is kept as a positional argument;
//! - an undefined flag is an error, except `-h`/`-help`, which ask for the usage text;
//! - integers parse like `strconv.ParseInt(s, 0, 64)` (`0x`, `0o`, `0b`, leading-zero octal,
//!   `_` separators).
//!
//! [`FlagSet::apply_env`] then sets every flag *not* given on the command line from
//! `<PREFIX>_<NAME>` (upper case, `-` and `.` as `_`); empty variables are ignored.

mod number;
mod usage;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use number::{atoi, parse_bool, parse_int, parse_uint, AtoiError};

/// The value type of a flag, which decides how it is parsed and shown in the usage text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    String,
    Int,
    Uint,
    /// A string flag that may be given several times; each occurrence appends.
    List,
}

/// One flag definition.
#[derive(Debug, Clone)]
pub struct Flag {
    pub name: &'static str,
    pub kind: Kind,
    /// The default in Go's string form (`""`, `"0"`, `"false"`, ...).
    pub default: &'static str,
    /// Help text; a word in backquotes names the value in the usage line, as in Go.
    pub usage: &'static str,
}

impl Flag {
    pub const fn new(
        name: &'static str,
        kind: Kind,
        default: &'static str,
        usage: &'static str,
    ) -> Flag {
        Flag {
            name,
            kind,
            default,
            usage,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    /// `-h` or `-help` without such a flag defined: print the usage and exit 0.
    #[error("flag: help requested")]
    Help,
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    #[error("flag provided but not defined: -{0}")]
    Undefined(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid boolean value {value:?} for -{name}: {reason}")]
    InvalidBool {
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("invalid value {value:?} for flag -{name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("invalid value {value:?} for {var}: {reason}")]
    InvalidEnv {
        var: String,
        value: String,
        reason: &'static str,
    },
}

/// A set of flag definitions (Go's `flag.FlagSet`).
#[derive(Debug, Clone)]
pub struct FlagSet {
    program: String,
    flags: Vec<Flag>,
}

/// The outcome of parsing: values of the flags that were set, and what followed the flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Values per flag name in the order given (one element except for [`Kind::List`]).
    values: BTreeMap<String, Vec<String>>,
    /// Flags set on the command line (the env fallback skips these).
    on_cli: BTreeSet<String>,
    /// Positional arguments after the flags.
    pub args: Vec<String>,
}

impl FlagSet {
    pub fn new(program: impl Into<String>, flags: Vec<Flag>) -> FlagSet {
        FlagSet {
            program: program.into(),
            flags,
        }
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn flags(&self) -> &[Flag] {
        &self.flags
    }

    fn lookup(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.name == name)
    }

    /// Parses `args` (without the program name) by Go's rules.
    pub fn parse<S: AsRef<str>>(&self, args: &[S]) -> Result<Parsed, FlagError> {
        let mut parsed = Parsed::default();
        let mut rest = args.iter().map(AsRef::as_ref).peekable();
        while let Some(arg) = rest.peek().copied() {
            if arg.len() < 2 || !arg.starts_with('-') {
                break;
            }
            rest.next();
            let body = if let Some(after) = arg.strip_prefix("--") {
                if after.is_empty() {
                    break;
                }
                after
            } else {
                &arg[1..]
            };
            if body.starts_with(['-', '=']) {
                return Err(FlagError::BadSyntax(arg.to_owned()));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(flag) = self.lookup(name) else {
                if name == "help" || name == "h" {
                    return Err(FlagError::Help);
                }
                return Err(FlagError::Undefined(name.to_owned()));
            };
            let value = match (flag.kind, inline) {
                (Kind::Bool, Some(v)) => v.to_owned(),
                (Kind::Bool, None) => "true".to_owned(),
                (_, Some(v)) => v.to_owned(),
                (_, None) => match rest.next() {
                    Some(v) => v.to_owned(),
                    None => return Err(FlagError::MissingValue(name.to_owned())),
                },
            };
            check_value(flag, &value).map_err(|reason| match flag.kind {
                Kind::Bool => FlagError::InvalidBool {
                    name: name.to_owned(),
                    value: value.clone(),
                    reason,
                },
                _ => FlagError::InvalidValue {
                    name: name.to_owned(),
                    value: value.clone(),
                    reason,
                },
            })?;
            parsed.set(flag, value);
            parsed.on_cli.insert(flag.name.to_owned());
        }
        parsed.args = rest.map(str::to_owned).collect();
        Ok(parsed)
    }

    /// Sets flags not given on the command line from `<prefix>_<NAME>` variables looked up
    /// with `get`; empty values are ignored.
    pub fn apply_env(
        &self,
        parsed: &mut Parsed,
        prefix: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), FlagError> {
        for flag in &self.flags {
            if parsed.on_cli.contains(flag.name) {
                continue;
            }
            let var = env_name(prefix, flag.name);
            let Some(value) = get(&var).filter(|v| !v.is_empty()) else {
                continue;
            };
            check_value(flag, &value).map_err(|reason| FlagError::InvalidEnv {
                var: var.clone(),
                value: value.clone(),
                reason,
            })?;
            parsed.set(flag, value);
        }
        Ok(())
    }

    /// Go's `PrintDefaults` output for this set (flags sorted by name).
    pub fn defaults_text(&self) -> String {
        usage::defaults(&self.flags)
    }

    /// The whole usage text: a synopsis line and the flag list.
    pub fn usage_text(&self) -> String {
        format!(
            "Usage: {} [OPTION]...\n{}",
            self.program,
            self.defaults_text()
        )
    }

    /// A typed view of `parsed` that falls back to the defaults of this set.
    pub fn values<'a>(&'a self, parsed: &'a Parsed) -> Values<'a> {
        Values { set: self, parsed }
    }
}

/// `FLANNELD_ETCD_ENDPOINTS` for prefix `FLANNELD` and flag `etcd-endpoints`.
pub fn env_name(prefix: &str, flag: &str) -> String {
    let name: String = flag
        .chars()
        .map(|c| {
            if c == '-' || c == '.' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    format!("{prefix}_{name}")
}

fn check_value(flag: &Flag, value: &str) -> Result<(), &'static str> {
    match flag.kind {
        Kind::Bool => parse_bool(value).map(drop),
        Kind::Int => parse_int(value).map(drop),
        Kind::Uint => parse_uint(value).map(drop),
        Kind::String | Kind::List => Ok(()),
    }
}

impl Parsed {
    fn set(&mut self, flag: &Flag, value: String) {
        let slot = self.values.entry(flag.name.to_owned()).or_default();
        if flag.kind != Kind::List {
            slot.clear();
        }
        slot.push(value);
    }

    /// Whether `name` was set, on the command line or from the environment.
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn set_on_cli(&self, name: &str) -> bool {
        self.on_cli.contains(name)
    }
}

/// Typed accessors; every value was validated when it was set, and defaults are constants of
/// the flag table, so a failure here is a bug in that table.
pub struct Values<'a> {
    set: &'a FlagSet,
    parsed: &'a Parsed,
}

impl Values<'_> {
    fn flag(&self, name: &str, kind: Kind) -> &Flag {
        let flag = self
            .set
            .lookup(name)
            .unwrap_or_else(|| panic!("flag -{name} is not defined"));
        assert_eq!(flag.kind, kind, "flag -{name} has another type");
        flag
    }

    fn raw(&self, name: &str, kind: Kind) -> String {
        let flag = self.flag(name, kind);
        match self.parsed.values.get(name).and_then(|v| v.last()) {
            Some(v) => v.clone(),
            None => flag.default.to_owned(),
        }
    }

    pub fn string(&self, name: &str) -> String {
        self.raw(name, Kind::String)
    }

    pub fn bool(&self, name: &str) -> bool {
        parse_bool(&self.raw(name, Kind::Bool)).unwrap_or_else(|e| panic!("-{name}: {e}"))
    }

    pub fn int(&self, name: &str) -> i64 {
        parse_int(&self.raw(name, Kind::Int)).unwrap_or_else(|e| panic!("-{name}: {e}"))
    }

    pub fn uint(&self, name: &str) -> u64 {
        parse_uint(&self.raw(name, Kind::Uint)).unwrap_or_else(|e| panic!("-{name}: {e}"))
    }

    /// Every occurrence of a repeatable flag, in order (empty when never given).
    pub fn list(&self, name: &str) -> Vec<String> {
        self.flag(name, Kind::List);
        self.parsed.values.get(name).cloned().unwrap_or_default()
    }
}

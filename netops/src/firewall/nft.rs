//! nftables through the `nft` front-end: a script applied as one kernel transaction
//! (`nft -f -`, all or nothing) and tables read back from nft's JSON listing.
//!
//! No shell is involved; scripts travel on stdin. Commands run in the calling thread's
//! network namespace.

use std::io;
use std::process::ExitStatus;

use serde_json::Value;

use super::tool;
use crate::Family;

const PROGRAM: &str = "nft";

/// The address family of an nftables table, as nft names it on the command line and in
/// scripts (`ip`, `ip6`, `inet`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableFamily {
    Ip,
    Ip6,
    Inet,
    Bridge,
    Arp,
    Netdev,
}

impl TableFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            TableFamily::Ip => "ip",
            TableFamily::Ip6 => "ip6",
            TableFamily::Inet => "inet",
            TableFamily::Bridge => "bridge",
            TableFamily::Arp => "arp",
            TableFamily::Netdev => "netdev",
        }
    }

    /// The kernel's `NFPROTO_*` number for the family.
    pub(super) fn nfproto(self) -> u8 {
        match self {
            TableFamily::Inet => 1,
            TableFamily::Ip => 2,
            TableFamily::Arp => 3,
            TableFamily::Netdev => 5,
            TableFamily::Bridge => 7,
            TableFamily::Ip6 => 10,
        }
    }
}

/// `ip` or `ip6`: the table family for one IP family's rules.
impl From<Family> for TableFamily {
    fn from(f: Family) -> TableFamily {
        match f {
            Family::V4 => TableFamily::Ip,
            Family::V6 => TableFamily::Ip6,
        }
    }
}

impl std::fmt::Display for TableFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// There is no `nft` binary on `PATH`.
    #[error("nft is not installed (not found on PATH): {0}")]
    NotInstalled(#[source] io::Error),
    #[error("failed to run nft: {0}")]
    Spawn(#[source] io::Error),
    /// The binary runs but cannot talk to the kernel's nf_tables (module missing, no
    /// permission in this namespace); the text is nft's own explanation.
    #[error("nft cannot use the kernel's nf_tables here: {}", .0.trim_end())]
    KernelUnsupported(String),
    #[error("nft {args} failed ({status}): {}", stderr.trim_end())]
    Failed {
        args: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot parse nft JSON listing: {0}")]
    Listing(String),
}

/// One rule of a listed table, as far as callers find their own rules again: by chain and
/// comment, removed by handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

/// The chains and rules of one table, in nft's listing order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub chains: Vec<String>,
    pub rules: Vec<Rule>,
}

impl Table {
    pub fn has_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|c| c == name)
    }

    /// Rules of `chain`, in listing order.
    pub fn rules_in<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}

/// Runs `nft args` with `input` on stdin; returns stdout.
fn exec(args: &[&str], input: Option<&str>) -> Result<String, NftError> {
    exec_program(PROGRAM, args, input)
}

fn exec_program(program: &str, args: &[&str], input: Option<&str>) -> Result<String, NftError> {
    let out = tool::run(program, args, input).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => NftError::NotInstalled(e),
        _ => NftError::Spawn(e),
    })?;
    if !out.status.success() {
        return Err(NftError::Failed {
            args: args.join(" "),
            status: out.status,
            stderr: out.stderr,
        });
    }
    Ok(out.stdout)
}

/// Applies `script` (nft syntax, one command per line) as a single transaction: either
/// every command takes effect or none does. An empty script is a no-op and runs nothing.
pub fn apply(script: &str) -> Result<(), NftError> {
    if script.is_empty() {
        return Ok(());
    }
    exec(&["-f", "-"], Some(script)).map(drop)
}

/// The chains and rules of `family table`, or `None` when there is no such table.
pub fn list_table(family: TableFamily, table: &str) -> Result<Option<Table>, NftError> {
    // The common answer on DEL paths is "no such table": the kernel gives it without a
    // process. Any doubt (an error) goes to nft itself.
    if let Ok(false) = super::nfquery::table_exists(family, table) {
        return Ok(None);
    }
    match exec(&["-j", "list", "table", family.as_str(), table], None) {
        Ok(json) => parse_listing(&json).map(Some),
        // nft's error text for a missing table is strerror(ENOENT), which the locale may
        // translate; ask nft which tables exist instead of reading its message.
        Err(e @ NftError::Failed { .. }) => match table_exists(family, table) {
            Ok(false) => Ok(None),
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

fn table_exists(family: TableFamily, table: &str) -> Result<bool, NftError> {
    let json = exec(&["-j", "list", "tables", family.as_str()], None)?;
    Ok(items(&json)?
        .iter()
        .any(|i| i.pointer("/table/name").and_then(Value::as_str) == Some(table)))
}

fn items(json: &str) -> Result<Vec<Value>, NftError> {
    let mut v: Value = serde_json::from_str(json).map_err(|e| NftError::Listing(e.to_string()))?;
    match v.get_mut("nftables").map(Value::take) {
        Some(Value::Array(items)) => Ok(items),
        _ => Err(NftError::Listing("no \"nftables\" array".into())),
    }
}

/// Parses the JSON nft prints for `nft -j list table ...` (handles are always included).
pub fn parse_listing(json: &str) -> Result<Table, NftError> {
    let mut table = Table::default();
    for item in items(json)? {
        if let Some(name) = item.pointer("/chain/name").and_then(Value::as_str) {
            table.chains.push(name.to_owned());
        }
        let Some(rule) = item.get("rule") else {
            continue;
        };
        if let (Some(chain), Some(handle)) = (
            rule.get("chain").and_then(Value::as_str),
            rule.get("handle").and_then(Value::as_u64),
        ) {
            table.rules.push(Rule {
                chain: chain.to_owned(),
                handle,
                comment: rule
                    .get("comment")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        }
    }
    Ok(table)
}

/// A named counter of a table, as `nft -j list counters` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The named counters of `family table`.
pub fn list_counters(family: TableFamily, table: &str) -> Result<Vec<Counter>, NftError> {
    let json = exec(
        &["-j", "list", "counters", "table", family.as_str(), table],
        None,
    )?;
    parse_counters(&json)
}

/// Parses the JSON nft prints for `nft -j list counters ...`.
pub fn parse_counters(json: &str) -> Result<Vec<Counter>, NftError> {
    Ok(items(json)?
        .iter()
        .filter_map(|i| i.get("counter"))
        .filter_map(|c| {
            Some(Counter {
                name: c.get("name")?.as_str()?.to_owned(),
                packets: c.get("packets")?.as_u64()?,
                bytes: c.get("bytes")?.as_u64()?,
            })
        })
        .collect())
}

/// Checks that nft can be used here; the error says whether the binary is missing
/// ([`NftError::NotInstalled`]) or the kernel side is ([`NftError::KernelUnsupported`]).
pub fn probe() -> Result<(), NftError> {
    match exec(&["list", "tables"], None) {
        Ok(_) => Ok(()),
        Err(NftError::Failed { stderr, .. }) => Err(NftError::KernelUnsupported(stderr)),
        Err(e) => Err(e),
    }
}

/// Whether nft works here (the backend auto-selection question).
pub fn usable() -> bool {
    probe().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "bridge", "name": "nat", "handle": 1}},
 {"chain": {"family": "bridge", "table": "nat", "name": "PREROUTING", "handle": 1}},
 {"chain": {"family": "bridge", "table": "nat", "name": "c1", "handle": 2}},
 {"rule": {"family": "bridge", "table": "nat", "chain": "PREROUTING", "handle": 7, "comment": "mine", "expr": []}},
 {"rule": {"family": "bridge", "table": "nat", "chain": "c1", "handle": 8, "expr": [{"drop": null}]}}]}"#;

    #[test]
    fn counters_are_read_from_the_json_listing() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"counter": {"family": "inet", "name": "denied-ingress", "table": "t", "handle": 1, "packets": 7, "bytes": 420}}]}"#;
        assert_eq!(
            parse_counters(json).unwrap(),
            [Counter {
                name: "denied-ingress".into(),
                packets: 7,
                bytes: 420
            }]
        );
        assert!(parse_counters("{}").is_err());
    }

    #[test]
    fn listing_yields_chains_and_rules_in_order() {
        let t = parse_listing(LISTING).unwrap();
        assert_eq!(t.chains, ["PREROUTING", "c1"]);
        assert!(t.has_chain("c1") && !t.has_chain("c2"));
        assert_eq!(
            t.rules,
            [
                Rule {
                    chain: "PREROUTING".into(),
                    handle: 7,
                    comment: Some("mine".into())
                },
                Rule {
                    chain: "c1".into(),
                    handle: 8,
                    comment: None
                },
            ]
        );
        assert_eq!(t.rules_in("c1").map(|r| r.handle).collect::<Vec<_>>(), [8]);
    }

    #[test]
    fn malformed_listings_are_errors() {
        for bad in ["{}", "nope", r#"{"nftables": {}}"#] {
            assert!(
                matches!(parse_listing(bad), Err(NftError::Listing(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_listing(r#"{"nftables": []}"#).unwrap(),
            Table::default()
        );
    }

    #[test]
    fn a_missing_binary_is_reported_as_such() {
        let e = exec_program("/nonexistent/nft", &["list", "tables"], None).unwrap_err();
        assert!(matches!(e, NftError::NotInstalled(_)), "{e:?}");
        assert!(e.to_string().starts_with("nft is not installed"), "{e}");
    }

    #[test]
    fn failures_name_the_arguments_and_nft_reason() {
        let e = NftError::Failed {
            args: "-f -".into(),
            status: std::os::unix::process::ExitStatusExt::from_raw(256),
            stderr: "Error: No such file or directory\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "nft -f - failed (exit status: 1): Error: No such file or directory"
        );
        let e = NftError::KernelUnsupported("Error: Protocol not supported\n".into());
        assert_eq!(
            e.to_string(),
            "nft cannot use the kernel's nf_tables here: Error: Protocol not supported"
        );
    }

    #[test]
    fn families_print_as_nft_spells_them() {
        assert_eq!(TableFamily::from(Family::V4).to_string(), "ip");
        assert_eq!(TableFamily::from(Family::V6).as_str(), "ip6");
        assert_eq!(TableFamily::Bridge.as_str(), "bridge");
        assert_eq!(TableFamily::Ip6.nfproto(), 10);
    }
}

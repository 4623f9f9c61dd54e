//! One `*table ... COMMIT` block applied by a single `iptables-restore --noflush` run.

use super::quote::join;
use super::save::{save, SavedRule, SavedTable};
use super::{check_name, exec, Family, IptablesError, PendingRestore, RESTORE_ARGS};

/// Built-in chains exist implicitly: iptables creates them with the table.
fn is_builtin(table: &str, chain: &str) -> bool {
    let builtins: &[&str] = match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        "security" => &["INPUT", "FORWARD", "OUTPUT"],
        _ => &[],
    };
    builtins.contains(&chain)
}

/// Changes to one table, applied atomically by one process (one xtables lock take instead of
/// one per rule, the classic CNI lock-contention failure).
///
/// Conditional operations (`ensure_chain`, `*_unique`, `delete_rule`, `delete_chain`) are
/// decided against a snapshot of the table taken when the batch is created, updated by the
/// batch's own earlier operations — so a batch never contains a line that fails because of
/// state it could have known about (one failing line aborts the whole restore).
pub struct Batch {
    family: Family,
    table: String,
    state: SavedTable,
    lines: Vec<String>,
}

impl Batch {
    /// Starts a batch for `table`, reading its current state with iptables-save.
    pub fn load(family: Family, table: &str) -> Result<Batch, IptablesError> {
        let state = save(family, table)?;
        Ok(Batch {
            family,
            table: table.to_string(),
            state,
            lines: Vec::new(),
        })
    }

    /// Like [`Batch::load`] for a batch whose every conditional operation concerns rules
    /// that mention `chain` (the chain's own rules, jumps to it): when the kernel says the
    /// chain does not exist, none of those rules can exist either (iptables refuses to drop
    /// a chain that is still referenced), so an empty snapshot decides them exactly as the
    /// real one would, and the `iptables-save` process is skipped.
    pub fn load_for_chain(
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<Batch, IptablesError> {
        if super::chain_absent(family, table, chain) {
            Batch::with_state(
                family,
                SavedTable {
                    table: table.to_string(),
                    ..SavedTable::default()
                },
            )
        } else {
            Batch::load(family, table)
        }
    }

    /// Starts a batch against a known state (a save taken earlier, or a fixture in tests).
    pub fn with_state(family: Family, state: SavedTable) -> Result<Batch, IptablesError> {
        check_name("table", &state.table)?;
        Ok(Batch {
            family,
            table: state.table.clone(),
            state,
            lines: Vec::new(),
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// The table as it will be after this batch is applied (assuming no concurrent writer).
    pub fn state(&self) -> &SavedTable {
        &self.state
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn has_chain(&self, chain: &str) -> bool {
        is_builtin(&self.table, chain) || self.state.has_chain(chain)
    }

    /// Creates `chain` if it does not exist; an existing chain keeps its rules.
    ///
    /// Not a `:CHAIN` declaration: under `--noflush` declaring an existing chain flushes it.
    pub fn ensure_chain(&mut self, chain: &str) -> Result<&mut Self, IptablesError> {
        check_name("chain", chain)?;
        if !self.has_chain(chain) {
            self.lines.push(format!("-N {chain}"));
            self.state.chains.push(super::save::SavedChain {
                name: chain.to_string(),
                policy: None,
            });
        }
        Ok(self)
    }

    /// Creates `chain`, or empties it if it exists (a `:CHAIN - [0:0]` declaration).
    pub fn flush_chain(&mut self, chain: &str) -> Result<&mut Self, IptablesError> {
        check_name("chain", chain)?;
        if is_builtin(&self.table, chain) {
            // A declaration of a built-in chain sets its policy instead of flushing it.
            self.lines.push(format!("-F {chain}"));
        } else {
            self.lines.push(format!(":{chain} - [0:0]"));
            if !self.state.has_chain(chain) {
                self.state.chains.push(super::save::SavedChain {
                    name: chain.to_string(),
                    policy: None,
                });
            }
        }
        self.state.rules.retain(|r| r.chain != chain);
        Ok(self)
    }

    pub fn append<S: AsRef<str>>(
        &mut self,
        chain: &str,
        args: &[S],
    ) -> Result<&mut Self, IptablesError> {
        check_name("chain", chain)?;
        self.lines.push(format!("-A {chain} {}", join(args)?));
        self.state.rules.push(rule(chain, args));
        Ok(self)
    }

    /// Inserts at position 1 (the top of `chain`).
    pub fn insert<S: AsRef<str>>(
        &mut self,
        chain: &str,
        args: &[S],
    ) -> Result<&mut Self, IptablesError> {
        check_name("chain", chain)?;
        self.lines.push(format!("-I {chain} 1 {}", join(args)?));
        let at = self
            .state
            .rules
            .iter()
            .position(|r| r.chain == chain)
            .unwrap_or(self.state.rules.len());
        self.state.rules.insert(at, rule(chain, args));
        Ok(self)
    }

    /// Appends unless an identical rule exists (compare in canonical form, see
    /// [`SavedTable::has_rule`]).
    pub fn append_unique<S: AsRef<str>>(
        &mut self,
        chain: &str,
        args: &[S],
    ) -> Result<&mut Self, IptablesError> {
        if !self.state.has_rule(chain, args) {
            self.append(chain, args)?;
        }
        Ok(self)
    }

    /// Inserts at the top unless an identical rule exists anywhere in `chain`.
    pub fn insert_unique<S: AsRef<str>>(
        &mut self,
        chain: &str,
        args: &[S],
    ) -> Result<&mut Self, IptablesError> {
        if !self.state.has_rule(chain, args) {
            self.insert(chain, args)?;
        }
        Ok(self)
    }

    /// Deletes the first identical rule, if there is one.
    pub fn delete_rule<S: AsRef<str>>(
        &mut self,
        chain: &str,
        args: &[S],
    ) -> Result<&mut Self, IptablesError> {
        check_name("chain", chain)?;
        if let Some(i) = self.state.position(chain, args) {
            self.lines.push(format!("-D {chain} {}", join(args)?));
            self.state.rules.remove(i);
        }
        Ok(self)
    }

    /// Flushes and deletes a user-defined chain, if it exists. Rules elsewhere that jump to
    /// it must be deleted first (in this batch or before), or the restore fails.
    pub fn delete_chain(&mut self, chain: &str) -> Result<&mut Self, IptablesError> {
        check_name("chain", chain)?;
        if self.state.has_chain(chain) && !is_builtin(&self.table, chain) {
            self.lines.push(format!("-F {chain}"));
            self.lines.push(format!("-X {chain}"));
            self.state.rules.retain(|r| r.chain != chain);
            self.state.chains.retain(|c| c.name != chain);
        }
        Ok(self)
    }

    /// The restore input this batch feeds to iptables-restore.
    pub fn render(&self) -> String {
        let mut out = format!("*{}\n", self.table);
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
        out
    }

    /// Applies the batch with one `iptables-restore --noflush -w 5` (or ip6tables-restore)
    /// in the current thread's namespace. An empty batch runs nothing.
    pub fn apply(&self) -> Result<(), IptablesError> {
        if self.is_empty() {
            return Ok(());
        }
        let input = self.render();
        exec(self.family.restore_bin(), RESTORE_ARGS, Some(&input)).map(drop)
    }

    /// Like [`Batch::apply`], through `pending` when it is a restore of this batch's family
    /// (it runs in the namespace it was started in). An unused `pending` is killed first.
    pub fn apply_with(&self, pending: Option<PendingRestore>) -> Result<(), IptablesError> {
        match pending {
            Some(restore) if restore.family() == self.family && !self.is_empty() => {
                restore.apply(&self.render())
            }
            unused => {
                drop(unused);
                self.apply()
            }
        }
    }
}

fn rule<S: AsRef<str>>(chain: &str, args: &[S]) -> SavedRule {
    SavedRule {
        chain: chain.to_string(),
        args: args.iter().map(|a| a.as_ref().to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat_with(rules: &str) -> Batch {
        let text = format!("*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-X - [0:0]\n{rules}COMMIT\n");
        Batch::with_state(Family::V4, SavedTable::parse(&text, "nat").unwrap()).unwrap()
    }

    #[test]
    fn empty_batch_renders_only_frame() {
        let b = nat_with("");
        assert!(b.is_empty());
        assert_eq!(b.render(), "*nat\nCOMMIT\n");
    }

    #[test]
    fn ensure_chain_only_creates_missing_and_flush_always_declares() {
        let mut b = nat_with("-A CNI-X -j ACCEPT\n");
        b.ensure_chain("CNI-X")
            .unwrap()
            .ensure_chain("CNI-Y")
            .unwrap()
            .ensure_chain("CNI-Y")
            .unwrap();
        b.ensure_chain("POSTROUTING").unwrap();
        b.flush_chain("CNI-X").unwrap();
        assert_eq!(b.render(), "*nat\n-N CNI-Y\n:CNI-X - [0:0]\nCOMMIT\n");
        assert_eq!(b.state().rules_in("CNI-X").count(), 0);
    }

    #[test]
    fn unique_and_delete_consult_state_including_own_ops() {
        let mut b = nat_with("-A POSTROUTING -s 10.244.1.2/32 -j CNI-X\n");
        let jump = ["-s", "10.244.1.2/32", "-j", "CNI-X"];
        b.append_unique("POSTROUTING", &jump).unwrap();
        b.delete_rule("POSTROUTING", &["-s", "10.9.9.9/32", "-j", "CNI-X"])
            .unwrap();
        assert!(
            b.is_empty(),
            "existing rule and absent delete need no lines: {}",
            b.render()
        );
        b.delete_rule("POSTROUTING", &jump)
            .unwrap()
            .delete_rule("POSTROUTING", &jump)
            .unwrap();
        b.append_unique("CNI-X", &["-j", "MASQUERADE"])
            .unwrap()
            .append_unique("CNI-X", &["-j", "MASQUERADE"])
            .unwrap();
        b.insert_unique(
            "POSTROUTING",
            &[
                "-m",
                "comment",
                "--comment",
                "CNI portfwd requiring masquerade",
                "-j",
                "CNI-X",
            ],
        )
        .unwrap();
        assert_eq!(
            b.render(),
            "*nat\n-D POSTROUTING -s 10.244.1.2/32 -j CNI-X\n-A CNI-X -j MASQUERADE\n\
             -I POSTROUTING 1 -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-X\nCOMMIT\n"
        );
    }

    #[test]
    fn delete_chain_flushes_then_deletes_existing_only() {
        let mut b = nat_with("-A CNI-X -j ACCEPT\n");
        b.delete_chain("CNI-X")
            .unwrap()
            .delete_chain("CNI-X")
            .unwrap()
            .delete_chain("CNI-NOPE")
            .unwrap();
        b.delete_chain("POSTROUTING").unwrap();
        assert_eq!(b.render(), "*nat\n-F CNI-X\n-X CNI-X\nCOMMIT\n");
        assert!(!b.state().has_chain("CNI-X"));
    }

    #[test]
    fn rejects_bad_names_and_tokens() {
        let mut b = nat_with("");
        assert!(b.ensure_chain("has space").is_err());
        assert!(b.ensure_chain("").is_err());
        assert!(b.append("CNI-X", &["--comment", "two\nlines"]).is_err());
        assert!(b.is_empty());
    }
}

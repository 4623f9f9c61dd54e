//! The kernel side: what `inet flannel-netpol` holds now, and the one `nft -f -` transaction
//! that brings it to what is wanted. Runs in the calling thread's network namespace.
//!
//! The first write after start is a whole-table replacement (the table a previous run left
//! keeps enforcing until then); later writes are differences against what this process last
//! wrote. A failed transaction changes nothing in the kernel, and the next write is a whole
//! replacement again, as is the first one after the table or one of its hooks went missing
//! (`nft flush ruleset`, a firewalld reload).

use netops::firewall::nfquery;
use netops::firewall::nft::TableFamily;
use netops::firewall::nft::{self, NftError};

use super::ruleset::{self, Ruleset, FORWARD, INPUT, TABLE};

/// What one [`Table::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The whole table was written (first write, or after drift or a failure).
    pub full: bool,
    /// Whether anything was sent to the kernel at all.
    pub changed: bool,
}

#[derive(Debug, Default)]
pub struct Table {
    installed: Option<Ruleset>,
}

impl Table {
    /// Nothing known about the kernel: the first apply replaces the whole table.
    pub fn new() -> Table {
        Table::default()
    }

    /// What the kernel holds, as last written by this process.
    pub fn installed(&self) -> Option<&Ruleset> {
        self.installed.as_ref()
    }

    pub fn apply(&mut self, wanted: Ruleset) -> Result<Applied, NftError> {
        let (script, full) = match &self.installed {
            Some(old) => (ruleset::diff_script(old, &wanted), false),
            None => (ruleset::full_script(&wanted), true),
        };
        if script.is_empty() {
            return Ok(Applied {
                full: false,
                changed: false,
            });
        }
        match nft::apply(&script) {
            Ok(()) => {
                self.installed = Some(wanted);
                Ok(Applied {
                    full,
                    changed: true,
                })
            }
            Err(e) => {
                self.installed = None;
                Err(e)
            }
        }
    }

    /// Whether the table and its two hooked chains are still in the kernel. When they are
    /// not, the next [`Table::apply`] writes everything again.
    pub fn present(&mut self) -> std::io::Result<bool> {
        let there = nfquery::table_exists(TableFamily::Inet, TABLE)?
            && nfquery::chain_exists(TableFamily::Inet, TABLE, FORWARD)?
            && nfquery::chain_exists(TableFamily::Inet, TABLE, INPUT)?;
        if !there {
            self.installed = None;
        }
        Ok(there)
    }
}

/// Removes a table an earlier run with `--network-policy` left; true when there was one.
pub fn remove_leftover() -> Result<bool, NftError> {
    match nfquery::table_exists(TableFamily::Inet, TABLE) {
        Ok(false) => Ok(false),
        _ => nft::apply(&ruleset::delete_script()).map(|()| true),
    }
}

//! Traffic rules for the flannel network: masquerading and forwarding, written with iptables
//! (the default) or nftables (`"EnableNFTables": true` in net-conf.json), with upstream's
//! chains and tables in either case.
//!
//! A node switches modes by restarting with the other setting: once its own rules are in
//! place, [`Rules::remove_other_mode`] deletes what the other mode leaves behind, so there is
//! no moment without masquerading and no moment with two rule sets fighting.

pub mod iptables;
pub mod nftables;

pub use iptables::{
    forward_rules, masq_rules, probe_random_fully, supports_random_fully, RuleSet, FORWARD_CHAIN,
    MASQ_CHAIN,
};

use ipnet::IpNet;
use netops::firewall::iptables::IptablesError;
use netops::firewall::nft::{self, NftError, TableFamily};
use netops::firewall::Backend;
use netops::Family;

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("failed to set up {chain} rules: {source}")]
    Iptables {
        chain: &'static str,
        source: IptablesError,
    },
    #[error(
        "EnableNFTables is set in net-conf.json, but the nft command is not installed (not \
         found on PATH): install the nftables package, or remove EnableNFTables to use iptables"
    )]
    NftMissing,
    #[error(
        "EnableNFTables is set in net-conf.json, but this kernel's nf_tables cannot be used \
         ({0}): load it (modprobe nf_tables; nat needs nft_chain_nat and nft_masq), or remove \
         EnableNFTables to use iptables"
    )]
    NftKernel(String),
    #[error("failed to set up the nftables tables ip flannel-ipv4 and ip6 flannel-ipv6: {0}")]
    Nftables(NftError),
    #[error("failed to remove the {} chains left by iptables mode: {source}", family.iptables_name())]
    IptablesCleanup {
        family: Family,
        source: IptablesError,
    },
    #[error("failed to remove the nftables tables left by nftables mode: {0}")]
    NftablesCleanup(NftError),
}

/// The packet filter net-conf.json's `EnableNFTables` asks for (flanneld never chooses one
/// by probing, unlike the plugins).
pub fn backend_for(enable_nftables: bool) -> Backend {
    if enable_nftables {
        Backend::Nftables
    } else {
        Backend::Iptables
    }
}

/// Fails early, with what is missing and what to do, when `backend` cannot work here.
/// iptables is not checked: its first use reports a missing binary clearly enough.
/// Blocking; runs in the calling thread's namespace.
pub fn check_available(backend: Backend) -> Result<(), RulesError> {
    match backend {
        Backend::Iptables => Ok(()),
        Backend::Nftables => nft::probe().map_err(unavailable),
    }
}

fn unavailable(e: NftError) -> RulesError {
    match e {
        NftError::NotInstalled(_) => RulesError::NftMissing,
        NftError::KernelUnsupported(why) => RulesError::NftKernel(why.trim_end().to_owned()),
        other => RulesError::Nftables(other),
    }
}

/// What this node's rules must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Per enabled family: the flannel network and this node's subnet.
    pub networks: Vec<(IpNet, IpNet)>,
    pub ip_masq: bool,
    pub forward: bool,
    pub random_fully_disabled: bool,
}

/// The rules of one mode.
#[derive(Debug, Clone)]
pub enum Rules {
    Iptables(Vec<RuleSet>),
    Nftables {
        tables: nftables::Tables,
        /// Families in use: failing to clean up iptables there is an error, elsewhere a
        /// warning (a host without IPv6 may well have no working ip6tables).
        families: Vec<Family>,
    },
}

impl Rules {
    /// Builds the rules, probing (blocking) whether masquerading can be fully random.
    pub fn build(backend: Backend, wanted: &Wanted) -> Rules {
        match backend {
            Backend::Iptables => Rules::Iptables(iptables_sets(wanted)),
            Backend::Nftables => Rules::Nftables {
                tables: nftables::Tables::new(nftables::tables(
                    &wanted.networks,
                    wanted.ip_masq,
                    wanted.forward,
                    nft_fully_random(wanted),
                )),
                families: wanted
                    .networks
                    .iter()
                    .map(|(n, _)| Family::of_net(n))
                    .collect(),
            },
        }
    }

    pub fn mode(&self) -> Backend {
        match self {
            Rules::Iptables(_) => Backend::Iptables,
            Rules::Nftables { .. } => Backend::Nftables,
        }
    }

    /// Writes whatever is missing or altered; returns how many rule sets were written
    /// (iptables: chains; nftables: the one transaction). Blocking.
    pub fn ensure(&self) -> Result<usize, RulesError> {
        match self {
            Rules::Iptables(sets) => {
                let mut written = 0;
                for set in sets {
                    let changed = set.ensure().map_err(|source| RulesError::Iptables {
                        chain: set.chain,
                        source,
                    })?;
                    written += usize::from(changed);
                }
                Ok(written)
            }
            Rules::Nftables { tables, .. } => tables
                .ensure()
                .map(usize::from)
                .map_err(RulesError::Nftables),
        }
    }

    /// Deletes what the other mode leaves: our nft tables in iptables mode; our iptables
    /// chains and the jumps into them in nftables mode. Returns what was removed. Blocking.
    pub fn remove_other_mode(&self) -> Result<Vec<String>, RulesError> {
        match self {
            Rules::Iptables(_) => nftables::remove_tables().map_err(RulesError::NftablesCleanup),
            Rules::Nftables { families, .. } => {
                let mut removed = Vec::new();
                for family in Family::ALL {
                    match iptables::remove_chains(family) {
                        Ok(chains) => removed.extend(
                            chains
                                .iter()
                                .map(|c| format!("{} {c}", family.iptables_name())),
                        ),
                        // No iptables at all: nothing can have made iptables rules here.
                        Err(IptablesError::Spawn { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) if families.contains(&family) => {
                            return Err(RulesError::IptablesCleanup { family, source })
                        }
                        Err(e) => log::warn!(
                            "could not check for {} chains of iptables mode: {e}",
                            family.iptables_name()
                        ),
                    }
                }
                Ok(removed)
            }
        }
    }
}

fn iptables_sets(wanted: &Wanted) -> Vec<RuleSet> {
    let mut sets = Vec::new();
    for &(network, subnet) in &wanted.networks {
        let family = Family::of_net(&network);
        if wanted.ip_masq {
            let random = !wanted.random_fully_disabled && probe_random_fully(family);
            sets.push(masq_rules(network, subnet, random));
        }
        if wanted.forward {
            sets.push(forward_rules(network));
        }
    }
    sets
}

fn nft_fully_random(wanted: &Wanted) -> bool {
    if !wanted.ip_masq || wanted.random_fully_disabled || wanted.networks.is_empty() {
        return false;
    }
    let families: Vec<TableFamily> = wanted
        .networks
        .iter()
        .map(|(n, _)| Family::of_net(n).into())
        .collect();
    match nftables::probe_fully_random(&families) {
        Ok(()) => true,
        Err(e) => {
            log::info!("masquerading without fully-random, which nft or the kernel lacks: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(v6: bool) -> Wanted {
        let mut networks = vec![(
            "10.244.0.0/16".parse().unwrap(),
            "10.244.3.0/24".parse().unwrap(),
        )];
        if v6 {
            networks.push((
                "fc00::/48".parse().unwrap(),
                "fc00:0:0:3::/64".parse().unwrap(),
            ));
        }
        Wanted {
            networks,
            ip_masq: true,
            forward: true,
            // Keeps build() from probing anything: unit tests touch no kernel.
            random_fully_disabled: true,
        }
    }

    #[test]
    fn enable_nftables_picks_the_mode() {
        assert_eq!(backend_for(true), Backend::Nftables);
        assert_eq!(backend_for(false).to_string(), "iptables");
        assert_eq!(check_available(Backend::Iptables).ok(), Some(()));
    }

    #[test]
    fn build_follows_mode_and_families() {
        let ipt = Rules::build(Backend::Iptables, &wanted(true));
        let Rules::Iptables(sets) = &ipt else {
            panic!("{ipt:?}")
        };
        assert_eq!(sets.len(), 4);
        assert!(sets
            .iter()
            .all(|s| !s.rules.concat().contains(&"--random-fully".to_owned())));

        let nft = Rules::build(Backend::Nftables, &wanted(false));
        assert_eq!(nft.mode(), Backend::Nftables);
        let Rules::Nftables { tables, families } = &nft else {
            panic!("{nft:?}")
        };
        assert_eq!(
            families,
            &[Family::V4],
            "ip6tables leftovers are best effort"
        );
        let script = tables.script();
        assert!(script.contains("masquerade\n") && !script.contains("fully-random"));
        assert!(script.contains("add table ip6 flannel-ipv6 {"));
    }

    #[test]
    fn unusable_nft_says_what_is_missing_and_what_to_do() {
        let missing = unavailable(NftError::NotInstalled(std::io::ErrorKind::NotFound.into()));
        assert_eq!(
            missing.to_string(),
            "EnableNFTables is set in net-conf.json, but the nft command is not installed (not \
             found on PATH): install the nftables package, or remove EnableNFTables to use iptables"
        );
        let kernel = unavailable(NftError::KernelUnsupported(
            "Error: Could not process rule: Operation not supported\n".into(),
        ));
        assert_eq!(
            kernel.to_string(),
            "EnableNFTables is set in net-conf.json, but this kernel's nf_tables cannot be used \
             (Error: Could not process rule: Operation not supported): load it (modprobe \
             nf_tables; nat needs nft_chain_nat and nft_masq), or remove EnableNFTables to use \
             iptables"
        );
    }
}

//! Which packet filter carries a set of rules: iptables (`iptables-restore`) or nftables
//! (`nft`). bridge's `ipMasqBackend` and portmap's `backend` choose one per request, flanneld's
//! `EnableNFTables` once per run; all of them name and probe the two the same way.

use std::fmt;

use super::{iptables, nft};
use crate::Family;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Iptables,
    Nftables,
}

/// A configured backend name that is neither `iptables` nor `nftables`; each caller words
/// the refusal as its upstream does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?}")]
pub struct UnknownBackend(pub String);

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        }
    }

    /// The backend a configuration names, spelled exactly as upstream accepts it.
    pub fn from_name(name: &str) -> Result<Backend, UnknownBackend> {
        match name {
            "iptables" => Ok(Backend::Iptables),
            "nftables" => Ok(Backend::Nftables),
            other => Err(UnknownBackend(other.to_owned())),
        }
    }

    /// Whether its tools work here (upstream's `SupportsIPTables` / `SupportsNFTables`):
    /// iptables when either family's does, nftables when `nft` can list tables. Blocking;
    /// runs in the calling thread's network namespace.
    pub fn usable(self) -> bool {
        match self {
            Backend::Iptables => Family::ALL.into_iter().any(iptables::usable),
            Backend::Nftables => nft::usable(),
        }
    }

    /// Upstream's choice for a plugin: a configured name is used as given; without one,
    /// iptables unless it is unusable here and nftables is usable.
    pub fn choose(configured: Option<&str>) -> Result<Backend, UnknownBackend> {
        Backend::choose_with(configured, Backend::usable)
    }

    /// [`Backend::choose`] with the usability probe given (which unit tests fake). Probes
    /// only what the decision needs, in upstream's order.
    pub fn choose_with(
        configured: Option<&str>,
        usable: impl Fn(Backend) -> bool,
    ) -> Result<Backend, UnknownBackend> {
        match configured {
            Some(name) => Backend::from_name(name),
            None if !usable(Backend::Iptables) && usable(Backend::Nftables) => {
                Ok(Backend::Nftables)
            }
            None => Ok(Backend::Iptables),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn configured_names_are_taken_as_given() {
        let never = |_| panic!("nothing is probed when a backend is configured");
        assert_eq!(
            Backend::choose_with(Some("nftables"), never),
            Ok(Backend::Nftables)
        );
        assert_eq!(
            Backend::choose_with(Some("iptables"), never),
            Ok(Backend::Iptables)
        );
        assert_eq!(
            Backend::choose_with(Some("NFTables"), never),
            Err(UnknownBackend("NFTables".into()))
        );
    }

    #[test]
    fn without_a_name_iptables_unless_only_nftables_works() {
        let probed = RefCell::new(Vec::new());
        let probed = &probed;
        let works = |ipt: bool, nft: bool| {
            move |b: Backend| {
                probed.borrow_mut().push(b);
                match b {
                    Backend::Iptables => ipt,
                    Backend::Nftables => nft,
                }
            }
        };
        assert_eq!(
            Backend::choose_with(None, works(true, true)),
            Ok(Backend::Iptables)
        );
        assert_eq!(
            *probed.borrow(),
            [Backend::Iptables],
            "nft is not probed then"
        );
        probed.borrow_mut().clear();
        assert_eq!(
            Backend::choose_with(None, works(false, true)),
            Ok(Backend::Nftables)
        );
        assert_eq!(
            Backend::choose_with(None, works(false, false)),
            Ok(Backend::Iptables)
        );
        assert_eq!(Backend::Nftables.to_string(), "nftables");
    }
}

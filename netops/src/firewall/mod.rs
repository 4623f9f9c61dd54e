//! Packet-filter programming: iptables through `iptables-restore` batches, nftables through
//! `nft -f -` transactions. Both front-ends are run by [`tool`], never through a shell.
//! [`Backend`] says which of the two carries a set of rules; [`sigterm`] keeps a runtime's
//! SIGTERM from stopping a change half way.

mod backend;
pub mod iptables;
pub mod nfquery;
pub mod nft;
pub mod sigterm;
mod tool;

pub use backend::{Backend, UnknownBackend};

//! Packet-filter programming: iptables through `iptables-restore` batches, nftables through
//! `nft -f -` transactions. Both front-ends are run by [`tool`], never through a shell.
//! [`sigterm`] keeps a runtime's SIGTERM from stopping a change half way.

pub mod iptables;
pub mod nfquery;
pub mod nft;
pub mod sigterm;
mod tool;

//! Packet-filter programming: iptables through `iptables-restore` batches, nftables through
//! `nft -f -` transactions. Both front-ends are run by [`tool`], never through a shell.

pub mod iptables;
pub mod nfquery;
pub mod nft;
mod tool;

//! Packet-filter programming. Only iptables (through `iptables-restore` batches) today; the
//! nftables backend will sit beside it.

pub mod iptables;

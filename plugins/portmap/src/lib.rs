//! The portmap CNI plugin: host-port forwarding to a container through NAT rules.
//!
//! [`plugin::Portmap`] is the CNI edge (the `portmap` name of the multicall executable); the
//! rest is config parsing, rule generation, the firewall backends (iptables, nftables) and
//! the ADD/DEL/CHECK flows.

pub mod backend;
pub mod chains;
pub mod config;
pub mod error;
pub mod host;
pub mod iptables_backend;
pub mod nft_backend;
pub mod ops;
pub mod plugin;

pub use config::{PortMapConf, PortMapping};
pub use error::PortmapError;

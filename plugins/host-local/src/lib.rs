//! host-local IPAM: hands out addresses from configured ranges and records them in a directory
//! shared with (and laid out exactly like) upstream's Go plugin, so both can run on one node.
//!
//! Flow: [`config::load`] decodes the plugin's stdin (Go `encoding/json` rules, upstream's error
//! texts) into an [`IpamConfig`]; [`ipam`] runs ADD/DEL/CHECK/GC against the [`store::Store`],
//! taking one address per [`range_set::RangeSet`] via [`allocator::allocate`].

pub mod allocator;
pub mod args;
pub mod config;
pub mod dns;
pub mod error;
pub mod ip;
pub mod ipam;
pub mod plugin;
pub mod range;
pub mod range_set;
pub mod store;

pub use config::{IpamConfig, RouteSpec};
pub use error::Error;

//! The flannel CNI meta-plugin: turns flanneld's `subnet.env` plus the user's `delegate`
//! settings into a bridge (or other) plugin config, remembers it per container, and replays
//! it on DEL.
//!
//! [`plugin::Flannel`] holds the CNI verbs (the `flannel` name of the multicall executable);
//! the other modules are plain data and file handling, testable without executing plugins.

pub mod config;
pub mod daemon;
pub mod delegate_conf;
pub mod error;
pub mod gc;
pub mod ipam_routes;
pub mod plugin;
pub mod store;
pub mod subnet;

pub use config::FlannelConf;
pub use error::FlannelError;

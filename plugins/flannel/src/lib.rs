//! The flannel CNI meta-plugin: turns flanneld's `subnet.env` plus the user's `delegate`
//! settings into a bridge (or other) plugin config, remembers it per container, and replays
//! it on DEL.
//!
//! The process edge (skel, delegate execution) lives in the binary; everything here is
//! plain data and file handling so it can be tested without executing plugins.

pub mod config;
pub mod daemon;
pub mod delegate_conf;
pub mod error;
pub mod gc;
pub mod ipam_routes;
pub mod store;
pub mod subnet;

pub use config::FlannelConf;
pub use error::FlannelError;

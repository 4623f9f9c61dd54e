//! CNI protocol types and the file formats flannel shares between its daemon and its CNI plugin.
//!
//! Everything here is pure (no I/O). Output that upstream
//! produces with Go's `encoding/json` is reproduced byte for byte ([`gojson::encode`]); input is
//! decoded with Go's case-insensitive key matching ([`gojson::from_slice`]).

pub mod args;
pub mod conf;
pub mod env;
pub mod error;
pub mod flannel;
pub mod goerror;
pub mod gofmt;
pub mod gojson;
pub mod result;
pub mod subnet_env;
pub mod version;

pub use conf::{NetConf, NetConfList};
pub use env::{CniEnv, Command};
pub use error::{codes, CniError};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::CniVersion;

//! Running CNI plugins the way a container runtime does.
//!
//! [`PluginDir`] decides which implementation of each plugin a test runs
//! (ours, the reference Go build, or a mix); [`Driver`] invokes them through
//! libcni via the `cnidriver` helper, inside a host namespace.

mod conflist;
mod driver;
mod failure;
mod plugin_dir;

pub use conflist::kube_flannel_conflist;
pub use driver::{Attachment, Driver, Invocation, Verb};
pub use failure::CniFailure;
pub use plugin_dir::{
    our_bin_dir, Impl, PluginDir, PluginDirError, BIN_DIR_ENV, OUR_PLUGINS, REFERENCE_DIR,
};

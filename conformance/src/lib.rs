//! Test bed for flannel-rs conformance tests.
//!
//! Everything here drives real plugins and daemons the way production does,
//! but only inside network namespaces the tests create:
//!
//! - [`netns`]: named namespaces with panic-safe cleanup;
//! - [`topology`]: an underlay of "hosts" on two L2 segments joined by a router;
//! - [`etcd`]: a throw-away etcd server, in a namespace or on loopback;
//! - [`etcd_metrics`]: the gRPC calls etcd served, from its own Prometheus counters;
//! - [`cni`]: plugin directories (ours / reference / mixed) and a driver that
//!   calls plugins through libcni (`conformance/cnidriver`, Go);
//! - [`flanneld`]: our flanneld on a host, etcd or kube mode: start, ready, restart, stop, `/status`;
//! - [`inspect`]: kernel state inside a namespace as JSON;
//! - [`tls`]: a throw-away CA (openssl) for etcd over TLS;
//! - [`programs`]: tests run only programs that `scripts/setup.sh` installs;
//! - [`wireguard_go`]: an independent WireGuard peer (wireguard-go configured by `wg`);
//! - [`reach`]: TCP/UDP servers in pod namespaces and parallel probes between them;
//! - [`support`]: what each family of conformance tests shares;
//! - [`netpol`]: a kube-mode flanneld enforcing NetworkPolicy, and e2e's netpol model objects.
//!
//! The bed fails loudly instead of skipping: the suite runs as root in CI,
//! and a missing tool is a broken machine, not a reason to pass.

pub mod cmd;
pub mod cni;
pub mod etcd;
pub mod etcd_metrics;
pub mod flanneld;
pub mod inspect;
pub mod kubeapi;
pub mod netns;
pub mod netpol;
pub mod programs;
pub mod reach;
pub mod support;
pub mod tls;
pub mod topology;
pub mod wireguard_go;

pub use cmd::CmdError;
pub use cni::{
    kube_flannel_conflist, Attachment, CniFailure, Driver, Impl, Invocation, PluginDir,
    PluginDirError, Verb,
};
pub use etcd::{Etcd, EtcdError, EtcdOptions, EtcdTls};
pub use netns::{Netns, NetnsError};
pub use tls::{FileNaming, TestCa, TlsError};
pub use topology::{Host, Segment, Underlay};

use std::path::{Path, PathBuf};

/// The repository root (parent of this crate).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("conformance crate lives inside the workspace")
}

/// `<workspace>/target`, where cargo puts our binaries and setup.sh the driver.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

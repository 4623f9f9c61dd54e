//! flanneld: the flannel node daemon.
//!
//! It claims a subnet for this node in etcd (`subnet`), publishes how to reach it, follows
//! the other nodes' claims and programs the kernel through a backend (`backend`), keeps the
//! masquerading/forwarding rules in place (`masq`) and writes `subnet.env` for the CNI plugin.
//! [`daemon::run`] wires these together; `main.rs` only parses flags.

pub mod backend;
pub mod daemon;
pub mod docker_opts;
pub mod goflag;
pub mod health;
pub mod iface;
#[cfg(feature = "kube")]
pub mod k8s;
pub mod logger;
pub mod masq;
pub mod metrics;
pub mod netpol;
pub mod notify;
pub mod options;
pub mod state;
pub mod status;
pub mod stop;
pub mod subnet;

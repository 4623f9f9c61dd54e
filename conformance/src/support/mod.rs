//! What the conformance tests of one family share (`tests/<family>_*.rs`), kept in the library
//! so every test binary links the whole of it and none carries its own copy.
//!
//! - [`bridge`]: conflists, plugin sets, side-by-side runs against the reference plugins,
//!   normalised kernel snapshots (`bridge_*`);
//! - [`flannel`]: a node's flannel files, pods with listeners, probes (`flannel_*`, `portmap_*`,
//!   `cni_storm`);
//! - [`flanneld`]: an etcd cluster on the underlay with our flanneld per host, pods, full-mesh
//!   checks, and [`flanneld::kube`] for kube mode (`flanneld_*`, `etcd_auth`,
//!   `wireguard_interop`);
//! - [`flanneld_faults`]: counted pings, a frozen etcd as a starting gate, kernel-state
//!   snapshots (`flanneld_faults*`, `flanneld_kube_faults`);
//! - [`hostile`]: direct plugin execution and a snapshot of everything a plugin could touch
//!   (`hostile_input`, `file_modes`, `ipam_fs_faults`);
//! - [`netpol`]: the two-node e2e netpol cluster and its cases (`netpol_*`).

pub mod bridge;
pub mod flannel;
pub mod flanneld;
pub mod flanneld_faults;
pub mod hostile;
pub mod netpol;

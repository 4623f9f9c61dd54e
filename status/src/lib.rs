//! flanneld's `/status` document and how to fetch it, shared by the daemon that writes it and
//! the programs that read it (`flannelctl`, the flannel CNI plugin's STATUS and ADD diagnosis).
//! Synchronous and small on purpose: the plugin is a short-lived process with no async
//! runtime, and `flannelctl` should not link the daemon.

pub mod http;
pub mod netpol;
pub mod report;

pub use netpol::{FailedPolicy, NetpolReport, PodPolicies};
pub use report::{
    DuplicateReport, ErrorReport, LeaseReport, PeerReport, StatusReport, WireguardDeviceReport,
    WireguardPeerReport, WireguardReport,
};

//! The conflist users have today: kube-flannel's cni-conf.json.

use std::path::Path;

use serde_json::{json, Value};

/// kube-flannel's conflist, key for key, except where files go. All hosts of a test bed share
/// one filesystem, so the defaults (/run/flannel/subnet.env, /var/lib/cni/flannel,
/// /var/lib/cni/networks) would make every host read one subnet.env and allocate from one IPAM
/// store; flannel's `subnetFile` and `dataDir` and its `ipam` key (which it forwards to
/// host-local) point each node at its own files: `node_dir/flannel` and `node_dir/ipam`.
pub fn kube_flannel_conflist(version: &str, subnet_file: &Path, node_dir: &Path) -> Value {
    json!({
        "name": "cbr0",
        "cniVersion": version,
        "plugins": [
            {
                "type": "flannel",
                "delegate": {"hairpinMode": true, "isDefaultGateway": true},
                "subnetFile": subnet_file,
                "dataDir": node_dir.join("flannel"),
                "ipam": {"dataDir": node_dir.join("ipam")}
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

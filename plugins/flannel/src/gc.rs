//! CNI 1.1 GC input: which containers the runtime still considers valid.

use std::collections::BTreeSet;

use serde_json::Value;

pub use netconf::conf::ATTACHMENT_KEYS;

/// Container IDs named by either attachment list of a GC request
/// ([`netconf::conf::gc_attachments`]).
pub fn valid_container_ids(conf: &Value) -> Result<BTreeSet<String>, String> {
    netconf::conf::gc_attachments(conf)
        .map(|list| list.into_iter().map(|(id, _)| id).collect())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_of_both_lists_once_each() {
        let conf = json!({
            "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
            "cni.dev/attachments": [{"containerid": "b", "ifname": "eth0"}, {"containerID": "a", "ifname": "eth1"}]
        });
        assert_eq!(
            valid_container_ids(&conf)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert!(
            valid_container_ids(&json!({"cni.dev/attachments": [{"containerID": 1}]})).is_err()
        );
    }
}

//! CNI 1.1 GC input: which attachments the runtime still considers valid.

use std::collections::BTreeSet;

use netconf::gojson;
use serde_json::Value;

/// Both keys libcni sends: the current name and the pre-release one (`cni.dev/attachments`).
pub const ATTACHMENT_KEYS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];

/// Container IDs named by either attachment list of a GC request. Absent or `null` lists
/// name nothing, as in upstream's IPAM GC: every attachment not listed is stale.
pub fn valid_container_ids(conf: &Value) -> Result<BTreeSet<String>, String> {
    let mut ids = BTreeSet::new();
    let Some(obj) = conf.as_object() else {
        return Ok(ids);
    };
    for key in ATTACHMENT_KEYS {
        let list = match obj.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(format!(
                    "{key}: expected an array, found {}",
                    gojson::kind(other)
                ))
            }
        };
        for item in list {
            let entry = item
                .as_object()
                .ok_or_else(|| format!("{key}: expected objects, found {}", gojson::kind(item)))?;
            match gojson::get_folded(entry, "containerID") {
                Some(Value::String(id)) => {
                    ids.insert(id.clone());
                }
                None => {}
                Some(other) => {
                    return Err(format!(
                        "{key}: containerID is a {}, not a string",
                        gojson::kind(other)
                    ))
                }
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_keys_count() {
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
    }

    #[test]
    fn absent_or_null_lists_name_nothing() {
        assert!(valid_container_ids(&json!({"name": "x"}))
            .unwrap()
            .is_empty());
        assert!(
            valid_container_ids(&json!({"cni.dev/valid-attachments": null}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_lists_are_errors() {
        assert!(valid_container_ids(&json!({"cni.dev/valid-attachments": {}})).is_err());
        assert!(valid_container_ids(&json!({"cni.dev/valid-attachments": ["a"]})).is_err());
        assert!(
            valid_container_ids(&json!({"cni.dev/attachments": [{"containerID": 1}]})).is_err()
        );
    }
}

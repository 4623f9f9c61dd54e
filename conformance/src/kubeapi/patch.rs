//! The two patch flavours clients send: JSON merge patch (RFC 7386) and the strategic merge
//! patch, which differs in that some lists merge item by item on a key instead of being
//! replaced. Which lists those are is a property of the kind (see [`super::kinds`]).

use serde_json::{Map, Value};

/// Lists merged by key: paths from the object root and the key field.
pub type MergeKeys = [(&'static [&'static str], &'static str)];

/// RFC 7386: objects merge recursively, `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    strategic_at(target, patch, &mut Vec::new(), &[]);
}

/// Strategic merge patch, with the merge keys of the Node type.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let node = super::kinds::by_resource("nodes").expect("nodes are served");
    strategic_merge_patch_with(target, patch, node.merge_keys);
}

/// Strategic merge patch with the merge keys of any kind.
pub fn strategic_merge_patch_with(target: &mut Value, patch: &Value, keys: &MergeKeys) {
    strategic_at(target, patch, &mut Vec::new(), keys);
}

fn merge_key(path: &[String], keys: &MergeKeys) -> Option<&'static str> {
    keys.iter()
        .find(|(p, _)| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a == b))
        .map(|(_, k)| *k)
}

fn strategic_at(target: &mut Value, patch: &Value, path: &mut Vec<String>, keys: &MergeKeys) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let obj = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_map {
        if value.is_null() {
            obj.remove(key);
            continue;
        }
        path.push(key.clone());
        let key_field = merge_key(path, keys);
        match (key_field, value) {
            (Some(field), Value::Array(items)) => {
                let list = obj
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                merge_list(list, items, field);
            }
            _ => {
                let slot = obj.entry(key.clone()).or_insert(Value::Null);
                strategic_at(slot, value, path, keys);
            }
        }
        path.pop();
    }
}

/// Items with a matching key are merged into, others appended.
fn merge_list(list: &mut Value, items: &[Value], field: &str) {
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    let existing = list.as_array_mut().expect("made an array above");
    for item in items {
        let key = item.get(field);
        match existing
            .iter_mut()
            .find(|e| key.is_some() && e.get(field) == key)
        {
            Some(slot) => merge_patch(slot, item),
            None => existing.push(item.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_patch_merges_conditions_by_type_and_annotations_by_key() {
        let mut node = json!({
            "metadata": {"annotations": {"a": "1", "b": "2"}},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"}
            ]}
        });
        strategic_merge_patch(
            &mut node,
            &json!({
                "metadata": {"annotations": {"b": null, "c": "3"}},
                "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"}]}
            }),
        );
        assert_eq!(node["metadata"]["annotations"], json!({"a": "1", "c": "3"}));
        assert_eq!(node["status"]["conditions"][0]["status"], "True");
        assert_eq!(
            node["status"]["conditions"][1],
            json!({"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp"})
        );
    }

    #[test]
    fn merge_patch_replaces_lists() {
        let mut node = json!({"status": {"conditions": [{"type": "Ready"}]}});
        merge_patch(
            &mut node,
            &json!({"status": {"conditions": [{"type": "NetworkUnavailable"}]}}),
        );
        assert_eq!(
            node["status"]["conditions"],
            json!([{"type": "NetworkUnavailable"}])
        );
    }
}

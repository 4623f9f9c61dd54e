//! The two patch flavours clients send to a Node: JSON merge patch (RFC 7386) and the
//! strategic merge patch, which differs in that some lists merge item by item on a key
//! instead of being replaced.

use serde_json::{Map, Value};

/// Lists of a Node that strategic merge patches merge by key (`patchMergeKey` in the API
/// types); every other list is replaced.
const MERGE_KEYS: &[(&[&str], &str)] = &[
    (&["status", "conditions"], "type"),
    (&["status", "addresses"], "type"),
    (&["spec", "taints"], "key"),
];

/// RFC 7386: objects merge recursively, `null` removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    strategic_at(target, patch, &mut Vec::new(), false);
}

/// Strategic merge patch, with the merge keys of the Node type.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    strategic_at(target, patch, &mut Vec::new(), true);
}

fn merge_key(path: &[String]) -> Option<&'static str> {
    MERGE_KEYS
        .iter()
        .find(|(p, _)| p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a == b))
        .map(|(_, k)| *k)
}

fn strategic_at(target: &mut Value, patch: &Value, path: &mut Vec<String>, strategic: bool) {
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
        let key_field = if strategic { merge_key(path) } else { None };
        match (key_field, value) {
            (Some(field), Value::Array(items)) => {
                let list = obj
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                merge_list(list, items, field);
            }
            _ => {
                let slot = obj.entry(key.clone()).or_insert(Value::Null);
                strategic_at(slot, value, path, strategic);
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

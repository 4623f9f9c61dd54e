//! CNI 1.1 GC input: the attachments the runtime still considers valid.

use serde_json::Value;

use crate::gojson::{fields, At, Decoder, Step};

/// The key libcni sends and the pre-release one plugins also read.
pub const ATTACHMENT_KEYS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];

/// Both attachment lists of a GC request as `(containerID, ifname)` pairs, decoded as Go
/// decodes them into `[]types.GCAttachment` fields of a `GCArgs` struct. Absent or `null`
/// lists name nothing: every attachment not listed is stale.
pub fn gc_attachments(conf: &Value) -> Step<Vec<(String, String)>> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    if let Some(obj) = d.object(&At::top(), conf, "GCArgs") {
        for (field, v) in fields(obj, &ATTACHMENT_KEYS) {
            let at = At::top().field("GCArgs", field);
            for item in d.array(&at, v, "[]types.GCAttachment").unwrap_or_default() {
                if let Some(m) = d.object(&at, item, "types.GCAttachment") {
                    let (mut id, mut ifname) = (String::new(), String::new());
                    for (f, v) in fields(m, &["containerID", "ifname"]) {
                        let slot = if f == "ifname" { &mut ifname } else { &mut id };
                        d.string(&at.field("GCAttachment", f), v, slot);
                    }
                    out.push((id, ifname));
                }
            }
        }
    }
    d.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_keys_count_in_any_case() {
        let conf = json!({
            "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
            "CNI.dev/attachments": [{"containerid": "b", "IFNAME": "eth1"}, null],
            "name": "x"
        });
        assert_eq!(
            gc_attachments(&conf).unwrap(),
            [("a".into(), "eth0".into()), ("b".into(), "eth1".into())]
        );
        assert!(gc_attachments(&json!({"cni.dev/attachments": null}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_lists_are_go_type_errors() {
        let err = |v: Value| gc_attachments(&v).unwrap_err().to_string();
        assert_eq!(
            err(json!({"cni.dev/valid-attachments": {}})),
            "json: cannot unmarshal object into Go struct field GCArgs.cni.dev/valid-attachments of type []types.GCAttachment"
        );
        assert_eq!(
            err(json!({"cni.dev/valid-attachments": ["a"]})),
            "json: cannot unmarshal string into Go struct field GCArgs.cni.dev/valid-attachments of type types.GCAttachment"
        );
        assert_eq!(
            err(json!({"cni.dev/attachments": [{"containerID": 1}]})),
            "json: cannot unmarshal number into Go struct field GCAttachment.cni.dev/attachments.containerID of type string"
        );
    }
}

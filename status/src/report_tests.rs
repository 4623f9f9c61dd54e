use super::*;

#[test]
fn a_daemon_of_another_version_still_decodes() {
    // An older daemon without the counters, and a newer one with a field this reader lacks.
    let r: StatusReport = serde_json::from_str(
        r#"{"ready": false, "reason": "waiting for network config", "lease": null,
            "last_error": null, "something_new": {"x": 1}}"#,
    )
    .unwrap();
    assert!(!r.ready);
    assert_eq!(r.reason.as_deref(), Some("waiting for network config"));
    assert_eq!((r.peers.len(), r.drift_repairs, r.lease_errors), (0, 0, 0));
    assert!(r.lease.is_none() && r.wireguard.is_none() && r.network_policy.is_none());
}

#[test]
fn a_document_without_readiness_is_not_a_status() {
    let e = serde_json::from_str::<StatusReport>(r#"{"status": "ok"}"#).unwrap_err();
    assert!(e.to_string().contains("missing field `ready`"), "{e}");
}

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use serde_json::json;

use super::client::Answer;
use super::watch::{step, Step};
use super::wire::{self, code, key_path, lease_from_node, EventKind, Node, NodeError, Response};
use super::*;
use crate::subnet::peers::Change;
use crate::subnet::LeaseAttrs;

const DIR: &str = "/coreos.com/network/subnets";

fn node(key: &str, value: &str, ttl: Option<i64>, index: u64) -> Node {
    Node {
        key: key.into(),
        value: Some(value.into()),
        ttl,
        modified_index: index,
        created_index: index,
        ..Node::default()
    }
}

fn registry(prefix: &str) -> V2Registry {
    let cfg = EtcdConfig {
        endpoints: vec!["http://127.0.0.1:2379".into()],
        prefix: prefix.into(),
        ..EtcdConfig::default()
    };
    V2Registry::connect(&cfg, Duration::from_secs(86400)).unwrap()
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status: StatusCode::from_u16(status).unwrap(),
        etcd_index: Some(42),
        body: body.as_bytes().to_vec().into(),
        endpoint: "http://10.0.0.1:2379".into(),
    }
}

#[test]
fn values_written_by_flannel_v0_10_to_v0_17_decode_with_any_key_case() {
    // What flannel v0.17 stored (no PublicIPv6 key at all), then hand-edited spellings.
    for value in [
        r#"{"PublicIP":"192.168.1.3","BackendType":"vxlan","BackendData":{"VtepMAC":"c6:d2:32:6f:8f:44","VNI":1}}"#,
        r#"{"publicip":"192.168.1.3","backendtype":"vxlan","backenddata":{"VtepMAC":"c6:d2:32:6f:8f:44","VNI":1}}"#,
        r#"{"PUBLICIP":"192.168.1.3","BackendTYPE":"vxlan","Backenddata":{"VtepMAC":"c6:d2:32:6f:8f:44","VNI":1},"Extra":7}"#,
    ] {
        let lease = lease_from_node(&node(&format!("{DIR}/10.5.3.0-24"), value, Some(600), 9))
            .unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(lease.subnet, "10.5.3.0/24".parse().unwrap());
        assert_eq!(lease.ipv6_subnet, None);
        assert!(lease.enable_ipv4 && !lease.enable_ipv6);
        assert_eq!(lease.attrs.public_ip, Ipv4Addr::new(192, 168, 1, 3));
        assert_eq!(lease.attrs.backend_type, "vxlan");
        assert_eq!(
            lease.attrs.backend_data,
            Some(json!({"VtepMAC": "c6:d2:32:6f:8f:44", "VNI": 1}).into())
        );
        let left = lease
            .expiration
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600));
    }
}

#[test]
fn our_values_are_what_old_flannel_reads() {
    let attrs = LeaseAttrs {
        public_ip: Ipv4Addr::new(10, 0, 0, 7),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: Some(json!({"VtepMAC": "02:42:ac:11:00:02", "VNI": 1}).into()),
        backend_v6_data: None,
    };
    let text = attrs.to_json();
    // Go's decoder (old flannel) ignores the null PublicIPv6 it does not know.
    assert_eq!(
        text,
        r#"{"PublicIP":"10.0.0.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VtepMAC":"02:42:ac:11:00:02","VNI":1}}"#
    );
    let back = lease_from_node(&node(&format!("{DIR}/10.5.7.0-24"), &text, None, 1)).unwrap();
    assert_eq!(back.attrs, attrs);
}

#[test]
fn nodes_that_are_not_leases_are_rejected_by_kind() {
    assert!(matches!(
        lease_from_node(&node(&format!("{DIR}/reserved-by-hand"), "{}", None, 1)),
        Err(NodeError::BadKey(_))
    ));
    let dir = Node {
        key: format!("{DIR}/10.5.1.0-24"),
        dir: true,
        ..Node::default()
    };
    assert!(matches!(lease_from_node(&dir), Err(NodeError::BadKey(_))));
    assert!(matches!(
        lease_from_node(&node(&format!("{DIR}/10.5.1.0-24"), "not json", None, 1)),
        Err(NodeError::BadValue { .. })
    ));
    assert!(matches!(
        lease_from_node(&node(
            &format!("{DIR}/10.5.1.0-24"),
            r#"{"PublicIP":"x"}"#,
            None,
            1
        )),
        Err(NodeError::BadValue { .. })
    ));
}

#[test]
fn key_paths_follow_the_prefix_and_escape_dual_stack_keys() {
    let reg = registry("/coreos.com/network/");
    assert_eq!(reg.config_key(), "/coreos.com/network/config");
    assert_eq!(reg.subnets_dir(), "/coreos.com/network/subnets");
    let v4 = reg.subnet_path("10.244.1.0/24".parse().unwrap(), None);
    assert_eq!(v4, "/coreos.com/network/subnets/10.244.1.0-24");
    assert_eq!(
        key_path(&v4),
        "/v2/keys/coreos.com/network/subnets/10.244.1.0-24"
    );
    let dual = reg.subnet_path(
        "10.244.1.0/24".parse().unwrap(),
        Some("fc00::/64".parse().unwrap()),
    );
    assert_eq!(
        key_path(&dual),
        "/v2/keys/coreos.com/network/subnets/10.244.1.0-24%26fc00%3A%3A-64"
    );
    assert_eq!(registry("my-net").config_key(), "my-net/config");
    assert_eq!(key_path("my net/config"), "/v2/keys/my%20net/config");
}

#[test]
fn form_bodies_escape_json_values() {
    assert_eq!(
        wire::form(&[("value", r#"{"a":"b c"}"#), ("prevExist", "false")]),
        "value=%7B%22a%22%3A%22b+c%22%7D&prevExist=false"
    );
}

#[test]
fn etcd_errors_keep_their_code_and_other_answers_say_what_came_back() {
    let body = r#"{"errorCode":105,"message":"Key already exists","cause":"/coreos.com/network/subnets/10.5.1.0-24","index":17}"#;
    let err = decode("create", "/k", answer(412, body)).unwrap_err();
    assert_eq!(err.code(), Some(code::NODE_EXIST));
    assert_eq!(
        err.to_string(),
        "etcd v2 create /k: Key already exists (code 105, cause \"/coreos.com/network/subnets/10.5.1.0-24\", index 17)"
    );
    // etcd 3.4+ without --enable-v2.
    let err = decode("get", "/k", answer(404, "404 page not found\n")).unwrap_err();
    assert_eq!(err.code(), None);
    assert_eq!(
        err.to_string(),
        "etcd at http://10.0.0.1:2379 does not serve the v2 API (HTTP 404 Not Found: 404 page not found)"
    );
    let err = decode("get", "/k", answer(200, "<html>")).unwrap_err();
    assert!(matches!(err, V2Error::Decode { .. }), "{err}");
    let ok = decode(
        "get",
        "/k",
        answer(200, r#"{"action":"get","node":{"key":"/k","value":"v","modifiedIndex":5,"createdIndex":5}}"#),
    )
    .unwrap();
    assert_eq!(ok.etcd_index, Some(42));
    assert_eq!(ok.response.node.unwrap().value.as_deref(), Some("v"));
}

#[test]
fn actions_map_to_writes_and_removals() {
    for a in ["set", "create", "update", "compareAndSwap"] {
        assert_eq!(wire::event_kind(a), Some(EventKind::Written), "{a}");
    }
    for a in ["delete", "compareAndDelete", "expire"] {
        assert_eq!(wire::event_kind(a), Some(EventKind::Gone), "{a}");
    }
    assert_eq!(wire::event_kind("get"), None);
}

fn event(action: &str, node: Node) -> Response {
    Response {
        action: action.into(),
        node: Some(node),
    }
}

#[test]
fn watch_events_become_changes_and_expiry_is_a_removal() {
    let value = r#"{"PublicIP":"192.168.1.9","BackendType":"vxlan","BackendData":{"VtepMAC":"02:00:00:00:00:09","VNI":1}}"#;
    let key = format!("{DIR}/10.5.9.0-24");
    match step(DIR, event("create", node(&key, value, Some(30), 70))) {
        Step::Changes { changes, next } => {
            assert_eq!(next, 71);
            assert!(
                matches!(&changes[..], [Change::Put(l)] if l.subnet == "10.5.9.0/24".parse().unwrap())
            );
        }
        other => panic!("{other:?}"),
    }
    let gone = Node {
        key: key.clone(),
        modified_index: 80,
        created_index: 80,
        ..Node::default()
    };
    assert_eq!(
        step(DIR, event("expire", gone)),
        Step::Changes {
            changes: vec![Change::Delete {
                subnet: "10.5.9.0/24".parse().unwrap(),
                ipv6_subnet: None
            }],
            next: 81
        }
    );
    // A bad record moves the index on without a change.
    assert_eq!(
        step(
            DIR,
            event("set", node(&format!("{DIR}/junk"), "{}", None, 90))
        ),
        Step::Changes {
            changes: vec![],
            next: 91
        }
    );
}

#[test]
fn the_directory_itself_changing_forces_a_relist() {
    let whole = Node {
        key: DIR.into(),
        dir: true,
        modified_index: 100,
        created_index: 100,
        ..Node::default()
    };
    assert_eq!(step(DIR, event("delete", whole)), Step::Relist);
    let response = Response {
        action: "delete".into(),
        node: None,
    };
    assert_eq!(step(DIR, response), Step::Relist);
}

#[test]
fn basic_auth_only_with_a_user() {
    assert_eq!(basic_auth("", "secret"), None);
    assert_eq!(
        basic_auth("flannel", "s3cret").as_deref(),
        Some("Basic Zmxhbm5lbDpzM2NyZXQ=")
    );
}

#[test]
fn endpoints_are_checked_up_front() {
    let bad = |e: &str| {
        let cfg = EtcdConfig {
            endpoints: vec![e.into()],
            ..EtcdConfig::default()
        };
        V2Registry::connect(&cfg, Duration::from_secs(1)).err()
    };
    assert!(matches!(bad("127.0.0.1:2379"), Some(V2Error::Endpoint(..))));
    assert!(matches!(bad("unix:///x"), Some(V2Error::Endpoint(..))));
    assert!(bad("http://127.0.0.1:2379/").is_none());
    let missing_ca = EtcdConfig {
        endpoints: vec!["https://127.0.0.1:2379".into()],
        cafile: "/nonexistent/ca.pem".into(),
        ..EtcdConfig::default()
    };
    let err = V2Registry::connect(&missing_ca, Duration::from_secs(1))
        .err()
        .unwrap();
    assert!(err.is_permanent(), "{err}");
    assert!(
        err.to_string()
            .starts_with("reading CA /nonexistent/ca.pem"),
        "{err}"
    );
}

#[test]
fn error_index_of_a_missing_directory_is_kept_for_the_watch() {
    let body = r#"{"errorCode":100,"message":"Key not found","cause":"/coreos.com/network/subnets","index":12}"#;
    match decode("list", DIR, answer(404, body)) {
        Err(V2Error::Api { error, .. }) => {
            assert_eq!(error.code, code::KEY_NOT_FOUND);
            assert_eq!(error.index, 12);
        }
        other => panic!("{:?}", other.map(|s| s.response)),
    }
}

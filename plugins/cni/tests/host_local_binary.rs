//! The Rust binary on its own (GC and STATUS, which the packaged Go plugin predates) and sharing
//! one store with the Go plugin under concurrent load.

mod support;

use std::collections::HashSet;

use support::{ours, run, snapshot, Call, Side, REFERENCE};

fn conf(version: &str, extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"gcnet","ipam":{{"type":"host-local","dataDir":"DIR","ranges":[[{{"subnet":"10.7.0.0/24"}}],[{{"subnet":"fd00:7::/120"}}]]}}{extra}}}"#
    )
}

#[test]
fn gc_releases_addresses_of_attachments_not_listed() {
    let side = Side::new(ours());
    for (id, ifname) in [
        ("keep", "eth0"),
        ("keep", "net1"),
        ("drop", "eth0"),
        ("legacy-keep", "eth0"),
    ] {
        assert_eq!(
            side.run(&Call::new("ADD", id).ifname(ifname), &conf("1.1.0", ""))
                .exit,
            0
        );
    }
    let dir = side.data_dir().join("gcnet");
    std::fs::write(dir.join("10.7.0.200"), "legacy-keep").unwrap();
    std::fs::write(dir.join("10.7.0.201"), "legacy-drop").unwrap();

    let gc = conf(
        "1.1.0",
        r#","cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"legacy-keep","ifname":"eth0"}]"#,
    );
    let out = side.run(&Call::new("GC", ""), &gc);
    assert_eq!((out.exit, out.stdout.as_str()), (0, ""));

    let mut left: Vec<String> = snapshot(&side.data_dir(), "gcnet")
        .unwrap()
        .into_keys()
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "10.7.0.2",
            "10.7.0.200",
            "10.7.0.5",
            "fd00:7::2",
            "fd00:7::5",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
    // Freed addresses are handed out again.
    let out = side.run(&Call::new("ADD", "new"), &conf("1.1.0", ""));
    assert_eq!(out.json()["ips"][0]["address"], "10.7.0.6/24");
}

#[test]
fn gc_without_valid_list_frees_everything() {
    let side = Side::new(ours());
    side.run(&Call::new("ADD", "a"), &conf("1.1.0", ""));
    assert_eq!(side.run(&Call::new("GC", ""), &conf("1.1.0", "")).exit, 0);
    let left: Vec<String> = snapshot(&side.data_dir(), "gcnet")
        .unwrap()
        .into_keys()
        .filter(|n| n.contains(':') || n.starts_with("10."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn status_is_ready() {
    let side = Side::new(ours());
    let out = side.run(&Call::new("STATUS", ""), &conf("1.1.0", ""));
    assert_eq!((out.exit, out.stdout.as_str()), (0, ""));
}

#[test]
fn result_in_1_1_0() {
    let side = Side::new(ours());
    let out = side.run(&Call::new("ADD", "a"), &conf("1.1.0", ""));
    let json = out.json();
    assert_eq!(json["cniVersion"], "1.1.0");
    assert_eq!(
        json["ips"][0],
        serde_json::json!({"address": "10.7.0.2/24", "gateway": "10.7.0.1"})
    );
    assert_eq!(
        json["ips"][1],
        serde_json::json!({"address": "fd00:7::2/120", "gateway": "fd00:7::1"})
    );
    assert!(json.get("interfaces").is_none() && json.get("dns").is_none());
}

#[test]
fn go_and_rust_plugins_share_one_store_without_duplicates() {
    let shared = Side::new(ours());
    let config =
        r#"{"cniVersion":"1.0.0","name":"mixed","ipam":{"dataDir":"DIR","subnet":"10.8.0.0/26"}}"#
            .replace("DIR", shared.data_dir().to_str().unwrap());
    let workers = 6;
    let per_worker = 12; // 72 requests for 61 addresses
    let outcomes: Vec<(String, support::Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let config = &config;
                s.spawn(move || {
                    (0..per_worker)
                        .map(|i| {
                            let binary = if (w + i) % 2 == 0 { ours() } else { REFERENCE };
                            let id = format!("w{w}-{i}");
                            let out = run(binary, &Call::new("ADD", &id), config);
                            (id, out)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut addresses = HashSet::new();
    let mut exhausted = 0;
    for (id, out) in &outcomes {
        if out.exit == 0 {
            let addr = out.json()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                addresses.insert(addr.clone()),
                "{addr} handed out twice (last to {id})"
            );
        } else {
            assert_eq!(out.json()["msg"], "failed to allocate for range 0: no IP addresses available in range set: 10.8.0.1-10.8.0.62");
            exhausted += 1;
        }
    }
    assert_eq!((addresses.len(), exhausted), (61, 11));
    let store = snapshot(&shared.data_dir(), "mixed").unwrap();
    for (id, out) in outcomes.iter().filter(|(_, o)| o.exit == 0) {
        let addr = out.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/26")
            .to_string();
        assert_eq!(store[&addr], format!("{id}\r\neth0"));
    }
}

//! Hostile input through the real plugin binaries: odd container ids, long interface names,
//! a CNI_NETNS that is no namespace, huge and deeply nested stdin, NUL bytes. Each gets a CNI
//! error JSON with a fitting code and a clear message, exits 1, and changes nothing: no file
//! under the plugins' directories (or anywhere a `..` could reach), no link, no rule.
//!
//! Upstream (cni.md §2): skel validates `CNI_CONTAINERID` against
//! `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` for ADD/DEL/CHECK (code 4 `invalid characters in
//! containerID`, details = the id) and the interface name (code 4) before the plugin runs;
//! ours do the same, so a `../` never reaches a path join.
//!
//! Environment values cannot carry NUL bytes (execve strings are NUL-terminated); the
//! in-process fuzzer (`fuzz/`, target `cni_skel_entry`) covers NULs in the environment.

use conformance::support::hostile::{Bed, NET};
use serde_json::json;

const PLUGINS: [&str; 4] = ["bridge", "host-local", "flannel", "portmap"];

#[test]
fn odd_container_ids_are_refused_before_any_path_is_built() {
    let bed = Bed::new("hcid").with_dirs();
    let escape = format!("fr-hostile-escape-{}", std::process::id());
    let ids = [
        format!("../../../../tmp/{escape}"),
        "..".to_string(),
        ".".to_string(),
        "a/b".to_string(),
        "-leading-dash".to_string(),
        "a;touch pwned".to_string(),
        "$(touch pwned)".to_string(),
        "`touch pwned`".to_string(),
        "a b".to_string(),
        "a|tee pwned".to_string(),
        "a\"b'c".to_string(),
        "a\nb".to_string(),
        "a*".to_string(),
        "caf\u{e9}".to_string(),
    ];
    for plugin in PLUGINS {
        for verb in ["ADD", "DEL", "CHECK"] {
            for id in &ids {
                let conf = bed.conf(plugin).to_string();
                let env = bed.env(verb, &[("CNI_CONTAINERID", id)]);
                let reply = bed.untouched(&format!("{plugin} {verb} {id:?}"), || {
                    bed.invoke(plugin, &env, conf.as_bytes())
                });
                let err = reply.assert_error(4, "invalid characters in containerID");
                assert_eq!(err["details"], json!(id), "{plugin} {verb}");
            }
        }
        let reply = bed.untouched("empty id", || bed.add(plugin, &[("CNI_CONTAINERID", "")]));
        reply.assert_error(4, "required env variables [CNI_CONTAINERID] missing");
    }
    assert!(!std::path::Path::new("/tmp").join(&escape).exists());
    assert!(!bed.work().join("pwned").exists());
}

#[test]
fn interface_names_the_kernel_cannot_take_are_refused() {
    let bed = Bed::new("hifn").with_dirs();
    let cases = [
        ("eth0123456789abc", "interface name is too long"),
        // 16 bytes in 8 characters: the kernel's limit is in bytes.
        (
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "interface name is too long",
        ),
        ("..", "interface name is . or .."),
        (
            "a/b",
            "interface name contains / or : or whitespace characters",
        ),
        (
            "a:b",
            "interface name contains / or : or whitespace characters",
        ),
        (
            "a\tb",
            "interface name contains / or : or whitespace characters",
        ),
    ];
    for plugin in PLUGINS {
        for (ifname, msg) in cases {
            let reply = bed.untouched(&format!("{plugin} ifname {ifname:?}"), || {
                bed.add(plugin, &[("CNI_IFNAME", ifname)])
            });
            reply.assert_error(4, msg);
        }
    }
}

#[test]
fn a_netns_that_is_not_a_namespace_is_refused_before_anything_is_created() {
    let bed = Bed::new("hnns").with_dirs();
    let regular = bed.regular_file().display().to_string();
    let dir = bed.work().display().to_string();
    for netns in [regular.as_str(), dir.as_str(), "/dev/null"] {
        for plugin in ["bridge", "flannel"] {
            let reply = bed.untouched(&format!("{plugin} netns {netns}"), || {
                bed.add(plugin, &[("CNI_NETNS", netns)])
            });
            // Upstream's code for this (a plain error from ns.GetNS) is 999 too.
            reply.assert_error(999, &format!("failed to open netns \"{netns}\""));
        }
    }
    let missing = bed.work().join("no-such-netns").display().to_string();
    let reply = bed.untouched("missing netns", || {
        bed.add("bridge", &[("CNI_NETNS", &missing)])
    });
    reply.assert_error(999, "failed to open netns");

    // IPAM never enters the namespace, upstream's host-local ignores CNI_NETNS, and so does
    // ours: the allocation works and DEL gives it back.
    let ok = bed.add("host-local", &[("CNI_NETNS", &regular)]);
    assert_eq!(ok.status, Some(0), "{ok:?}");
    let conf = bed.conf("host-local").to_string();
    let del = bed.invoke(
        "host-local",
        &bed.env("DEL", &[("CNI_NETNS", &regular)]),
        conf.as_bytes(),
    );
    assert_eq!(del.status, Some(0), "{del:?}");
    let left: Vec<_> = std::fs::read_dir(bed.ipam_dir().join(NET))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(left.is_empty(), "reservation left: {left:?}");
}

#[test]
fn huge_stdin_is_refused_without_exhausting_anything() {
    let bed = Bed::new("hbig").with_dirs();
    let junk = vec![b'x'; 10 * 1024 * 1024];
    let mut padded = br#"{"cniVersion":"1.0.0","name":"hostile","type":"bridge","pad":""#.to_vec();
    padded.extend(vec![b'p'; 17 * 1024 * 1024]);
    padded.extend(b"\"}");
    for plugin in PLUGINS {
        let reply = bed.untouched(&format!("{plugin} 10 MB junk"), || {
            bed.invoke(plugin, &bed.env("ADD", &[]), &junk)
        });
        reply.assert_error(6, "error unmarshall network config");
        let reply = bed.untouched(&format!("{plugin} 17 MB config"), || {
            bed.invoke(plugin, &bed.env("ADD", &[]), &padded)
        });
        reply.assert_error(5, "network config is larger than 16777216 bytes");
    }
}

#[test]
fn deeply_nested_json_is_a_decode_error_not_a_stack_overflow() {
    let bed = Bed::new("hdeep").with_dirs();
    let depth = 100_000;
    let arrays = [vec![b'['; depth], vec![b']'; depth]].concat();
    for plugin in PLUGINS {
        let reply = bed.untouched(&format!("{plugin} nested arrays"), || {
            bed.invoke(plugin, &bed.env("ADD", &[]), &arrays)
        });
        reply.assert_error(6, "recursion limit exceeded");

        let mut conf = bed.conf(plugin).to_string();
        conf.pop();
        let mut inner = ",\"args\":".to_string();
        inner.push_str(&"{\"a\":".repeat(depth));
        inner.push('1');
        inner.push_str(&"}".repeat(depth));
        conf.push_str(&inner);
        conf.push('}');
        let reply = bed.untouched(&format!("{plugin} nested field"), || {
            bed.invoke(plugin, &bed.env("ADD", &[]), conf.as_bytes())
        });
        reply.assert_error(6, "recursion limit exceeded");
    }
}

#[test]
fn nul_bytes_in_config_values_and_keys_are_refused() {
    let bed = Bed::new("hnul").with_dirs();
    for plugin in PLUGINS {
        let mut raw = bed.conf(plugin).to_string().into_bytes();
        raw.insert(1, 0);
        let reply = bed.untouched(&format!("{plugin} raw NUL"), || {
            bed.invoke(plugin, &bed.env("ADD", &[]), &raw)
        });
        reply.assert_error(6, "error unmarshall network config");

        let mut conf = bed.conf(plugin);
        conf["name"] = json!("host\u{0}ile");
        let reply = bed.untouched(&format!("{plugin} NUL in name"), || {
            bed.invoke(plugin, &bed.env("ADD", &[]), conf.to_string().as_bytes())
        });
        let err = reply.assert_error(7, "invalid characters found in network name");
        assert_eq!(err["details"], json!("host\u{0}ile"));
    }

    let with = |plugin: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut conf = bed.conf(plugin);
        edit(&mut conf);
        bed.untouched(&format!("{plugin} {conf}"), || {
            bed.invoke(plugin, &bed.env("ADD", &[]), conf.to_string().as_bytes())
        })
    };
    // The kernel would cut "hbr\0x" to "hbr" and create that bridge.
    with("bridge", &|c| c["bridge"] = json!("hbr\u{0}x"))
        .assert_error(999, "invalid bridge name \"hbr\\0x\": contains a NUL byte");
    let ipam_dir = format!("{}\u{0}/../escape", bed.ipam_dir().display());
    with("host-local", &|c| c["ipam"]["dataDir"] = json!(ipam_dir))
        .assert_error(999, "unexpected NUL byte");
    with("flannel", &|c| {
        c["dataDir"] = json!(format!("{}\u{0}x", bed.flannel_dir().display()))
    })
    .assert_error(999, "unexpected NUL byte");
    with("flannel", &|c| {
        c["subnetFile"] = json!(format!("{}\u{0}x", bed.work().join("subnet.env").display()))
    })
    .assert_error(999, "unexpected NUL byte");
    // A NUL inside a key makes it another (unknown, ignored) key: the real one is missing.
    with("host-local", &|c| {
        let ipam = c["ipam"].as_object_mut().unwrap();
        let subnet = ipam.remove("subnet").unwrap();
        ipam.insert("sub\u{0}net".into(), subnet);
    })
    .assert_error(999, "no IP ranges specified");
    // Port mappings come from the pod spec and end up in an nft script: syntax in a
    // protocol must not reach it (it would run `flush ruleset` on the host).
    with("portmap", &|c| {
        c["runtimeConfig"]["portMappings"][0]["protocol"] =
            json!("tcp dport 1 accept\nflush ruleset")
    })
    .assert_error(999, "Invalid protocol");
    with("portmap", &|c| {
        c["runtimeConfig"]["portMappings"][0]["hostIP"] = json!("127.0.0.1\u{0}")
    })
    .assert_error(999, "Invalid host IP");
}

/// Names the regex allows but the filesystem does not (NAME_MAX is 255 bytes): a 300-byte
/// container id is fine where it only becomes file content or a hashed chain name (bridge,
/// host-local), and a clear error where it becomes a file name (flannel's save file); a
/// 300-byte network name becomes host-local's directory name.
#[test]
fn overlong_names_that_pass_the_regex_fail_cleanly() {
    let bed = Bed::new("hlong").with_dirs();
    let long_id = "c".repeat(300);
    let reply = bed.untouched("flannel 300-byte container id", || {
        bed.add("flannel", &[("CNI_CONTAINERID", &long_id)])
    });
    reply.assert_error(999, "file name too long");

    let long_net = "n".repeat(300);
    let mut conf = bed.conf("host-local");
    conf["name"] = json!(long_net);
    let reply = bed.untouched("host-local 300-byte network name", || {
        bed.invoke(
            "host-local",
            &bed.env("ADD", &[]),
            conf.to_string().as_bytes(),
        )
    });
    reply.assert_error(999, "file name too long");

    let before = bed.snapshot();
    let ok = bed.add("bridge", &[("CNI_CONTAINERID", &long_id)]);
    assert_eq!(ok.status, Some(0), "{ok:?}");
    let conf = bed.conf("bridge").to_string();
    let del = bed.invoke(
        "bridge",
        &bed.env("DEL", &[("CNI_CONTAINERID", &long_id)]),
        conf.as_bytes(),
    );
    assert_eq!(del.status, Some(0), "{del:?}");
    let after = bed.snapshot();
    // The round-robin position stays after DEL, as upstream's does.
    let files: Vec<_> = after
        .files
        .iter()
        .filter(|f| !f.ends_with("last_reserved_ip.0"))
        .cloned()
        .collect();
    assert_eq!(
        before.files.into_iter().collect::<Vec<_>>(),
        files,
        "bridge ADD+DEL with a long id left files"
    );
    assert_eq!(before.pod_links, after.pod_links);
}

use std::collections::HashMap;

use super::*;

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

const FULL: [(&str, &str); 5] = [
    ("CNI_CONTAINERID", "abc-1.2_3"),
    ("CNI_NETNS", "/var/run/netns/x"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ("CNI_ARGS", "IgnoreUnknown=1"),
];

fn with(cmd: &str, overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> =
        FULL.iter().map(|(k, v)| (*k, v.to_string())).collect();
    v.push(("CNI_COMMAND", cmd.to_string()));
    for (k, val) in overrides {
        v.retain(|(kk, _)| kk != k);
        v.push((k, val.to_string()));
    }
    v
}

fn env_of(vars: &[(&'static str, String)]) -> Result<CniEnv, CniError> {
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    CniEnv::from_lookup(lookup(&refs))
}

#[test]
fn reads_a_full_add_environment() {
    let env = env_of(&with("ADD", &[])).unwrap();
    assert_eq!(env.command, Command::Add);
    assert_eq!(env.container_id, "abc-1.2_3");
    assert_eq!(env.netns, Some(PathBuf::from("/var/run/netns/x")));
    assert_eq!(
        env.path,
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
    );
    assert_eq!(env.path_string(), "/opt/cni/bin:/usr/lib/cni");
    assert_eq!(env.args, "IgnoreUnknown=1");
}

#[test]
fn required_variables_per_command() {
    let none = lookup(&[("CNI_COMMAND", "ADD")]);
    assert_eq!(
        CniEnv::from_lookup(none).unwrap_err(),
        CniError::new(
            4,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        )
    );
    let e = CniEnv::from_lookup(lookup(&[("CNI_COMMAND", "DEL")])).unwrap_err();
    assert_eq!(
        e.msg,
        "required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_PATH] missing"
    );
    let e = CniEnv::from_lookup(lookup(&[("CNI_COMMAND", "CHECK")])).unwrap_err();
    assert_eq!(
        e.msg,
        "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
    );
    for cmd in ["GC", "STATUS"] {
        let e = CniEnv::from_lookup(lookup(&[("CNI_COMMAND", cmd)])).unwrap_err();
        assert_eq!(e.msg, "required env variables [CNI_PATH] missing");
        let env = CniEnv::from_lookup(lookup(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/x")])).unwrap();
        assert_eq!((env.netns, env.container_id.as_str()), (None, ""));
    }
    let env = CniEnv::from_lookup(lookup(&[("CNI_COMMAND", "VERSION")])).unwrap();
    assert_eq!(env.command, Command::Version);
    assert!(env.path.is_empty());
    let del = env_of(&with("DEL", &[("CNI_NETNS", "")])).unwrap();
    assert_eq!(del.netns, None);
}

#[test]
fn empty_command_is_missing_and_distinguishable() {
    let e = CniEnv::from_lookup(lookup(&FULL)).unwrap_err();
    assert_eq!(
        e,
        CniError::new(4, "required env variables [CNI_COMMAND] missing")
    );
    assert!(command_missing(lookup(&FULL)));
    assert!(command_missing(lookup(&[("CNI_COMMAND", "")])));
    assert!(!command_missing(lookup(&[("CNI_COMMAND", "ADD")])));
}

#[test]
fn unknown_command_is_code_4_after_reading() {
    let raw = read_env(lookup(&[("CNI_COMMAND", "add")])).unwrap();
    assert_eq!(raw.command, "add");
    assert_eq!(
        raw.into_env().unwrap_err(),
        CniError::new(4, "unknown CNI_COMMAND: add")
    );
}

#[test]
fn container_id_rules() {
    let e = env_of(&with("ADD", &[("CNI_CONTAINERID", "-abc")])).unwrap_err();
    assert_eq!(
        e,
        CniError::new(4, "invalid characters in containerID").with_details("-abc")
    );
    for bad in ["a b", "a/b", "é", "a\n", "_a"] {
        assert!(validate_container_id(bad).is_err(), "{bad:?}");
    }
    for good in ["a", "0", "A.b-c_d", "9f86d081884c7d659a2feaa0c55ad015"] {
        assert!(validate_container_id(good).is_ok(), "{good:?}");
    }
    assert_eq!(
        validate_container_id("").unwrap_err(),
        CniError::new(3, "missing containerID")
    );
    // Validated on the spot: reported even though CNI_PATH is missing too.
    let e = env_of(&with(
        "ADD",
        &[("CNI_CONTAINERID", "bad id"), ("CNI_PATH", "")],
    ))
    .unwrap_err();
    assert_eq!(e.msg, "invalid characters in containerID");
    // Not required (GC) => not validated.
    assert!(env_of(&with("GC", &[("CNI_CONTAINERID", "bad id")])).is_ok());
}

#[test]
fn ifname_rules() {
    let cases: [(&str, &str, Option<&str>); 7] = [
        (
            "0123456789abcdef",
            "interface name is too long",
            Some("interface name should be less than 16 characters"),
        ),
        (".", "interface name is . or ..", None),
        ("..", "interface name is . or ..", None),
        (
            "a/b",
            "interface name contains / or : or whitespace characters",
            None,
        ),
        (
            "a:b",
            "interface name contains / or : or whitespace characters",
            None,
        ),
        (
            "a b",
            "interface name contains / or : or whitespace characters",
            None,
        ),
        (
            "a\u{a0}b",
            "interface name contains / or : or whitespace characters",
            None,
        ),
    ];
    for (name, msg, details) in cases {
        let e = validate_ifname(name).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_deref()),
            (4, msg, details),
            "{name:?}"
        );
    }
    assert_eq!(
        validate_ifname("").unwrap_err().msg,
        "interface name is empty"
    );
    assert!(validate_ifname("0123456789abcde").is_ok());
    assert!(validate_ifname("ééééééé").is_ok(), "14 bytes");
    assert!(validate_ifname("éééééééé").is_err(), "16 bytes");
    let e = env_of(&with("CHECK", &[("CNI_IFNAME", "a:b")])).unwrap_err();
    assert_eq!(
        e.msg,
        "interface name contains / or : or whitespace characters"
    );
}

#[test]
fn netns_override_values() {
    let raw = |v: &str| RawEnv {
        netns_override: v.into(),
        ..RawEnv::default()
    };
    assert!(raw("1").netns_override());
    assert!(raw("TRUE").netns_override());
    assert!(raw("true").netns_override());
    assert!(!raw("0").netns_override());
    assert!(!raw("").netns_override());
}

#[test]
fn path_splitting() {
    assert!(split_path("").is_empty());
    assert_eq!(
        split_path("a::b"),
        vec![PathBuf::from("a"), PathBuf::from(""), PathBuf::from("b")]
    );
}

//! `run_with` driven with injected environment and streams.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read};

use netconf::{CniError, CniResult, CniVersion, Command, IpConfig};
use skel::{run_with, Plugin, Request, MAX_STDIN_BYTES};

#[derive(Default)]
struct Recorder {
    about: String,
    calls: RefCell<Vec<(Command, String, CniVersion)>>,
    fail_with: Option<CniError>,
    empty_result: bool,
}

impl Recorder {
    fn record(&self, req: &Request) -> Result<(), CniError> {
        self.calls.borrow_mut().push((
            req.env.command,
            req.conf.name.clone(),
            req.conf.cni_version,
        ));
        match &self.fail_with {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Plugin for Recorder {
    fn about(&self) -> String {
        self.about.clone()
    }
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        self.record(req)?;
        let mut r = CniResult::new(CniVersion::V1_1_0);
        if !self.empty_result {
            r.ips.push(IpConfig {
                address: "10.244.1.2/24".parse().unwrap(),
                gateway: None,
                interface: None,
            });
        }
        Ok(r)
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
    fn status(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        self.record(req)
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_env(plugin: &Recorder, vars: &[(&str, &str)], stdin: impl Read) -> Outcome {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(|k| env.get(k).cloned(), stdin, &mut out, &mut err, plugin);
    Outcome {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn full_env(cmd: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", "/var/run/netns/does-not-exist"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

fn run(plugin: &Recorder, cmd: &'static str, conf: &str) -> Outcome {
    run_env(plugin, &full_env(cmd), conf.as_bytes())
}

fn error_json(code: u32, msg: &str) -> String {
    CniError::new(code, msg).to_json()
}

/// A stdin that must never be read.
struct Unreadable;
impl Read for Unreadable {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("stdin exploded"))
    }
}

#[test]
fn empty_command_prints_about_on_stderr() {
    let p = Recorder {
        about: "CNI bridge plugin v1.0".into(),
        ..Recorder::default()
    };
    let o = run_env(&p, &[], Unreadable);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
    assert_eq!(o.stderr, "CNI bridge plugin v1.0\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n");
    let silent = Recorder::default();
    let o = run_env(&silent, &[("CNI_PATH", "/x")], Unreadable);
    assert_eq!(
        (o.code, o.stdout),
        (
            1,
            error_json(4, "required env variables [CNI_COMMAND] missing")
        )
    );
}

#[test]
fn version_ignores_stdin() {
    let o = run_env(
        &Recorder::default(),
        &[("CNI_COMMAND", "VERSION")],
        Unreadable,
    );
    assert_eq!(o.code, 0);
    assert_eq!(
        o.stdout,
        "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.1.0\",\"0.2.0\",\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n"
    );
}

#[test]
fn missing_variables_are_listed() {
    let o = run_env(&Recorder::default(), &[("CNI_COMMAND", "ADD")], Unreadable);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stdout,
        "{\n    \"code\": 4,\n    \"msg\": \"required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing\"\n}"
    );
}

#[test]
fn add_prints_the_result_in_the_config_version() {
    let p = Recorder::default();
    let o = run(
        &p,
        "ADD",
        r#"{"cniVersion":"0.4.0","name":"cbr0","type":"bridge"}"#,
    );
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(
        o.stdout,
        "{\n    \"cniVersion\": \"0.4.0\",\n    \"ips\": [\n        {\n            \"version\": \"4\",\n            \"address\": \"10.244.1.2/24\"\n        }\n    ],\n    \"dns\": {}\n}"
    );
    assert_eq!(
        p.calls.borrow().as_slice(),
        &[(Command::Add, "cbr0".to_owned(), CniVersion::V0_4_0)]
    );
}

#[test]
fn add_result_conversion_errors_are_reported() {
    let p = Recorder {
        empty_result: true,
        ..Recorder::default()
    };
    let o = run(&p, "ADD", r#"{"cniVersion":"0.2.0","name":"n"}"#);
    assert_eq!(
        (o.code, o.stdout),
        (1, error_json(999, "cannot convert: no valid IP addresses"))
    );
}

#[test]
fn plugin_errors_are_printed_verbatim() {
    let err = CniError::new(11, "try again").with_details("lock held");
    let p = Recorder {
        fail_with: Some(err.clone()),
        ..Recorder::default()
    };
    for cmd in ["ADD", "DEL", "CHECK"] {
        let o = run(&p, cmd, r#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!((o.code, o.stdout), (1, err.to_json()), "{cmd}");
    }
}

#[test]
fn unsupported_config_version() {
    let p = Recorder::default();
    let o = run(&p, "ADD", r#"{"cniVersion":"9.9.9","name":"n"}"#);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stdout,
        CniError::new(1, "incompatible CNI versions")
            .with_details(r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#)
            .to_json()
    );
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn check_gc_status_version_floors() {
    let p = Recorder::default();
    let cases: [(&str, &str, Option<&str>); 9] = [
        (
            "CHECK",
            "0.3.1",
            Some("config version does not allow CHECK"),
        ),
        ("CHECK", "", Some("config version does not allow CHECK")),
        (
            "CHECK",
            "2.0.0",
            Some("plugin version does not allow CHECK"),
        ),
        ("CHECK", "0.4.0", None),
        ("GC", "1.0.0", Some("config version does not allow GC")),
        ("GC", "1.1.0", None),
        (
            "STATUS",
            "1.0.0",
            Some("config version does not allow STATUS"),
        ),
        (
            "STATUS",
            "1.2.0",
            Some("plugin version does not allow STATUS"),
        ),
        ("STATUS", "1.1.0", None),
    ];
    for (cmd, ver, err) in cases {
        let conf = format!(r#"{{"cniVersion":"{ver}","name":"n"}}"#);
        let o = run_env(
            &p,
            &[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "e"),
                ("CNI_PATH", "/p"),
            ],
            conf.as_bytes(),
        );
        match err {
            Some(msg) => assert_eq!((o.code, o.stdout), (1, error_json(1, msg)), "{cmd} {ver}"),
            None => assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{cmd} {ver}"),
        }
    }
    let calls: Vec<Command> = p.calls.borrow().iter().map(|c| c.0).collect();
    assert_eq!(calls, vec![Command::Check, Command::Gc, Command::Status]);

    // Above the floor but unknown: the membership gate answers.
    let o = run(&p, "CHECK", r#"{"cniVersion":"0.5.0","name":"n"}"#);
    assert_eq!(
        (o.code, o.stdout.contains("incompatible CNI versions")),
        (1, true)
    );
    let o = run(&p, "CHECK", r#"{"cniVersion":"x.1","name":"n"}"#);
    assert_eq!(
        (o.code, o.stdout),
        (
            1,
            error_json(
                6,
                r#"failed to convert major version part "x": strconv.Atoi: parsing "x": invalid syntax"#
            )
        )
    );
}

#[test]
fn gc_and_status_need_only_cni_path() {
    let p = Recorder::default();
    let o = run_env(
        &p,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/p")],
        &br#"{"cniVersion":"1.1.0","name":"n"}"#[..],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
}

#[test]
fn del_tolerates_missing_netns() {
    let p = Recorder::default();
    let vars = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/p"),
    ];
    let o = run_env(&p, &vars, &br#"{"cniVersion":"1.0.0","name":"n"}"#[..]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
}

#[test]
fn config_validation_errors() {
    let p = Recorder::default();
    let cases: [(&str, u32, &str); 4] = [
        ("", 6, "error unmarshall network config: unexpected end of JSON input"),
        ("{}", 7, "missing network name"),
        (r#"{"name":"a b"}"#, 7, "invalid characters found in network name"),
        (r#"{"name":"n","cniVersion":3}"#, 6, "decoding version from network config: json: cannot unmarshal number into Go struct field .cniVersion of type string"),
    ];
    for (conf, code, msg) in cases {
        let o = run(&p, "ADD", conf);
        assert_eq!(o.code, 1, "{conf}");
        let e = CniError::from_json(o.stdout.as_bytes()).unwrap();
        assert_eq!((e.code, e.msg.as_str()), (code, msg), "{conf}");
    }
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn env_validation_precedes_stdin() {
    let mut vars = full_env("ADD");
    vars[1] = ("CNI_CONTAINERID", "bad/id");
    let o = run_env(&Recorder::default(), &vars, Unreadable);
    assert_eq!(
        o.stdout,
        CniError::new(4, "invalid characters in containerID")
            .with_details("bad/id")
            .to_json()
    );
}

#[test]
fn unknown_command_is_reported_after_config_validation() {
    let p = Recorder::default();
    let o = run(&p, "FROB", r#"{"name":"n"}"#);
    assert_eq!(
        (o.code, o.stdout),
        (1, error_json(4, "unknown CNI_COMMAND: FROB"))
    );
    let o = run(&p, "FROB", "");
    assert_eq!(
        (o.code, o.stdout),
        (
            1,
            error_json(
                6,
                "error unmarshall network config: unexpected end of JSON input"
            )
        )
    );
}

#[test]
fn stdin_failures() {
    let o = run_env(&Recorder::default(), &full_env("ADD"), Unreadable);
    assert_eq!(
        (o.code, o.stdout),
        (1, error_json(5, "error reading from stdin: stdin exploded"))
    );

    let huge = io::repeat(b' ').take(MAX_STDIN_BYTES + 1);
    let o = run_env(&Recorder::default(), &full_env("ADD"), huge);
    assert_eq!(
        (o.code, o.stdout),
        (1, error_json(5, &format!("error reading from stdin: network config is larger than {MAX_STDIN_BYTES} bytes")))
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let deep = format!(
        r#"{{"name":"n","x":{}{}}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let o = run(&Recorder::default(), "ADD", &deep);
    assert_eq!(o.code, 1);
    let e = CniError::from_json(o.stdout.as_bytes()).unwrap();
    assert_eq!(e.code, 6);
    assert!(
        e.msg
            .starts_with("error unmarshall network config: recursion limit exceeded"),
        "{}",
        e.msg
    );
}

#[test]
fn own_netns_is_rejected_after_the_operation() {
    let p = Recorder::default();
    let mut vars = full_env("ADD");
    vars[2] = ("CNI_NETNS", "/proc/self/ns/net");
    let conf = r#"{"cniVersion":"1.0.0","name":"n"}"#;
    let o = run_env(&p, &vars, conf.as_bytes());
    assert_eq!(o.code, 1);
    let result = "{\n    \"cniVersion\": \"1.0.0\",\n    \"ips\": [\n        {\n            \"address\": \"10.244.1.2/24\"\n        }\n    ]\n}";
    assert_eq!(
        o.stdout,
        format!(
            "{result}{}",
            error_json(
                8,
                "plugin's netns and netns from CNI_NETNS should not be the same"
            )
        )
    );
    vars.push(("CNI_NETNS_OVERRIDE", "true"));
    let o = run_env(&p, &vars, conf.as_bytes());
    assert_eq!((o.code, o.stdout.as_str()), (0, result));
    assert_eq!(p.calls.borrow().len(), 2, "the plugin ran both times");
}

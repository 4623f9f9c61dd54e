//! In-process delegation without root: this test binary registers itself as a multicall
//! executable, so a delegate found on `CNI_PATH` as a link to it runs in this process. What
//! the plugin sees and what the caller gets back must be what an exec would give.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::sync::Mutex;

use netconf::{codes, CniEnv, CniError, CniResult, CniVersion, Command};
use skel::multicall::{self, Applet};
use skel::{delegate, Plugin, Request};

/// CNI_* variables as the skel read them: name and value (`None`: absent).
type Vars = Vec<(String, Option<String>)>;

/// What the `echo` applet saw last: its variables and its stdin.
static SEEN: Mutex<Option<(Vars, Vec<u8>)>> = Mutex::new(None);

struct Echo;
impl Plugin for Echo {
    fn about(&self) -> String {
        "echo".into()
    }
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let vars = [
            ("CNI_COMMAND", Some(req.env.command.as_str().to_owned())),
            ("CNI_CONTAINERID", Some(req.env.container_id.clone())),
            ("CNI_IFNAME", Some(req.env.ifname.clone())),
            ("CNI_ARGS", Some(req.env.args.clone())),
            ("CNI_PATH", Some(req.env.path_string())),
            (
                "CNI_NETNS",
                req.env.netns.as_ref().map(|p| p.display().to_string()),
            ),
        ];
        *SEEN.lock().unwrap() = Some((
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            req.stdin.clone(),
        ));
        let mut r = CniResult::new(req.conf.cni_version);
        r.ips = vec![netconf::IpConfig {
            address: "10.1.0.5/24".parse().unwrap(),
            gateway: None,
            interface: None,
        }];
        Ok(r)
    }
    fn del(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn check(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

struct Fails;
impl Plugin for Fails {
    fn about(&self) -> String {
        "fails".into()
    }
    fn add(&self, _req: &Request) -> Result<CniResult, CniError> {
        Err(CniError::new(codes::INVALID_CONFIG, "bad").with_details("why"))
    }
    fn del(&self, _req: &Request) -> Result<(), CniError> {
        Err(CniError::new(codes::TRY_AGAIN, "later"))
    }
    fn check(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

struct Panics;
impl Plugin for Panics {
    fn about(&self) -> String {
        "panics".into()
    }
    fn add(&self, _req: &Request) -> Result<CniResult, CniError> {
        panic!("boom")
    }
    fn del(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn check(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

/// Delegates ADD to a plugin of its own name: a config loop.
struct Loops;
impl Plugin for Loops {
    fn about(&self) -> String {
        "loops".into()
    }
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        delegate::add("loops", &req.stdin, &req.env, req.conf.cni_version)
    }
    fn del(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
    fn check(&self, _req: &Request) -> Result<(), CniError> {
        Ok(())
    }
}

const APPLETS: &[Applet] = &[
    Applet {
        name: "echo",
        plugin: &Echo,
    },
    Applet {
        name: "fails",
        plugin: &Fails,
    },
    Applet {
        name: "panics",
        plugin: &Panics,
    },
    Applet {
        name: "loops",
        plugin: &Loops,
    },
];

/// Tests take turns: in-process delegations are counted process-wide, and the loop test
/// drives that count to its limit.
static SERIAL: Mutex<()> = Mutex::new(());

/// A CNI_PATH directory of links to this very test binary, one per applet name.
fn links_to_self() -> tempfile::TempDir {
    multicall::register("skel-in-process-test", APPLETS);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for name in ["echo", "fails", "panics", "loops", "unknown"] {
        symlink(&exe, dir.path().join(name)).unwrap();
    }
    dir
}

fn env_for(dirs: &[&Path], netns: Option<&str>) -> CniEnv {
    CniEnv {
        command: Command::Add,
        container_id: "ctr-9".into(),
        netns: netns.map(Into::into),
        ifname: "eth1".into(),
        args: "IgnoreUnknown=1;K=V".into(),
        path: dirs.iter().map(|d| d.to_path_buf()).collect(),
    }
}

const CONF: &[u8] = br#"{"cniVersion":"1.0.0","name":"n","type":"echo",  "extra": true}"#;

#[test]
fn the_plugin_sees_what_an_exec_would_give_it_and_its_result_comes_back() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = links_to_self();
    let env = env_for(&[dir.path()], Some("/var/run/netns/p"));
    let result = delegate::add("echo", CONF, &env, CniVersion::V1_0_0).unwrap();
    assert_eq!(result.ips[0].address.to_string(), "10.1.0.5/24");
    let (vars, stdin) = SEEN.lock().unwrap().take().expect("ran in this process");
    assert_eq!(stdin, CONF, "the same stdin bytes");
    let path = dir.path().display().to_string();
    let want: Vars = [
        ("CNI_COMMAND", Some("ADD")),
        ("CNI_CONTAINERID", Some("ctr-9")),
        ("CNI_IFNAME", Some("eth1")),
        ("CNI_ARGS", Some("IgnoreUnknown=1;K=V")),
        ("CNI_PATH", Some(path.as_str())),
        ("CNI_NETNS", Some("/var/run/netns/p")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
    .collect();
    assert_eq!(vars, want);

    // No namespace: the variable is absent for the delegate, as an exec removes it, so the
    // delegate's skel refuses an ADD exactly as a started child's would.
    let env = env_for(&[dir.path()], None);
    let err = delegate::add("echo", CONF, &env, CniVersion::V1_0_0).unwrap_err();
    assert_eq!(
        err,
        CniError::new(
            codes::INVALID_ENV,
            "required env variables [CNI_NETNS] missing"
        )
    );
}

#[test]
fn errors_pass_through_verbatim_and_a_panic_is_a_failed_child() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = links_to_self();
    let env = env_for(&[dir.path()], Some("/var/run/netns/p"));
    let err = delegate::add("fails", CONF, &env, CniVersion::V1_0_0).unwrap_err();
    assert_eq!(
        err,
        CniError::new(codes::INVALID_CONFIG, "bad").with_details("why")
    );
    let err = delegate::del("fails", CONF, &env).unwrap_err();
    assert_eq!(err, CniError::new(codes::TRY_AGAIN, "later"));

    // A child that panics exits 101 with nothing on stdout and the message on stderr.
    let err = delegate::add("panics", CONF, &env, CniVersion::V1_0_0).unwrap_err();
    assert_eq!(
        (err.code, err.msg.as_str()),
        (
            codes::INTERNAL,
            "netplugin failed: \"panicked: boom\": exit status 101"
        )
    );

    // A name this executable does not hold: the error it would print when started so.
    let err = delegate::add("unknown", CONF, &env, CniVersion::V1_0_0).unwrap_err();
    assert_eq!(err.code, codes::INTERNAL);
    assert!(
        err.msg
            .starts_with("\"unknown\" is not a plugin of skel-in-process-test; "),
        "{}",
        err.msg
    );
}

#[test]
fn a_delegate_that_delegates_to_itself_fails_instead_of_overflowing_the_stack() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = links_to_self();
    let env = env_for(&[dir.path()], Some("/var/run/netns/p"));
    let err = delegate::add("loops", CONF, &env, CniVersion::V1_0_0).unwrap_err();
    assert_eq!(err.code, codes::INTERNAL);
    assert!(err.msg.contains("inside one another"), "{}", err.msg);
}

#[test]
fn another_file_with_the_name_is_executed() {
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let links = links_to_self();
    let first = tempfile::tempdir().unwrap();
    let script = first.path().join("echo");
    fs::write(
        &script,
        "#!/bin/sh\ncat >/dev/null\nprintf '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.9.9.9/24\"}]}'\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let env = env_for(&[first.path(), links.path()], Some("/var/run/netns/p"));
    let result = delegate::add("echo", CONF, &env, CniVersion::V1_0_0).unwrap();
    assert_eq!(
        result.ips[0].address.to_string(),
        "10.9.9.9/24",
        "the script ran, not the applet"
    );
}

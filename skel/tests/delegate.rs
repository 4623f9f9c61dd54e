//! Delegation to real child processes: small `#!/bin/sh` plugins written into a temp dir.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use netconf::{CniEnv, CniError, CniVersion, Command};
use skel::delegate;

/// Writes an executable script and returns its directory.
fn plugin(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn env_for(dirs: &[&Path]) -> CniEnv {
    CniEnv {
        command: Command::Add,
        container_id: "ctr-1".into(),
        netns: Some("/var/run/netns/test".into()),
        ifname: "eth0".into(),
        args: "IgnoreUnknown=1".into(),
        path: dirs.iter().map(|d| d.to_path_buf()).collect(),
    }
}

/// A plugin that records its stdin and CNI_* environment next to itself, then runs `tail`.
fn recording_plugin(dir: &Path, name: &str, tail: &str) {
    let rec = dir.display();
    plugin(
        dir,
        name,
        &format!("cat > {rec}/stdin\nenv | grep '^CNI_' | sort > {rec}/env\n{tail}"),
    );
}

#[test]
fn find_follows_cni_path_order() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    plugin(b.path(), "host-local", "exit 0");
    fs::write(a.path().join("host-local"), "not executable").unwrap();
    fs::create_dir(a.path().join("bridge")).unwrap();
    plugin(b.path(), "bridge", "exit 0");
    let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
    assert_eq!(
        delegate::find("host-local", &dirs).unwrap(),
        b.path().join("host-local")
    );
    assert_eq!(
        delegate::find("bridge", &dirs).unwrap(),
        b.path().join("bridge")
    );
    plugin(a.path(), "portmap", "exit 0");
    plugin(b.path(), "portmap", "exit 0");
    assert_eq!(
        delegate::find("portmap", &dirs).unwrap(),
        a.path().join("portmap")
    );

    assert_eq!(
        delegate::find("", &dirs).unwrap_err(),
        CniError::new(999, "no plugin name provided")
    );
    assert_eq!(
        delegate::find("../x", &dirs).unwrap_err().msg,
        "invalid plugin name: ../x"
    );
    assert_eq!(
        delegate::find("x", &[]).unwrap_err().msg,
        "no paths provided"
    );
    assert_eq!(
        delegate::find("dhcp", &dirs).unwrap_err().msg,
        format!(
            "failed to find plugin \"dhcp\" in path [{} {}]",
            a.path().display(),
            b.path().display()
        )
    );
}

#[test]
fn add_passes_stdin_and_environment_and_parses_the_result() {
    let dir = tempfile::tempdir().unwrap();
    recording_plugin(
        dir.path(),
        "host-local",
        r#"printf '{"ips":[{"address":"10.244.1.5/24","gateway":"10.244.1.1"}],"routes":[{"dst":"0.0.0.0/0"}]}'"#,
    );
    let stdin =
        br#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","ipam":{"type":"host-local"}}"#;
    let env = env_for(&[dir.path()]);
    let result = delegate::add("host-local", stdin, &env, CniVersion::V1_0_0).unwrap();
    assert_eq!(
        result.cni_version,
        CniVersion::V1_0_0,
        "missing cniVersion means the config's"
    );
    assert_eq!(result.ips[0].address.to_string(), "10.244.1.5/24");
    assert_eq!(result.routes.len(), 1);

    assert_eq!(
        fs::read(dir.path().join("stdin")).unwrap(),
        stdin,
        "identical stdin bytes"
    );
    let seen = fs::read_to_string(dir.path().join("env")).unwrap();
    let expected = format!(
        "CNI_ARGS=IgnoreUnknown=1\nCNI_COMMAND=ADD\nCNI_CONTAINERID=ctr-1\nCNI_IFNAME=eth0\nCNI_NETNS=/var/run/netns/test\nCNI_PATH={}\n",
        dir.path().display()
    );
    assert_eq!(seen, expected);
}

#[test]
fn each_verb_overrides_cni_command() {
    let dir = tempfile::tempdir().unwrap();
    recording_plugin(dir.path(), "ipam", "exit 0");
    let mut env = env_for(&[dir.path()]);
    env.netns = None;
    type Verb = fn(&str, &[u8], &CniEnv) -> Result<(), CniError>;
    let verbs: [(Verb, &str); 4] = [
        (delegate::del, "DEL"),
        (delegate::check, "CHECK"),
        (delegate::status, "STATUS"),
        (delegate::gc, "GC"),
    ];
    for (verb, name) in verbs {
        verb("ipam", b"{}", &env).unwrap();
        let seen = fs::read_to_string(dir.path().join("env")).unwrap();
        assert!(
            seen.contains(&format!("CNI_COMMAND={name}\n")),
            "{name}: {seen}"
        );
        assert!(
            !seen.contains("CNI_NETNS="),
            "{name}: unset netns stays unset"
        );
    }
}

#[test]
fn child_error_json_is_returned_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    plugin(
        dir.path(),
        "host-local",
        r#"cat >/dev/null; printf '{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available in range set","details":"10.0.0.0/30"}'; exit 1"#,
    );
    let e = delegate::add(
        "host-local",
        b"{}",
        &env_for(&[dir.path()]),
        CniVersion::V1_0_0,
    )
    .unwrap_err();
    assert_eq!(
        e,
        CniError::new(11, "no IP addresses available in range set").with_details("10.0.0.0/30")
    );
}

#[test]
fn silent_failures_quote_stderr_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    plugin(dir.path(), "noisy", "echo 'it broke' >&2; exit 3");
    plugin(dir.path(), "quiet", "exit 4");
    plugin(dir.path(), "garbled", "echo nonsense; exit 1");
    plugin(dir.path(), "killed", "kill -9 $$");
    let env = env_for(&[dir.path()]);
    let msg = |name: &str| delegate::del(name, b"", &env).unwrap_err();
    assert_eq!(
        msg("noisy"),
        CniError::new(999, "netplugin failed: \"it broke\\n\": exit status 3")
    );
    assert_eq!(
        msg("quiet").msg,
        "netplugin failed with no error message: exit status 4"
    );
    assert!(msg("garbled").msg.starts_with(
        "netplugin failed but error parsing its diagnostic message \"nonsense\\n\": "
    ));
    assert_eq!(
        msg("killed").msg,
        "netplugin failed with no error message: signal: killed"
    );
}

#[test]
fn unparsable_results_and_exec_failures() {
    let dir = tempfile::tempdir().unwrap();
    plugin(
        dir.path(),
        "bad-result",
        r#"printf '{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}'"#,
    );
    plugin(dir.path(), "no-interpreter", "exit 0");
    fs::write(
        dir.path().join("no-interpreter"),
        "#!/nonexistent/interpreter\n",
    )
    .unwrap();
    let env = env_for(&[dir.path()]);
    let e = delegate::add("bad-result", b"{}", &env, CniVersion::V1_0_0).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (999, "invalid CIDR address: nope")
    );
    let e = delegate::del("no-interpreter", b"{}", &env).unwrap_err();
    assert!(
        e.msg.starts_with("fork/exec ") && e.msg.ends_with(": no such file or directory"),
        "{}",
        e.msg
    );
}

#[test]
fn large_stdin_and_stdout_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    // Writes 1 MiB of JSON whitespace to stdout before reading anything, then reports the
    // size of its input as an error.
    plugin(
        dir.path(),
        "chatty",
        "head -c 1048576 /dev/zero | tr '\\0' ' '; n=$(wc -c); printf '{\"code\":100,\"msg\":\"%s\"}' \"$n\"; exit 1",
    );
    let big = vec![b'x'; 4 * 1024 * 1024];
    let e = delegate::del("chatty", &big, &env_for(&[dir.path()])).unwrap_err();
    assert_eq!((e.code, e.msg.trim()), (100, "4194304"));
}

//! The `mk-docker-opts` binary end to end: files, exit codes, messages, and the routing-table
//! check run inside a test namespace.

use std::path::Path;
use std::process::{Command, Output};

use conformance::Netns;

const BIN: &str = env!("CARGO_BIN_EXE_mk-docker-opts");

fn run(ns: &Netns, dir: &Path, args: &[&str]) -> Output {
    ns.command(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("DOCKER_OPTS")
        .output()
        .expect("running mk-docker-opts")
}

#[test]
fn writes_the_docker_env_file_and_refuses_a_conflicting_route() {
    let ns = Netns::new("mkdo").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("subnet.env");
    std::fs::write(
        &env,
        "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    )
    .unwrap();
    let out_file = dir.path().join("docker");
    let env_s = env.to_str().unwrap();
    let out_s = out_file.to_str().unwrap();

    let out = run(
        &ns,
        dir.path(),
        &["-f", env_s, "-d", out_s, "-k", "DOCKER_NETWORK_OPTIONS"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "DOCKER_OPT_BIP=\"--bip=10.1.2.1/24\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n\
         DOCKER_OPT_MTU=\"--mtu=1450\"\n\
         DOCKER_NETWORK_OPTIONS=\" --bip=10.1.2.1/24 --ip-masq=true --mtu=1450\"\n"
    );

    // A gateway route to the subnet: the file is written, then the run fails as upstream's.
    ns.exec_ok(&[
        "ip", "link", "add", "mk0", "type", "veth", "peer", "name", "mk1",
    ])
    .unwrap();
    ns.exec_ok(&["ip", "addr", "add", "192.168.77.1/24", "dev", "mk0"])
        .unwrap();
    ns.exec_ok(&["ip", "link", "set", "mk0", "up"]).unwrap();
    ns.exec_ok(&["ip", "link", "set", "mk1", "up"]).unwrap();
    ns.exec_ok(&["ip", "route", "add", "10.1.2.0/24", "via", "192.168.77.2"])
        .unwrap();
    let out = run(&ns, dir.path(), &["-c", "-f", env_s, "-d", out_s]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "Your routing table already contains the subnet: 10.1.2.0/24 via 192.168.77.2"
        ),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "DOCKER_OPTS=\" --bip=10.1.2.1/24 --ip-masq=true --mtu=1450\"\n"
    );
}

#[test]
fn usage_errors_exit_1_with_the_scripts_text() {
    let out = Command::new(BIN).arg("-x").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("Illegal option -x\n"), "{stderr}");
    assert!(
        stderr.contains("[-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE]"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("subnet.env");
    std::fs::write(&env, "FLANNEL_SUBNET=10.1.2.1/24\nFLANNEL_IPMASQ=maybe\n").unwrap();
    let target = dir.path().join("out");
    let out = Command::new(BIN)
        .args(["-f", env.to_str().unwrap(), "-d", target.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Invalid value of FLANNEL_IPMASQ: maybe\n"
    );
    assert!(!target.exists(), "nothing written on a refused value");
}

//! The binary's command-line edge: Go `flag` exit codes and messages, `--version`, `--help`,
//! and the checks that fail before anything is contacted.

use std::process::{Command, Output};

fn flanneld(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flanneld"));
    c.args(args).env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every flag upstream's flanneld defines (`main.go`'s flag set plus glog's), in its order.
const UPSTREAM_FLAGS: &[&str] = &[
    "etcd-endpoints",
    "etcd-prefix",
    "etcd-keyfile",
    "etcd-certfile",
    "etcd-cafile",
    "etcd-username",
    "etcd-password",
    "kube-subnet-mgr",
    "kube-api-url",
    "kubeconfig-file",
    "kube-annotation-prefix",
    "net-config-path",
    "iface",
    "iface-regex",
    "iface-can-reach",
    "public-ip",
    "public-ipv6",
    "subnet-file",
    "subnet-lease-renew-margin",
    "ip-masq",
    "ip-masq-fully-random-disable",
    "iptables-resync",
    "iptables-forward-rules",
    "ip-blackhole-route",
    "healthz-ip",
    "healthz-port",
    "set-node-network-unavailable",
    "version",
    "v",
    "vmodule",
    "log_backtrace_at",
];

#[test]
fn version_goes_to_stderr_and_exits_zero_in_both_dash_styles() {
    for arg in ["--version", "-version"] {
        let o = flanneld(&[arg], &[]);
        assert_eq!(o.status.code(), Some(0), "{arg}");
        assert!(o.stdout.is_empty(), "{arg} prints to stderr only");
        assert_eq!(stderr(&o).trim(), env!("CARGO_PKG_VERSION"), "{arg}");
    }
}

/// Go's usage layout on stderr (`  -flag type` lines, defaults as Go prints them): every
/// upstream flag, and ours (`--network-policy`), for `-h` and `--help` alike.
#[test]
fn help_lists_every_flag_and_exits_zero() {
    for arg in ["-h", "--help"] {
        let o = flanneld(&[arg], &[]);
        assert_eq!(o.status.code(), Some(0), "{arg}");
        assert!(o.stdout.is_empty(), "{arg}: usage goes to stderr");
        let text = stderr(&o);
        assert!(text.starts_with("Usage: "), "{text}");
        let listed: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  -"))
            .map(|l| l.split([' ', '\t']).next().unwrap())
            .collect();
        for flag in UPSTREAM_FLAGS.iter().chain(&["network-policy"]) {
            assert!(listed.contains(flag), "-{flag} missing from {arg}:\n{text}");
        }
        for default in [
            "(default \"http://127.0.0.1:4001,http://127.0.0.1:2379\")",
            "(default \"/coreos.com/network\")",
            "(default \"/run/flannel/subnet.env\")",
            "(default 60)",
            "(default 5)",
            "(default true)",
            "(default \"0.0.0.0\")",
        ] {
            assert!(text.contains(default), "{default} missing:\n{text}");
        }
    }
}

#[test]
fn unknown_flag_is_usage_error_with_exit_two() {
    let o = flanneld(&["--no-such-flag"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let text = stderr(&o);
    assert!(
        text.starts_with("flag provided but not defined: -no-such-flag\nUsage: "),
        "{text}"
    );
    let o = flanneld(&["--ip-masq=maybe"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("invalid boolean value \"maybe\" for -ip-masq: parse error"));
}

#[test]
fn renew_margin_out_of_range_exits_one() {
    let o = flanneld(&["--subnet-lease-renew-margin=0"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "Invalid subnet-lease-renew-margin option, out of acceptable range"
    );
    let o = flanneld(&[], &[("FLANNELD_SUBNET_LEASE_RENEW_MARGIN", "1440")]);
    assert_eq!(o.status.code(), Some(1), "env values are checked too");
}

#[test]
fn kube_mode_outside_a_cluster_fails_like_upstream() {
    // No kubeconfig, no URL and no in-cluster service account: fatal before anything else.
    let o = flanneld(&["--kube-subnet-mgr"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Failed to create SubnetManager: fail to create kubernetes config: "),
        "{}",
        stderr(&o)
    );
    let o = flanneld(
        &["--kube-subnet-mgr", "--kube-annotation-prefix=a/b/c"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "Failed to create SubnetManager: subnet/kube: prefix can contain at most single slash"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn network_policy_without_the_kube_subnet_manager_exits_1_saying_why() {
    for (args, env) in [
        (&["--network-policy"][..], &[][..]),
        (&[][..], &[("FLANNELD_NETWORK_POLICY", "true")][..]),
    ] {
        let o = flanneld(args, env);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(
            stderr(&o).trim(),
            "--network-policy needs --kube-subnet-mgr: NetworkPolicies, Pods and Namespaces are read from the Kubernetes API server, which the etcd subnet manager does not use"
        );
    }
}

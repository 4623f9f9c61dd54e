//! flanneld against a secured etcd: TLS with client certificates (a throw-away CA made by
//! openssl in the test), and etcd's own user/password auth with a role limited to flannel's
//! prefix. The right credentials get a lease; wrong ones are a clear error in the log and
//! no subnet.env — never a lease taken some other way.

use std::net::IpAddr;
use std::time::Duration;

use conformance::support::flanneld::*;
use conformance::{Etcd, EtcdOptions, Host, Segment, TestCa, Underlay};
use serde_json::json;

fn net_config() -> String {
    json!({"Network": "10.247.0.0/16", "Backend": {"Type": "host-gw"}}).to_string()
}

/// Starts a daemon on `host` that must stay up without becoming ready, and waits for `what`
/// in its log.
fn assert_refused(host: Host, etcd: &Etcd, args: &[&str], what: &str) -> Flanneld {
    let f = start_flanneld(host, etcd, args, None);
    assert!(
        eventually(Duration::from_secs(20), || f.log().contains(what)),
        "no {what:?} in the log:\n{}",
        f.log()
    );
    assert!(
        !f.subnet_file().exists(),
        "subnet.env written without valid credentials"
    );
    f
}

#[test]
fn flanneld_leases_over_tls_with_a_client_certificate_and_is_refused_without_one() {
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "fr-auth-ca").unwrap();
    let router_ip = Segment::A.router_ip();
    let server = ca
        .issue(
            "server",
            &format!("subjectAltName=IP:{router_ip}\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
    let (client_cert, client_key) = ca.issue("client", "extendedKeyUsage=clientAuth\n").unwrap();
    // A certificate from another CA: must be refused like no certificate at all.
    let rogue = TestCa::new(&pki.path().join("rogue"), "rogue").unwrap();
    let underlay = Underlay::new().unwrap();
    let tls = ca.mutual_etcd_tls(server, (client_cert.clone(), client_key.clone()));
    let etcd =
        Etcd::start(EtcdOptions::in_netns(underlay.router(), IpAddr::V4(router_ip)).tls(tls))
            .unwrap();
    assert!(
        etcd.endpoint().starts_with("https://"),
        "{}",
        etcd.endpoint()
    );
    etcd.put(&format!("{PREFIX}/config"), &net_config())
        .unwrap();

    let ca_arg = format!("--etcd-cafile={}", ca.cert().display());
    let host = underlay.add_host(Segment::A, "t1").unwrap();
    let mut good = start_flanneld(
        host,
        &etcd,
        &[
            &format!("--etcd-certfile={}", client_cert.display()),
            &format!("--etcd-keyfile={}", client_key.display()),
            &ca_arg,
        ],
        None,
    );
    good.wait_ready(START).unwrap();
    let subnet = good.subnet().unwrap();
    let record = etcd
        .get(&format!(
            "{PREFIX}/subnets/{}-{}",
            subnet.network(),
            subnet.prefix_len()
        ))
        .unwrap();
    assert!(record.is_some_and(|r| r.contains("\"BackendType\":\"host-gw\"")));

    // No client certificate: the etcd client fails the handshake itself and says why. A
    // certificate from an unknown CA: TLS 1.3 lets the server refuse it only after the
    // client's handshake is done, so the client sees the connection closed; flanneld
    // reports it as a failed fetch and retries.
    for (tag, args, says) in [
        ("t2", vec![ca_arg.clone()], "certificate"),
        (
            "t3",
            vec![
                ca_arg.clone(),
                format!("--etcd-certfile={}", rogue.cert().display()),
                format!("--etcd-keyfile={}", rogue.key().display()),
            ],
            "Couldn't fetch network config",
        ),
    ] {
        let host = underlay.add_host(Segment::A, tag).unwrap();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut bad = assert_refused(host, &etcd, &argv, says);
        assert!(
            bad.is_running(),
            "{tag}: a refused connection is retried, not fatal"
        );
    }
    let leases = etcd.keys(LEASES_PREFIX).unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
}

#[test]
fn flanneld_leases_with_etcd_username_and_password_and_reports_a_wrong_one() {
    let underlay = Underlay::new().unwrap();
    let router_ip = Segment::A.router_ip();
    let etcd = Etcd::start(EtcdOptions::in_netns(
        underlay.router(),
        IpAddr::V4(router_ip),
    ))
    .unwrap();
    etcd.put(&format!("{PREFIX}/config"), &net_config())
        .unwrap();
    let ctl = |args: &[&str]| etcd.etcdctl(args).unwrap_or_else(|e| panic!("{e}"));
    ctl(&["user", "add", "root", "--new-user-password=root-secret"]);
    ctl(&["user", "grant-role", "root", "root"]);
    ctl(&["role", "add", "flannel"]);
    ctl(&[
        "role",
        "grant-permission",
        "flannel",
        "--prefix=true",
        "readwrite",
        &format!("{PREFIX}/"),
    ]);
    ctl(&["user", "add", "flannel", "--new-user-password=s3cret pass"]);
    ctl(&["user", "grant-role", "flannel", "flannel"]);
    ctl(&["auth", "enable"]);
    // Auth is on: anonymous reads fail now.
    assert!(etcd.etcdctl(&["get", &format!("{PREFIX}/config")]).is_err());

    let host = underlay.add_host(Segment::A, "u1").unwrap();
    let mut good = start_flanneld(
        host,
        &etcd,
        &["--etcd-username=flannel", "--etcd-password=s3cret pass"],
        None,
    );
    good.wait_ready(START).unwrap();
    let subnet = good.subnet().unwrap();
    let out = etcd
        .etcdctl(&[
            "--user=root:root-secret",
            "get",
            "--print-value-only",
            &format!(
                "{PREFIX}/subnets/{}-{}",
                subnet.network(),
                subnet.prefix_len()
            ),
        ])
        .unwrap();
    assert!(out.contains("\"PublicIP\""), "lease record: {out:?}");

    for (tag, creds) in [
        ("u2", ["--etcd-username=flannel", "--etcd-password=wrong"]),
        (
            "u3",
            ["--etcd-username=nobody", "--etcd-password=s3cret pass"],
        ),
    ] {
        let host = underlay.add_host(Segment::A, tag).unwrap();
        let bad = assert_refused(host, &etcd, &creds, "authentication failed");
        assert!(
            !bad.log().contains("s3cret"),
            "{tag}: the password is in the log:\n{}",
            bad.log()
        );
    }
    // Unauthenticated: etcd says so, flanneld says so.
    let host = underlay.add_host(Segment::A, "u4").unwrap();
    assert_refused(host, &etcd, &[], "user name is empty");
}

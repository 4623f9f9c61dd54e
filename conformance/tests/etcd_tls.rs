//! The etcd launcher's TLS options, with a throw-away CA made by openssl.

use std::process::Command;

use conformance::{Etcd, EtcdOptions, TestCa};

#[test]
fn etcd_serves_tls_and_enforces_client_certificates() {
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "fr-test-ca").unwrap();
    let server = ca
        .issue(
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
    let client = ca.issue("client", "extendedKeyUsage=clientAuth\n").unwrap();
    let tls = ca.mutual_etcd_tls(server, client);

    let etcd = Etcd::start(EtcdOptions::loopback().tls(tls)).unwrap();

    assert!(
        etcd.endpoint().starts_with("https://127.0.0.1:"),
        "{}",
        etcd.endpoint()
    );
    etcd.put("/secure", "yes").unwrap();
    assert_eq!(etcd.get("/secure").unwrap().as_deref(), Some("yes"));

    // Without a client certificate the server must refuse.
    let anonymous = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint(),
            "--dial-timeout=2s",
            "--command-timeout=3s",
            "get",
            "/secure",
        ])
        .arg("--cacert")
        .arg(ca.cert())
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "etcd answered a client without certificate"
    );
}

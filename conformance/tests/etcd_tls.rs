//! The etcd launcher's TLS options, with a throw-away CA made by openssl.

use std::path::{Path, PathBuf};
use std::process::Command;

use conformance::{Etcd, EtcdOptions, EtcdTls};

const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

/// Runs openssl in `dir`; `args` is split on whitespace (no argument here
/// contains any).
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args.split_whitespace())
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issues `<name>.crt`/`<name>.key` signed by the CA in `dir`.
fn issue(dir: &Path, name: &str, extensions: &str) -> (PathBuf, PathBuf) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    openssl(
        dir,
        &format!("req {EC_KEY} -keyout {name}.key -out {name}.csr -subj /CN={name}"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -out {name}.crt -extfile {name}.ext"
        ),
    );
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

#[test]
fn etcd_serves_tls_and_enforces_client_certificates() {
    let pki = tempfile::tempdir().unwrap();
    let dir = pki.path();
    openssl(
        dir,
        &format!("req -x509 {EC_KEY} -keyout ca.key -out ca.crt -subj /CN=fr-test-ca -days 1"),
    );
    let (cert, key) = issue(
        dir,
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let client = issue(dir, "client", "extendedKeyUsage=clientAuth\n");
    let tls = EtcdTls {
        cert,
        key,
        ca: dir.join("ca.crt"),
        client_cert_auth: true,
        client_cert: Some(client),
    };

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
        .arg(dir.join("ca.crt"))
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "etcd answered a client without certificate"
    );
}

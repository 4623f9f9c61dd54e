//! Throw-away PKI for tests of TLS to etcd: a one-day CA made by `openssl`, and
//! certificates it signs with whatever X.509 extensions a test needs.
//!
//! Keys are P-256 EC: quick to generate, and accepted by etcd, etcdctl and rustls alike.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, CmdError};
use crate::etcd::EtcdTls;

/// `openssl req` arguments for a fresh unencrypted P-256 key.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Openssl(#[from] CmdError),
}

/// How certificate and key files are named after their stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileNaming {
    /// `<stem>.crt` and `<stem>.key`.
    CrtKey,
    /// `<stem>.pem` and `<stem>-key.pem`, as cfssl writes them and the flannel tutorials
    /// refer to them.
    Pem,
}

impl FileNaming {
    fn cert(self, stem: &str) -> String {
        match self {
            FileNaming::CrtKey => format!("{stem}.crt"),
            FileNaming::Pem => format!("{stem}.pem"),
        }
    }

    fn key(self, stem: &str) -> String {
        match self {
            FileNaming::CrtKey => format!("{stem}.key"),
            FileNaming::Pem => format!("{stem}-key.pem"),
        }
    }
}

/// A self-signed CA whose files (stem `ca`) live in a directory the caller owns; the
/// certificates it issues go into the same directory.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    naming: FileNaming,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// A CA named `common_name` in `dir` (created if missing), files `ca.crt`/`ca.key`.
    pub fn new(dir: &Path, common_name: &str) -> Result<TestCa, TlsError> {
        TestCa::with_naming(dir, common_name, FileNaming::CrtKey)
    }

    /// A CA named `common_name` in `dir` (created if missing), its files and those it
    /// issues named after `naming`.
    pub fn with_naming(
        dir: &Path,
        common_name: &str,
        naming: FileNaming,
    ) -> Result<TestCa, TlsError> {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let (cert, key) = (naming.cert("ca"), naming.key("ca"));
        openssl(
            dir,
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(EC_KEY)
                .args(["-keyout", &key, "-out", &cert])
                .args(["-subj", &format!("/CN={common_name}"), "-days", "1"]),
        )?;
        Ok(TestCa {
            dir: dir.to_owned(),
            naming,
            cert: dir.join(cert),
            key: dir.join(key),
        })
    }

    /// The CA certificate: what servers and clients are told to trust.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The CA's private key. Self-signed, so (cert, key) also works as a client
    /// certificate that no other CA vouches for.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// Issues a certificate with subject `CN=<name>`, signed by this CA, carrying
    /// `extensions` (openssl extension-file lines, e.g. `extendedKeyUsage=clientAuth`).
    /// Returns (certificate, key) paths.
    pub fn issue(&self, name: &str, extensions: &str) -> Result<(PathBuf, PathBuf), TlsError> {
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, extensions).map_err(|source| TlsError::Io {
            path: ext.clone(),
            source,
        })?;
        let csr = format!("{name}.csr");
        let (cert, key) = (self.naming.cert(name), self.naming.key(name));
        openssl(
            &self.dir,
            Command::new("openssl")
                .arg("req")
                .args(EC_KEY)
                .args(["-keyout", &key, "-out", &csr])
                .args(["-subj", &format!("/CN={name}")]),
        )?;
        openssl(
            &self.dir,
            Command::new("openssl")
                .args(["x509", "-req", "-in", &csr])
                .arg("-CA")
                .arg(&self.cert)
                .arg("-CAkey")
                .arg(&self.key)
                .args(["-CAcreateserial", "-days", "1", "-out", &cert])
                .arg("-extfile")
                .arg(&ext),
        )?;
        Ok((self.dir.join(cert), self.dir.join(key)))
    }

    /// etcd serving `server` (from [`TestCa::issue`]) and requiring clients to present a
    /// certificate from this CA; `etcdctl` uses `client`.
    pub fn mutual_etcd_tls(
        &self,
        server: (PathBuf, PathBuf),
        client: (PathBuf, PathBuf),
    ) -> EtcdTls {
        EtcdTls {
            cert: server.0,
            key: server.1,
            ca: self.cert.clone(),
            client_cert_auth: true,
            client_cert: Some(client),
        }
    }
}

fn openssl(dir: &Path, cmd: &mut Command) -> Result<(), TlsError> {
    cmd::run(cmd.current_dir(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl verify` of `cert` against `ca`, with the purpose it must be fit for.
    fn verifies(ca: &TestCa, cert: &Path, purpose: &str) -> bool {
        Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(ca.cert())
            .arg(cert)
            .output()
            .unwrap()
            .status
            .success()
    }

    #[test]
    fn issued_certificates_chain_to_their_ca_only() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = TestCa::new(tmp.path(), "unit-ca").unwrap();
        let (server, server_key) = ca.issue("server", "extendedKeyUsage=serverAuth\n").unwrap();
        assert_eq!(server, tmp.path().join("server.crt"));
        assert!(server_key.exists());
        assert!(verifies(&ca, &server, "sslserver"));
        assert!(!verifies(&ca, &server, "sslclient"));

        let other = TestCa::new(&tmp.path().join("other"), "other-ca").unwrap();
        assert!(!verifies(&other, &server, "sslserver"));
    }

    #[test]
    fn pem_naming_follows_the_cfssl_convention() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = TestCa::with_naming(tmp.path(), "unit-ca", FileNaming::Pem).unwrap();
        assert_eq!(ca.cert(), tmp.path().join("ca.pem"));
        assert_eq!(ca.key(), tmp.path().join("ca-key.pem"));
        let (cert, key) = ca.issue("node", "extendedKeyUsage=clientAuth\n").unwrap();
        assert_eq!(
            (cert.as_path(), key.as_path()),
            (
                tmp.path().join("node.pem").as_path(),
                tmp.path().join("node-key.pem").as_path()
            )
        );
        assert!(verifies(&ca, &cert, "sslclient"));
    }

    #[test]
    fn openssl_failures_name_the_command() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = TestCa::new(tmp.path(), "unit-ca").unwrap();
        let err = ca.issue("bad", "noSuchExtension=1\n").unwrap_err();
        assert!(err.to_string().contains("openssl x509 -req"), "{err}");
    }
}

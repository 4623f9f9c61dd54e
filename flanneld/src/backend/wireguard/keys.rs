//! The node's private key file and the network's pre-shared key, as upstream handles them
//! (flannel-io/flannel `pkg/backend/wireguard/device.go`, `setupKeys` / `writePrivateKey`):
//!
//! - The path is `$WIREGUARD_KEY_FILE`, default `/run/flannel/wgkey`.
//! - Absent: a key is generated (clamped, as `wgtypes.GeneratePrivateKey` and `wg genkey`
//!   make them), its folder created with mode 0755, and the key written as base64 without a
//!   newline to a file of mode 0400. Unlike upstream (create, chmod, write), the file appears
//!   only complete: it is written under a temporary name and renamed, so a crash can never
//!   leave a truncated key behind.
//! - Present: read and parsed; base64 line breaks are skipped, as Go's decoder does. A file
//!   that does not parse is an error and is never replaced: a new key would cut the node off
//!   from every peer that knows the old one.
//! - `PSK`, when set, is parsed the same way.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use boringtun::x25519::{PublicKey, StaticSecret};

use crate::subnet::{KeyError, WgKey};

/// Upstream's default location of the private key.
pub const DEFAULT_KEY_FILE: &str = "/run/flannel/wgkey";
/// The variable upstream reads the location from.
pub const KEY_FILE_ENV: &str = "WIREGUARD_KEY_FILE";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("could not read private key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("could not write key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "could not parse private key from file {path}: {reason}; the file is left as it is \
         (peers know this node by its key): restore it, or delete it to have a new key made \
         and every peer learn it from this node's lease"
    )]
    Corrupt { path: PathBuf, reason: KeyError },
    #[error("PSK: could not parse psk: {0}")]
    Psk(KeyError),
}

/// The node's key pair.
#[derive(Clone)]
pub struct NodeKey {
    pub private: WgKey,
    pub public: WgKey,
    /// Whether this run created the file.
    pub created: bool,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NodeKey {{ public: {}, created: {} }}",
            self.public, self.created
        )
    }
}

/// The public key of `private`.
pub fn public_of(private: &WgKey) -> WgKey {
    WgKey(*PublicKey::from(&StaticSecret::from(private.0)).as_bytes())
}

/// A new private key, clamped as WireGuard tools store them.
pub fn generate() -> WgKey {
    let secret = StaticSecret::random();
    WgKey(curve25519_dalek::scalar::clamp_integer(secret.to_bytes()))
}

/// Where the key lives: `$WIREGUARD_KEY_FILE` or upstream's default.
pub fn key_file_path(env: impl Fn(&str) -> Option<String>) -> PathBuf {
    env(KEY_FILE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE))
}

/// Reads the key at `path`, or creates it if there is no file there.
pub fn load_or_create(path: &Path) -> Result<NodeKey, KeyFileError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let private = generate();
            write_new(path, &private.to_base64()).map_err(|source| KeyFileError::Write {
                path: path.to_owned(),
                source,
            })?;
            log::info!(
                "wireguard: created private key file {} (public key {})",
                path.display(),
                public_of(&private)
            );
            Ok(NodeKey {
                public: public_of(&private),
                private,
                created: true,
            })
        }
        _ => {
            let text = fs::read_to_string(path).map_err(|source| KeyFileError::Read {
                path: path.to_owned(),
                source,
            })?;
            let private = WgKey::parse(&text).map_err(|reason| KeyFileError::Corrupt {
                path: path.to_owned(),
                reason,
            })?;
            Ok(NodeKey {
                public: public_of(&private),
                private,
                created: false,
            })
        }
    }
}

/// Writes `content` to a new owner-read-only file at `path`, all or nothing.
fn write_new(path: &Path, content: &str) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        // A rename onto an existing file would replace a key another flanneld just wrote.
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    written?;
    if let Some(dir) = dir {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The network's pre-shared key, if one is configured.
pub fn psk(text: Option<&str>) -> Result<Option<WgKey>, KeyFileError> {
    text.map(|t| WgKey::parse(t).map_err(KeyFileError::Psk))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_owner_only_without_newline_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/wgkey");
        let first = load_or_create(&path).unwrap();
        assert!(first.created);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 44, "{text:?}");
        assert!(!text.ends_with('\n'));
        assert_eq!(WgKey::parse(&text).unwrap(), first.private);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o755);
        // Clamped, as WireGuard's tools store private keys.
        assert_eq!(first.private.0[0] & 7, 0);
        assert_eq!(first.private.0[31] & 0xc0, 0x40);

        let again = load_or_create(&path).unwrap();
        assert!(!again.created);
        assert_eq!(again.private, first.private);
        assert_eq!(again.public, first.public);
        assert_eq!(
            fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn public_key_matches_wireguard_tools() {
        // `echo <private> | wg pubkey` on this machine.
        let private = WgKey::parse("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=").unwrap();
        assert_eq!(
            public_of(&private).to_base64(),
            "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
        );
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wgkey");
        for bad in [
            "",
            "not a key",
            "AAAA",
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBm==",
        ] {
            fs::write(&path, bad).unwrap();
            let e = load_or_create(&path).unwrap_err();
            assert!(matches!(e, KeyFileError::Corrupt { .. }), "{bad:?}: {e}");
            assert!(
                e.to_string()
                    .contains("could not parse private key from file"),
                "{e}"
            );
            assert_eq!(fs::read_to_string(&path).unwrap(), bad, "never replaced");
        }
        // A trailing newline (wg genkey > file) is fine, as for upstream.
        fs::write(&path, "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n").unwrap();
        assert!(load_or_create(&path).is_ok());
    }

    #[test]
    fn psk_parses_or_names_the_key() {
        assert_eq!(psk(None).unwrap(), None);
        assert!(psk(Some("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="))
            .unwrap()
            .is_some());
        let e = psk(Some("short")).unwrap_err().to_string();
        assert!(e.starts_with("PSK: could not parse psk: "), "{e}");
    }

    #[test]
    fn key_file_location_follows_the_environment() {
        assert_eq!(key_file_path(|_| None), PathBuf::from("/run/flannel/wgkey"));
        assert_eq!(
            key_file_path(|k| (k == "WIREGUARD_KEY_FILE").then(|| "/etc/wg/k".into())),
            PathBuf::from("/etc/wg/k")
        );
    }
}

//! Loading flanneld's `subnet.env` the way the plugin needs it: present, parseable, complete.

use std::path::Path;

use netconf::subnet_env::{SubnetEnv, SubnetEnvError};

use netconf::goerror::io_error_text;

#[derive(Debug, thiserror::Error)]
pub enum SubnetLoadError {
    /// Worded like Go's `*os.PathError` (`open /run/flannel/subnet.env: no such file or
    /// directory`), the message every flannel troubleshooting guide quotes.
    #[error("open {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(transparent)]
    Parse(#[from] SubnetEnvError),
}

impl SubnetLoadError {
    /// True when the file does not exist at all (flanneld never started or has not yet
    /// acquired a lease), as opposed to existing but being unusable.
    pub fn is_missing(&self) -> bool {
        matches!(self, SubnetLoadError::Open { reason, .. } if reason == "no such file or directory")
    }
}

/// Reads and validates `path`: every key the plugin needs must be present.
pub fn load(path: &Path) -> Result<SubnetEnv, SubnetLoadError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        let reason = io_error_text(&e);
        // Go opens first and reads second; only a directory (EISDIR) fails at the read.
        if e.raw_os_error() == Some(21) {
            SubnetLoadError::Read {
                path: shown.clone(),
                reason,
            }
        } else {
            SubnetLoadError::Open {
                path: shown.clone(),
                reason,
            }
        }
    })?;
    let env = SubnetEnv::parse(&String::from_utf8_lossy(&bytes))?;
    env.ensure_complete(&shown)?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let p = dir.path().join("subnet.env");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn missing_file_is_reported_like_go() {
        let err = load(Path::new("/nonexistent/flannel/subnet.env")).unwrap_err();
        assert!(err.is_missing());
        assert_eq!(
            err.to_string(),
            "open /nonexistent/flannel/subnet.env: no such file or directory"
        );
    }

    #[test]
    fn directory_fails_at_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(!err.is_missing());
        assert_eq!(
            err.to_string(),
            format!("read {}: is a directory", dir.path().display())
        );
    }

    #[test]
    fn incomplete_file_names_every_missing_key_in_upstream_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "FLANNEL_MTU=1450\n");
        let err = load(&p).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_IPMASQ",
                p.display()
            )
        );
        let p = write(&dir, "");
        assert!(load(&p).unwrap_err().to_string().ends_with(
            "is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ"
        ));
    }

    #[test]
    fn malformed_values_are_parse_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=bogus\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
        assert!(matches!(load(&p).unwrap_err(), SubnetLoadError::Parse(_)));
    }

    #[test]
    fn complete_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        );
        let env = load(&p).unwrap();
        assert_eq!(env.mtu, Some(1450));
        assert_eq!(env.subnet_network().unwrap().to_string(), "10.244.1.0/24");
    }
}

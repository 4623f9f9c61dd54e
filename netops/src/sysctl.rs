//! `/proc/sys` access for the current thread's network namespace.
//!
//! Keys use the slash form (`net/ipv4/conf/flannel.1/accept_ra`): the dotted form is ambiguous
//! for interface names that contain dots. `/proc/sys/net` is resolved per *thread* by the
//! kernel, so a caller holding a [`crate::netns::NetnsGuard`] reads and writes the
//! namespace it entered.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("invalid sysctl key {0:?}")]
    InvalidKey(String),
    #[error("failed to read sysctl {key}: {source}")]
    Read { key: String, source: std::io::Error },
    #[error("failed to write sysctl {key}={value}: {source}")]
    Write {
        key: String,
        value: String,
        source: std::io::Error,
    },
}

fn path_of(key: &str) -> Result<PathBuf, SysctlError> {
    let valid = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !valid {
        return Err(SysctlError::InvalidKey(key.to_string()));
    }
    Ok(PathBuf::from("/proc/sys").join(key))
}

/// Reads a sysctl, without the trailing newline.
pub fn get(key: &str) -> Result<String, SysctlError> {
    let path = path_of(key)?;
    let raw = std::fs::read_to_string(&path).map_err(|source| SysctlError::Read {
        key: key.to_string(),
        source,
    })?;
    Ok(raw.trim_end_matches('\n').to_string())
}

/// Writes `value` unless the sysctl already holds it; returns whether it wrote.
///
/// Read-before-write avoids needless writes that some keys turn into side effects (writing
/// `forwarding` resets per-interface settings; writing `disable_ipv6` re-runs address setup).
/// Comparison ignores whitespace differences the kernel introduces (tabs in multi-value keys).
pub fn set(key: &str, value: &str) -> Result<bool, SysctlError> {
    let current = get(key)?;
    if normalize(&current) == normalize(value) {
        return Ok(false);
    }
    let path = path_of(key)?;
    std::fs::write(&path, value).map_err(|source| SysctlError::Write {
        key: key.to_string(),
        value: value.to_string(),
        source,
    })?;
    Ok(true)
}

fn normalize(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escaping_keys() {
        for key in ["", "/etc/passwd", "net/../../etc", "net//ipv4", "net/./x"] {
            assert!(
                matches!(path_of(key), Err(SysctlError::InvalidKey(_))),
                "{key}"
            );
        }
        assert_eq!(
            path_of("net/ipv4/conf/flannel.1/accept_ra").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/flannel.1/accept_ra")
        );
    }

    #[test]
    fn normalizes_multi_value_whitespace() {
        assert_eq!(
            normalize("4096\t131072  6291456\n"),
            normalize("4096 131072 6291456")
        );
        assert_ne!(normalize("1"), normalize("0"));
    }

    #[test]
    fn reads_a_namespace_independent_key() {
        let v = get("kernel/ostype").unwrap();
        assert_eq!(v, "Linux");
    }
}

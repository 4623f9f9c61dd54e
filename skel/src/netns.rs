//! Go skel's guard against a runtime passing the plugin's own network namespace as
//! `CNI_NETNS` (`ns.CheckNetNS`).

use std::os::unix::fs::MetadataExt;

use netconf::{codes, CniError};

/// Whether `netns` names the namespace this thread runs in. A path that cannot be opened is
/// "not the same" (DEL must work on deleted namespaces).
pub fn is_own_netns(netns: &str) -> Result<bool, CniError> {
    if netns.is_empty() {
        return Ok(false);
    }
    let Ok(target) = std::fs::metadata(netns) else {
        return Ok(false);
    };
    let own = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|_| CniError::new(codes::INVALID_NETNS, "get plugin's netns failed"))?;
    Ok(target.dev() == own.dev() && target.ino() == own.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_own_namespace_only() {
        assert!(is_own_netns("/proc/self/ns/net").unwrap());
        assert!(!is_own_netns("").unwrap());
        assert!(!is_own_netns("/nonexistent/netns").unwrap());
        assert!(
            !is_own_netns("/proc/self/ns/uts").unwrap(),
            "another namespace file"
        );
    }
}

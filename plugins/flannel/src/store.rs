//! Per-container saved delegate configs: `<dataDir>/<containerID>`, written before the
//! delegate runs so DEL can replay exactly what ADD sent.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use netconf::env::is_valid_name;
use netops::file::{write_atomic, AtomicWrite};

use crate::error::FlannelError;

/// A leading dot is never a valid container ID, so GC and lookups ignore the temporary files.
const SAVED_CONFIG: AtomicWrite = AtomicWrite::new(0o600).create_dirs(0o700);

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// skel already rejects such IDs, and GC's attachment lists come from stdin: checking
    /// here as well keeps a `../x` from ever being joined onto the data dir.
    pub fn path_for(&self, container_id: &str) -> Result<PathBuf, FlannelError> {
        if !is_valid_name(container_id) {
            return Err(FlannelError::InvalidContainerId(container_id.to_owned()));
        }
        Ok(self.dir.join(container_id))
    }

    /// Saves atomically (temp file, then rename): upstream truncates and rewrites in place, so
    /// a concurrent reader or a crashed plugin could leave a torn file. No fsync, as upstream:
    /// two of them doubled an ADD on this class of disk, a power loss ends the pod anyway, and
    /// DEL copes with an empty or torn file. The directory is 0700 and the file 0600.
    pub fn save(&self, container_id: &str, bytes: &[u8]) -> Result<(), FlannelError> {
        let path = self.path_for(container_id)?;
        Ok(write_atomic(&path, bytes, SAVED_CONFIG)?)
    }

    /// The saved bytes, or `None` when nothing was saved for this container.
    pub fn load(&self, container_id: &str) -> Result<Option<Vec<u8>>, FlannelError> {
        let path = self.path_for(container_id)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FlannelError::io("open", &path, e)),
        }
    }

    /// Removes the saved config; already gone is fine.
    pub fn remove(&self, container_id: &str) -> Result<(), FlannelError> {
        let path = self.path_for(container_id)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(FlannelError::io("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// Container IDs with a saved config, sorted. A missing data dir holds none.
    pub fn ids(&self) -> Result<Vec<String>, FlannelError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FlannelError::io("open", &self.dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FlannelError::io("readdir", &self.dir, e))?;
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if let Some(name) = entry
                .file_name()
                .to_str()
                .filter(|n| is_file && is_valid_name(n))
            {
                ids.push(name.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn save_load_remove_round_trip_with_upstream_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("a/flannel"));
        assert_eq!(store.load("ctr1").unwrap(), None);
        store.save("ctr1", b"{\"type\":\"bridge\"}").unwrap();
        store.save("ctr1", b"{\"type\":\"ptp\"}").unwrap();
        assert_eq!(store.load("ctr1").unwrap().unwrap(), b"{\"type\":\"ptp\"}");
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("ctr1")), 0o600);
        assert_eq!(store.ids().unwrap(), vec!["ctr1"]);
        store.remove("ctr1").unwrap();
        store.remove("ctr1").unwrap();
        assert_eq!(store.load("ctr1").unwrap(), None);
        assert_eq!(
            fs::read_dir(store.dir()).unwrap().count(),
            0,
            "no temp files left behind"
        );
    }

    #[test]
    fn path_traversal_ids_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        for bad in ["../etc/passwd", "", ".hidden", "a/b"] {
            assert!(
                matches!(
                    store.save(bad, b"{}"),
                    Err(FlannelError::InvalidContainerId(_))
                ),
                "{bad}"
            );
            assert!(store.load(bad).is_err());
            assert!(store.remove(bad).is_err());
        }
    }

    #[test]
    fn ids_skip_temp_files_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        fs::write(tmp.path().join(".b.tmp-1"), b"").unwrap();
        fs::create_dir(tmp.path().join("subdir")).unwrap();
        fs::write(tmp.path().join("b"), b"").unwrap();
        fs::write(tmp.path().join("a"), b"").unwrap();
        assert_eq!(store.ids().unwrap(), vec!["a", "b"]);
        assert!(Store::new(tmp.path().join("missing"))
            .ids()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn unwritable_dir_is_reported_like_go() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = Store::new(file.join("sub")).save("c", b"{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("mkdir {}: not a directory", file.join("sub").display())
        );
    }
}

//! Replacing a file so that readers see the old content or the new, never a torn file.
//!
//! flanneld rewrites `subnet.env` while plugins read it; the flannel plugin rewrites a saved
//! delegate config that DEL replays; host-local moves `last_reserved_ip.N` under its lock but
//! shares the directory with upstream's binary. All of them write a hidden temporary file
//! beside the target and rename it over the target, which the kernel does atomically within
//! one filesystem.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use netconf::goerror::PathError;

/// How [`write_atomic`] replaces a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicWrite {
    /// The new file's permission bits, whatever the umask.
    pub mode: u32,
    /// Creates a missing parent directory, and its parents, with these permission bits.
    pub create_dirs: Option<u32>,
    /// fsync the file before the rename and its directory after it, so the new content
    /// survives a power loss. Costs milliseconds per write on ordinary disks.
    pub durable: bool,
}

impl AtomicWrite {
    /// A replacement with permission bits `mode`, into an existing directory, not synced.
    pub const fn new(mode: u32) -> AtomicWrite {
        AtomicWrite {
            mode,
            create_dirs: None,
            durable: false,
        }
    }

    pub const fn create_dirs(self, mode: u32) -> AtomicWrite {
        AtomicWrite {
            create_dirs: Some(mode),
            ..self
        }
    }

    pub const fn durable(self) -> AtomicWrite {
        AtomicWrite {
            durable: true,
            ..self
        }
    }
}

/// The temporary file that becomes `path`: hidden (a leading dot, which the flannel plugin's
/// store skips) and ending in `.tmp` (which host-local's GC removes when a crash leaves one),
/// unique per process and call so concurrent writers never share one.
fn temp_path(dir: &Path, path: &Path) -> Result<PathBuf, PathError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "path has no file name");
        PathError::new("open", path, e)
    })?;
    Ok(dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

/// Replaces `path` with `contents`. On failure nothing is left behind but what was there
/// before, and the error names the step (`mkdir`, `open`, `chmod`, `write`, `sync`, `rename`)
/// and the path it failed on, as Go's `*os.PathError` does.
pub fn write_atomic(path: &Path, contents: &[u8], how: AtomicWrite) -> Result<(), PathError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Some(mode) = how.create_dirs {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|e| PathError::new("mkdir", dir, e))?;
    }
    let tmp = temp_path(dir, path)?;
    let at = |op: &'static str| {
        let tmp = &tmp;
        move |e| PathError::new(op, tmp, e)
    };
    let write = || -> Result<(), PathError> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(how.mode)
            .open(&tmp)
            .map_err(at("open"))?;
        f.set_permissions(fs::Permissions::from_mode(how.mode))
            .map_err(at("chmod"))?;
        f.write_all(contents).map_err(at("write"))?;
        if how.durable {
            f.sync_all().map_err(at("sync"))?;
        }
        fs::rename(&tmp, path).map_err(|e| PathError::new("rename", path, e))
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    if how.durable {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PathError::new("sync", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_with_the_mode_asked_for_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/subnet.env");
        write_atomic(
            &path,
            b"one",
            AtomicWrite::new(0o644).create_dirs(0o755).durable(),
        )
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o644, 0o755));
        // A restrictive umask does not reach the file (flanneld's renameio behaviour). Other
        // tests here create files only in their own temp dirs, where it changes nothing.
        // SAFETY: umask(2) has no memory-safety preconditions.
        let old = unsafe { libc::umask(0o077) };
        let res = write_atomic(&path, b"umask", AtomicWrite::new(0o644));
        unsafe { libc::umask(old) };
        res.unwrap();
        assert_eq!(mode(&path), 0o644);
        write_atomic(&path, b"two", AtomicWrite::new(0o600)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(path.parent().unwrap()), ["subnet.env"]);
    }

    #[test]
    fn temp_files_are_hidden_and_end_in_tmp() {
        let dir = Path::new("/d");
        let a = temp_path(dir, &dir.join("10.0.0.2")).unwrap();
        let b = temp_path(dir, &dir.join("10.0.0.2")).unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".10.0.0.2.") && name.ends_with(".tmp"),
            "{name}"
        );
    }

    #[test]
    fn failures_name_the_step_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let e = write_atomic(
            &file.join("sub/x"),
            b"",
            AtomicWrite::new(0o600).create_dirs(0o700),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("mkdir {}: not a directory", file.join("sub").display())
        );
        let e =
            write_atomic(&dir.path().join("missing/x"), b"", AtomicWrite::new(0o600)).unwrap_err();
        assert_eq!(e.op, "open");
        assert!(
            e.to_string().ends_with(": no such file or directory"),
            "{e}"
        );
        // A directory cannot be replaced by a file; the temporary file goes again.
        fs::create_dir(dir.path().join("d")).unwrap();
        let e = write_atomic(&dir.path().join("d"), b"x", AtomicWrite::new(0o600)).unwrap_err();
        assert_eq!(e.op, "rename");
        assert_eq!(names(dir.path()), ["d", "file"]);
    }
}

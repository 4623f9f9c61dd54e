//! The on-disk store, laid out exactly like upstream's so Go and Rust binaries can share it:
//!
//! * `<dataDir>/<network>/<ip>`: one file per allocated address, content `<containerID>\r\n<ifname>`
//!   (files holding only `<containerID>` come from old versions and still count as owned by it);
//! * `last_reserved_ip.<set index>`: where the round-robin walk of that range set resumes;
//! * `lock`: the file both implementations `flock(LOCK_EX)` around every read-modify-write.
//!
//! Files appear fully written or not at all: content goes to a hidden temporary file that is then
//! hard-linked to the address name (which fails if the name exists, exactly like `O_EXCL`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use netops::file::{write_atomic, AtomicWrite};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::PathError;
use crate::ip;

const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LINE_BREAK: &str = "\r\n";
const TEMP_SUFFIX: &str = ".tmp";

/// An opened (not yet locked) store directory for one network.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    lock: File,
}

/// Proof that this process holds the store's lock; released on drop.
#[derive(Debug)]
pub struct Locked<'a> {
    store: &'a Store,
    _lock: Flock<File>,
}

impl Store {
    /// Creates `<data_dir>/<network>` (mode 0755) if needed and opens its lock file the way
    /// go-filemutex does (`O_CREAT|O_RDONLY`, mode 0750).
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, PathError> {
        let dir = data_dir.join(network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| PathError::new("mkdir", &dir, e))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CREAT)
            .mode(0o750)
            .open(&lock_path)
            .map_err(|e| PathError::new("open", &lock_path, e))?;
        Ok(Store { dir, lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Blocks until the exclusive lock is held. The guard holds a duplicate descriptor of the
    /// lock file: a flock belongs to the open file, which both share.
    pub fn lock(&self) -> Result<Locked<'_>, PathError> {
        let error = |e: io::Error| PathError::new("flock", self.dir.join("lock"), e);
        let mut file = self.lock.try_clone().map_err(error)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => {
                    return Ok(Locked {
                        store: self,
                        _lock: lock,
                    })
                }
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => return Err(error(io::Error::from(errno))),
            }
        }
    }
}

fn owner_key(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// A regular file found under the store directory, with its whitespace-trimmed content.
struct Entry {
    path: PathBuf,
    name: String,
    owner: String,
}

/// Every readable non-directory below `dir`, in lexical order and recursively, like Go's
/// `filepath.Walk` that upstream uses; unreadable entries are skipped.
fn walk(dir: &Path, out: &mut Vec<Entry>) {
    let Ok(read) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = read.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, out);
            continue;
        }
        let Ok(bytes) = fs::read(&path) else { continue };
        let owner = String::from_utf8_lossy(&bytes).trim().to_string();
        out.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            path,
            owner,
        });
    }
}

impl Locked<'_> {
    fn dir(&self) -> &Path {
        &self.store.dir
    }

    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        walk(self.dir(), &mut out);
        out
    }

    /// Claims `ip` for `(id, ifname)`; `Ok(false)` when someone already holds it. On success the
    /// set's round-robin position is moved to `ip`.
    pub fn reserve(
        &self,
        id: &str,
        ifname: &str,
        ip: IpAddr,
        set_index: usize,
    ) -> Result<bool, PathError> {
        let name = ip.to_string();
        let path = self.dir().join(&name);
        if !self.create_exclusive(&path, &name, owner_key(id, ifname).as_bytes())? {
            return Ok(false);
        }
        if let Err(e) = self.write_last_reserved(set_index, &name) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(true)
    }

    /// Creates `path` with `content`, failing with `Ok(false)` if it exists; never leaves a
    /// partially written `path` behind.
    fn create_exclusive(&self, path: &Path, name: &str, content: &[u8]) -> Result<bool, PathError> {
        let temp = self.dir().join(format!(".{name}{TEMP_SUFFIX}"));
        write_file(&temp, content, false).map_err(|e| PathError::new("write", path, e))?;
        let linked = fs::hard_link(&temp, path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            // Filesystems without hard links: O_EXCL, and remove what a failed write left.
            Err(_) => match write_file(path, content, true) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(PathError::new("open", path, e)),
            },
        }
    }

    /// Replaces `last_reserved_ip.<n>` atomically; any failure reads as upstream's
    /// `open <path>: ...`.
    fn write_last_reserved(&self, set_index: usize, ip: &str) -> Result<(), PathError> {
        let path = self
            .dir()
            .join(format!("{LAST_RESERVED_PREFIX}{set_index}"));
        write_atomic(&path, ip.as_bytes(), AtomicWrite::new(0o600))
            .map_err(|e| PathError::new("open", &path, e.source))
    }

    /// Where set `set_index` last allocated; unreadable or garbled content counts as unknown.
    pub fn last_reserved_ip(&self, set_index: usize) -> Option<IpAddr> {
        let text = fs::read_to_string(
            self.dir()
                .join(format!("{LAST_RESERVED_PREFIX}{set_index}")),
        )
        .ok()?;
        ip::parse_canonical(&text)
    }

    /// Addresses held by `(id, ifname)` or, in legacy files, by `id` alone.
    pub fn owned_ips(&self, id: &str, ifname: &str) -> Vec<IpAddr> {
        let key = owner_key(id, ifname);
        let legacy = id.trim();
        self.entries()
            .into_iter()
            .filter(|e| e.owner == key || e.owner == legacy)
            .filter_map(|e| ip::parse_canonical(&e.name))
            .collect()
    }

    /// Whether `(id, ifname)` (or, failing that, legacy `id`) holds anything at all.
    pub fn has_owner(&self, id: &str, ifname: &str) -> bool {
        let entries: Vec<Entry> = self
            .entries()
            .into_iter()
            .filter(|e| !is_temp(&e.name))
            .collect();
        let key = owner_key(id, ifname);
        entries.iter().any(|e| e.owner == key) || entries.iter().any(|e| e.owner == id.trim())
    }

    /// Frees everything held by `(id, ifname)`; only when nothing matched, files of legacy `id`.
    /// Missing files are not an error: releasing is idempotent.
    pub fn release(&self, id: &str, ifname: &str) -> Result<(), PathError> {
        let entries = self.entries();
        if !remove_owned(&entries, &owner_key(id, ifname))? {
            remove_owned(&entries, id.trim())?;
        }
        Ok(())
    }

    /// Frees `ip` if `(id, ifname)` holds it; used to undo this ADD's own reservations only.
    pub fn release_ip(&self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool, PathError> {
        let path = self.dir().join(ip.to_string());
        match fs::read(&path) {
            Ok(bytes) if String::from_utf8_lossy(&bytes).trim() == owner_key(id, ifname) => {
                remove(&path)
            }
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(PathError::new("open", &path, e)),
        }
    }

    /// Frees every address whose owner is not in `valid` (`(containerID, ifname)` pairs; a legacy
    /// file survives if its container ID appears at all) and removes temporary files a crash left.
    /// Returns the freed addresses.
    pub fn gc(&self, valid: &[(String, String)]) -> Result<Vec<IpAddr>, PathError> {
        let mut freed = Vec::new();
        let Ok(read) = fs::read_dir(self.dir()) else {
            return Ok(freed);
        };
        let mut names: Vec<String> = read
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let path = self.dir().join(&name);
            if is_temp(&name) {
                remove(&path)?;
                continue;
            }
            let Some(addr) = ip::parse_canonical(&name) else {
                continue;
            };
            let Ok(bytes) = fs::read(&path) else { continue };
            let content = String::from_utf8_lossy(&bytes);
            let owner = content.trim();
            let in_use = match owner.split_once(LINE_BREAK) {
                Some((id, ifname)) => valid
                    .iter()
                    .any(|(v_id, v_if)| v_id.trim() == id && v_if == ifname),
                None => !owner.is_empty() && valid.iter().any(|(v_id, _)| v_id.trim() == owner),
            };
            if !in_use && remove(&path)? {
                freed.push(addr);
            }
        }
        Ok(freed)
    }
}

/// Removes every entry held by `owner`, carrying on past failures so one stuck file does not keep
/// the others allocated; the first failure is reported.
fn remove_owned(entries: &[Entry], owner: &str) -> Result<bool, PathError> {
    let mut found = false;
    let mut first_error = None;
    for e in entries.iter().filter(|e| e.owner == owner) {
        match remove(&e.path) {
            Ok(removed) => found |= removed,
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(found), Err)
}

/// `Ok(false)` if the file was already gone.
fn remove(path: &Path) -> Result<bool, PathError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(PathError::new("remove", path, e)),
    }
}

/// Writes `content` to `path` (mode 0600); with `exclusive` the file must not exist yet and is
/// removed again if writing fails.
///
/// No fsync, as upstream: on this class of disk each one costs milliseconds, two per ADD
/// doubled the plugin's time, and what they would protect is a reservation whose container a
/// power loss has ended anyway. Readers never see partial content (the callers write a
/// temporary file and link or rename it into place), and an empty reservation a crash might
/// leave holds its address only until the next GC, which frees it (no attachment owns it;
/// `gc_keeps_valid_attachments_and_drops_the_rest`).
fn write_file(path: &Path, content: &[u8], exclusive: bool) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).mode(0o600);
    if exclusive {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    let mut file = opts.open(path)?;
    let written = file.write_all(content);
    if written.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    written
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;

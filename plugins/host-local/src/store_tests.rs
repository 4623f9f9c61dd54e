use std::os::unix::fs::PermissionsExt;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net1").unwrap();
    (tmp, store)
}

fn read(store: &Store, name: &str) -> String {
    fs::read_to_string(store.dir().join(name)).unwrap()
}

fn names(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn layout_matches_upstream() {
    let (tmp, store) = store();
    let locked = store.lock().unwrap();
    assert!(locked.reserve(" ctr1 ", "eth0", ip("10.1.0.2"), 0).unwrap());
    assert!(locked.reserve("ctr1", "eth1", ip("fd00::2"), 1).unwrap());
    assert_eq!(read(&store, "10.1.0.2"), "ctr1\r\neth0");
    assert_eq!(read(&store, "fd00::2"), "ctr1\r\neth1");
    assert_eq!(read(&store, "last_reserved_ip.0"), "10.1.0.2");
    assert_eq!(read(&store, "last_reserved_ip.1"), "fd00::2");
    assert_eq!(
        names(&store),
        [
            "10.1.0.2",
            "fd00::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
    assert_eq!(mode(&store.dir().join("10.1.0.2")), 0o600);
    assert_eq!(mode(&store.dir().join("lock")), 0o750);
    assert_eq!(mode(&tmp.path().join("net1")), 0o755);
}

#[test]
fn reserve_is_exclusive() {
    let (_tmp, store) = store();
    let locked = store.lock().unwrap();
    assert!(locked.reserve("a", "eth0", ip("10.1.0.2"), 0).unwrap());
    assert!(!locked.reserve("b", "eth0", ip("10.1.0.2"), 0).unwrap());
    assert_eq!(read(&store, "10.1.0.2"), "a\r\neth0");
    assert!(!names(&store).iter().any(|n| n.ends_with(TEMP_SUFFIX)));
}

#[test]
fn last_reserved_garbage_is_ignored() {
    let (_tmp, store) = store();
    let locked = store.lock().unwrap();
    assert_eq!(locked.last_reserved_ip(0), None);
    fs::write(store.dir().join("last_reserved_ip.0"), "10.1.0.").unwrap();
    assert_eq!(locked.last_reserved_ip(0), None);
    fs::write(store.dir().join("last_reserved_ip.0"), "10.1.0.7\n").unwrap();
    assert_eq!(
        locked.last_reserved_ip(0),
        None,
        "Go's ParseIP does not trim"
    );
    fs::write(store.dir().join("last_reserved_ip.0"), "10.1.0.7").unwrap();
    assert_eq!(locked.last_reserved_ip(0), Some(ip("10.1.0.7")));
}

#[test]
fn legacy_files_are_owned_by_their_id() {
    let (_tmp, store) = store();
    fs::write(store.dir().join("10.1.0.9"), "old\n").unwrap();
    let locked = store.lock().unwrap();
    assert_eq!(locked.owned_ips("old", "eth0"), [ip("10.1.0.9")]);
    assert!(locked.has_owner("old", "eth7"));
    assert!(!locked.has_owner("older", "eth0"));
    locked.release("old", "eth0").unwrap();
    assert!(!store.dir().join("10.1.0.9").exists());
}

#[test]
fn release_prefers_exact_owner_and_is_idempotent() {
    let (_tmp, store) = store();
    let locked = store.lock().unwrap();
    locked.reserve("c", "eth0", ip("10.1.0.2"), 0).unwrap();
    locked.reserve("c", "eth1", ip("10.1.0.3"), 0).unwrap();
    fs::write(store.dir().join("10.1.0.4"), "c").unwrap();
    locked.release("c", "eth0").unwrap();
    assert_eq!(
        names(&store),
        ["10.1.0.3", "10.1.0.4", "last_reserved_ip.0", "lock"]
    );
    locked.release("c", "eth0").unwrap();
    // No exact match any more, so the legacy file of the same container goes.
    assert_eq!(names(&store), ["10.1.0.3", "last_reserved_ip.0", "lock"]);
    locked.release("c", "eth0").unwrap();
    assert_eq!(locked.owned_ips("c", "eth1"), [ip("10.1.0.3")]);
}

#[test]
fn release_ip_only_frees_own_reservation() {
    let (_tmp, store) = store();
    let locked = store.lock().unwrap();
    locked.reserve("a", "eth0", ip("10.1.0.2"), 0).unwrap();
    assert!(!locked.release_ip(ip("10.1.0.2"), "b", "eth0").unwrap());
    assert!(!locked.release_ip(ip("10.1.0.3"), "a", "eth0").unwrap());
    assert!(locked.release_ip(ip("10.1.0.2"), "a", "eth0").unwrap());
    assert!(!store.dir().join("10.1.0.2").exists());
}

#[test]
fn gc_keeps_valid_attachments_and_drops_the_rest() {
    let (_tmp, store) = store();
    let locked = store.lock().unwrap();
    locked.reserve("keep", "eth0", ip("10.1.0.2"), 0).unwrap();
    locked.reserve("keep", "eth1", ip("10.1.0.3"), 0).unwrap();
    locked.reserve("gone", "eth0", ip("10.1.0.4"), 0).unwrap();
    fs::write(store.dir().join("10.1.0.5"), "keep").unwrap();
    fs::write(store.dir().join("10.1.0.6"), "gone").unwrap();
    fs::write(store.dir().join("10.1.0.7"), "").unwrap();
    fs::write(store.dir().join(".10.1.0.8.tmp"), "x\r\neth0").unwrap();
    let valid = vec![("keep".to_string(), "eth0".to_string())];
    let mut freed = locked.gc(&valid).unwrap();
    freed.sort();
    assert_eq!(
        freed,
        [
            ip("10.1.0.3"),
            ip("10.1.0.4"),
            ip("10.1.0.6"),
            ip("10.1.0.7")
        ]
    );
    assert_eq!(
        names(&store),
        ["10.1.0.2", "10.1.0.5", "last_reserved_ip.0", "lock"]
    );
    assert!(locked.gc(&valid).unwrap().is_empty());
}

#[test]
fn crash_leftover_temp_file_does_not_count_as_allocation() {
    let (_tmp, store) = store();
    fs::write(store.dir().join(".10.1.0.2.tmp"), "dead\r\neth0").unwrap();
    let locked = store.lock().unwrap();
    assert!(!locked.has_owner("dead", "eth0"));
    assert!(locked.owned_ips("dead", "eth0").is_empty());
    assert!(locked.reserve("live", "eth0", ip("10.1.0.2"), 0).unwrap());
    assert_eq!(read(&store, "10.1.0.2"), "live\r\neth0");
}

#[test]
fn open_reports_paths_like_go() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("file"), "").unwrap();
    let e = Store::open(&tmp.path().join("file"), "n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("mkdir {}/file/n: not a directory", tmp.path().display())
    );
}

#[test]
fn lock_excludes_other_processes_descriptors() {
    let (_tmp, store) = store();
    let other = Store::open(store.dir().parent().unwrap(), "net1").unwrap();
    let held = store.lock().unwrap();
    let try_other = || {
        let file = other.lock.try_clone().unwrap();
        Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)
    };
    assert_eq!(
        try_other().err(),
        Some(Errno::EWOULDBLOCK),
        "a second open file description must not get the lock"
    );
    drop(held);
    assert!(try_other().is_ok());
}

const FSIZE_CHILD_ENV: &str = "HOST_LOCAL_FSIZE_CHILD";

/// Runs in a child process (see `write_failures_leave_no_trace`): with RLIMIT_FSIZE set to
/// `limit` bytes every longer write fails with EFBIG, as on a full disk.
#[test]
fn child_reserve_with_file_size_limit() {
    let Ok(spec) = std::env::var(FSIZE_CHILD_ENV) else {
        return;
    };
    let (dir, limit) = spec.split_once('|').unwrap();
    let store = Store::open(Path::new(dir), "net1").unwrap();
    let limit = libc::rlimit {
        rlim_cur: limit.parse().unwrap(),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: process-wide settings in a process that exists only for this test.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let locked = store.lock().unwrap();
    match locked.reserve("a", "e", ip("10.1.0.2"), 0) {
        Ok(reserved) => println!("RESULT ok {reserved}"),
        Err(e) => println!("RESULT err {e}"),
    }
}

#[test]
fn write_failures_leave_no_trace() {
    // "a\r\ne" is 4 bytes, "10.1.0.2" is 8: a limit of 2 fails the address file, 6 fails only
    // last_reserved_ip, after which the address file must be gone again too.
    for (limit, failing_file) in [(2, "10.1.0.2"), (6, "last_reserved_ip.0")] {
        let tmp = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::child_reserve_with_file_size_limit",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FSIZE_CHILD_ENV, format!("{}|{limit}", tmp.path().display()))
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let result = stdout
            .split_once("RESULT ")
            .map(|(_, r)| r.lines().next().unwrap())
            .unwrap_or_else(|| panic!("{stdout}"));
        let dir = tmp.path().join("net1");
        let expected_op = if failing_file.starts_with("last") {
            "open"
        } else {
            "write"
        };
        assert_eq!(
            result,
            format!(
                "err {expected_op} {}/{failing_file}: file too large",
                dir.display()
            )
        );
        let left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["lock"], "limit {limit}");
    }
}

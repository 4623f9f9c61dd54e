//! The IPAM data dir (and flannel's) on a full and on a read-only filesystem: ADD fails with
//! a clear error and leaves nothing half-done — no IP file (complete or partial), no temp
//! file, no veth, no saved delegate config.
//!
//! The small filesystem is a tmpfs mounted inside a private mount namespace held by a
//! `sleep` process; the root mount namespace never sees it. Plugins run in that namespace
//! through `nsenter`, and the test reads the tmpfs through `/proc/<holder>/root`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use conformance::cni::our_bin_dir;
use conformance::support::hostile::{Bed, NET};
use serde_json::json;

/// A tmpfs at `mount_point`, visible only to the holder process and what `nsenter`s it.
struct PrivateTmpfs {
    holder: Child,
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl PrivateTmpfs {
    fn new(size: &str) -> PrivateTmpfs {
        let dir = tempfile::Builder::new()
            .prefix("fr-fsfault-")
            .tempdir()
            .unwrap();
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point).unwrap();
        let target = CString::new(mount_point.as_os_str().as_bytes()).unwrap();
        let tmpfs = CString::new("tmpfs").unwrap();
        let root = CString::new("/").unwrap();
        let opts = CString::new(format!("size={size},mode=0755")).unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("600").stdin(Stdio::null());
        // SAFETY: only async-signal-safe syscalls on pointers prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Private first, so the tmpfs cannot propagate back to the root namespace.
                check(libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    tmpfs.as_ptr(),
                    target.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    opts.as_ptr().cast(),
                ))
            });
        }
        let holder = cmd.spawn().expect("mount namespace holder");
        let fs = PrivateTmpfs {
            holder,
            mount_point,
            _dir: dir,
        };
        // The holder's view differs from ours only once the mount happened.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_dir(fs.inside(Path::new(""))).map_or(true, |mut d| d.next().is_some())
            || !is_tmpfs(&fs.inside(Path::new("")))
        {
            assert!(std::time::Instant::now() < deadline, "tmpfs never appeared");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !is_tmpfs(&fs.mount_point),
            "the tmpfs leaked into the root namespace"
        );
        fs
    }

    /// `rel` under the mount point, as the holder's namespace sees it.
    fn inside(&self, rel: &Path) -> PathBuf {
        let mut p = PathBuf::from(format!("/proc/{}/root", self.holder.id()));
        p.push(self.mount_point.strip_prefix("/").unwrap());
        p.push(rel);
        p
    }

    /// A command that runs in the holder's mount namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-m", "--", program]);
        c
    }

    /// Writes until the filesystem refuses.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.inside(Path::new("filler"))).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match std::io::Write::write(&mut f, &block) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
    }

    fn make_read_only(&self) {
        let mp = self.mount_point.display().to_string();
        let out = self
            .command("mount")
            .args(["-o", "remount,ro", &mp])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every path under the mount point except the filler, relative.
    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let base = self.inside(Path::new(""));
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(&base).unwrap().display().to_string();
                if rel != "filler" {
                    out.push(rel);
                }
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for PrivateTmpfs {
    fn drop(&mut self) {
        // The namespace, and with it the tmpfs, ends with its only process.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn is_tmpfs(p: &Path) -> bool {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type == libc::TMPFS_MAGIC
}

/// ADD of `plugin` (bridge or flannel) with its data dirs on `fs`.
fn add_on(bed: &Bed, fs: &PrivateTmpfs, plugin: &str) -> conformance::support::hostile::Reply {
    let mp = fs.mount_point.clone();
    let mut conf = bed.conf(plugin);
    match plugin {
        "bridge" => conf["ipam"]["dataDir"] = json!(mp.join("ipam")),
        "flannel" => {
            conf["dataDir"] = json!(mp.join("flannel"));
            conf["ipam"]["dataDir"] = json!(mp.join("ipam"));
        }
        other => panic!("{other}"),
    }
    let mut cmd = fs.command("ip");
    cmd.args(["netns", "exec", bed.host.name()])
        .arg(our_bin_dir().join(plugin));
    bed.invoke_cmd(cmd, &bed.env("ADD", &[]), conf.to_string().as_bytes())
}

fn assert_no_veth(bed: &Bed) {
    for ns in [&bed.host, &bed.pod] {
        let out = ns.exec(&["ip", "-o", "link", "show", "type", "veth"]);
        assert!(
            out.stdout.is_empty(),
            "leftover veth: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let pod = bed.pod.exec(&["ip", "-o", "link", "show", "eth0"]);
    assert!(!pod.status.success(), "eth0 left in the pod");
}

fn no_ip_files(files: &[String]) -> bool {
    files.iter().all(|f| {
        let name = f.rsplit('/').next().unwrap_or(f);
        name.parse::<std::net::IpAddr>().is_err()
            && !name.ends_with(".tmp")
            && !name.starts_with('.')
    })
}

#[test]
fn full_ipam_dir_fails_the_add_cleanly() {
    let bed = Bed::new("fsfull");
    let fs = PrivateTmpfs::new("256k");
    fs.fill();
    let reply = add_on(&bed, &fs, "bridge");
    reply.assert_error(999, "no space left on device");
    assert_no_veth(&bed);
    let files = fs.files();
    assert!(no_ip_files(&files), "half-written allocation: {files:?}");

    let reply = add_on(&bed, &fs, "flannel");
    assert_eq!(reply.status, Some(1), "{reply:?}");
    assert!(
        reply.stdout.contains("no space left on device"),
        "{reply:?}"
    );
    assert_no_veth(&bed);
    let files = fs.files();
    assert!(no_ip_files(&files), "half-written allocation: {files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.starts_with("flannel/") && f.ends_with("hostile-ctr")),
        "saved delegate config left: {files:?}"
    );
}

#[test]
fn read_only_ipam_dir_fails_the_add_cleanly() {
    let bed = Bed::new("fsro");
    let fs = PrivateTmpfs::new("1m");
    fs.make_read_only();
    for plugin in ["bridge", "flannel"] {
        let reply = add_on(&bed, &fs, plugin);
        assert_eq!(reply.status, Some(1), "{reply:?}");
        let err = reply.json();
        assert!(
            err["msg"]
                .as_str()
                .is_some_and(|m| m.contains("read-only file system")),
            "{reply:?}"
        );
        assert_no_veth(&bed);
        assert_eq!(
            fs.files(),
            Vec::<String>::new(),
            "{plugin} wrote on a read-only fs"
        );
    }
    // The same ADD on a writable dir works: the failure above was the filesystem's.
    let ok = bed.add("bridge", &[]);
    assert_eq!(ok.status, Some(0), "{ok:?}");
    let ips = std::fs::read_dir(bed.ipam_dir().join(NET)).unwrap().count();
    assert!(ips >= 2, "lock plus an IP file expected");
}

//! State written by the plugins has modes that hold whatever the caller's umask: a runtime
//! started with umask 0 must not get world-writable IPAM records or readable delegate
//! configs. Upstream's modes: flannel's dataDir 0700 and save files 0600, host-local's
//! network dir 0755 and records 0600. (subnet.env, 0644 ignoring umask, is checked in
//! flanneld_faults_more.rs.)

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use conformance::cni::our_bin_dir;
use conformance::support::hostile::{Bed, NET};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn all_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            all_under(&e.path(), out);
        }
    }
}

#[test]
fn plugin_state_has_fixed_modes_even_with_umask_zero() {
    let bed = Bed::new("fmode");
    let conf = bed.conf("flannel").to_string();
    let mut cmd = bed.host.command(our_bin_dir().join("flannel"));
    // SAFETY: umask(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let reply = bed.invoke_cmd(cmd, &bed.env("ADD", &[]), conf.as_bytes());
    assert_eq!(reply.status, Some(0), "{reply:?}");

    assert_eq!(mode(&bed.flannel_dir()), 0o700, "flannel dataDir");
    assert_eq!(
        mode(&bed.flannel_dir().join("hostile-ctr")),
        0o600,
        "saved delegate config"
    );
    let net_dir = bed.ipam_dir().join(NET);
    assert_eq!(mode(&net_dir), 0o755, "host-local network dir");
    let records: Vec<_> = std::fs::read_dir(&net_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.parse::<std::net::IpAddr>().is_ok() || name.starts_with("last_reserved_ip")
        })
        .collect();
    assert_eq!(
        records.len(),
        2,
        "one IP record and the round-robin position: {records:?}"
    );
    for r in &records {
        assert_eq!(mode(r), 0o600, "{}", r.display());
    }
    let mut everything = Vec::new();
    all_under(&bed.work(), &mut everything);
    for p in everything {
        assert_eq!(
            mode(&p) & 0o002,
            0,
            "world-writable: {} ({:o})",
            p.display(),
            mode(&p)
        );
    }

    let del = bed.invoke("flannel", &bed.env("DEL", &[]), conf.as_bytes());
    assert_eq!(del.status, Some(0), "{del:?}");
    assert!(!bed.flannel_dir().join("hostile-ctr").exists());
}

//! Running CNI plugins directly, without libcni: the plugin's own cost with
//! no Go driver starting up around it, and its peak memory.
//!
//! The plugin runs in a host namespace joined between fork and exec (no
//! `ip netns exec` in between, which would be timed too). Peak RSS is read
//! from `/proc/<pid>/status` (`VmHWM`) while the plugin is stopped at its
//! exit under ptrace. `wait4`'s `ru_maxrss` cannot be used: the kernel folds
//! the pre-exec address space (a copy of this harness) into it, so a 3 MiB
//! plugin spawned from a 10 MiB harness would report 10 MiB.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use conformance::netns::Netns;

/// ptrace is variadic in C: pointer-sized arguments must be passed as pointers.
const NULL: *mut libc::c_void = std::ptr::null_mut();

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{plugin} {command} failed ({status}): {stdout}{stderr}")]
    Failed {
        plugin: String,
        command: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    #[error("{plugin} {command} printed a non-JSON result: {stdout}")]
    BadResult {
        plugin: String,
        command: String,
        stdout: String,
    },
    #[error("conflist: {0}")]
    Conflist(String),
}

/// Where an invocation acts: the runtime's namespace (the plugin runs there)
/// and the container it attaches.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub host: &'a Netns,
    pub pod: &'a Path,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

/// One finished plugin process.
#[derive(Debug, Clone)]
pub struct Run {
    pub stdout: Vec<u8>,
    pub elapsed: Duration,
    /// `VmHWM` at exit, in KiB, when measured.
    pub peak_rss_kib: Option<u64>,
}

/// Runs `plugin` with CNI_COMMAND=`command` like libcni's invoke package
/// would, timed from spawn to reap; fails unless it exits 0.
pub fn exec(
    plugin: &Path,
    command: &str,
    target: &Target<'_>,
    cni_path: &Path,
    stdin: &[u8],
    measure_rss: bool,
) -> Result<Run, ExecError> {
    let io = |what: &str| {
        let what = format!("{what} {}", plugin.display());
        move |source| ExecError::Io { what, source }
    };
    let host = File::open(target.host.path()).map_err(io("opening the host namespace for"))?;
    let mut c = Command::new(plugin);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", target.container_id)
        .env("CNI_NETNS", target.pod)
        .env("CNI_IFNAME", target.ifname)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let host_fd = host.as_raw_fd();
    // SAFETY: only async-signal-safe syscalls run between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::setns(host_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if measure_rss && libc::ptrace(libc::PTRACE_TRACEME, 0 as libc::pid_t, NULL, NULL) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = c.spawn().map_err(io("spawning"))?;
    let (out, err) = drain(&mut child);
    // A config is far smaller than a pipe buffer, so this never blocks on a
    // plugin that is still stopped at its exec under ptrace.
    let mut pipe = child.stdin.take().expect("piped stdin");
    pipe.write_all(stdin).map_err(io("writing stdin of"))?;
    drop(pipe);
    let (status, peak_rss_kib) = if measure_rss {
        trace_to_exit(&child).map_err(io("tracing"))?
    } else {
        (child.wait().map_err(io("waiting for"))?.to_string(), None)
    };
    let elapsed = started.elapsed();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if status != "exit status: 0" {
        return Err(ExecError::Failed {
            plugin: plugin.display().to_string(),
            command: command.to_owned(),
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        });
    }
    Ok(Run {
        stdout,
        elapsed,
        peak_rss_kib,
    })
}

fn drain(child: &mut Child) -> (JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>) {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    (
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        }),
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        }),
    )
}

/// Lets a `PTRACE_TRACEME` child run to completion, passing its signals on,
/// and reads its peak RSS at the exit stop. Returns the exit status as
/// `std::process::ExitStatus` would print it, and the peak in KiB.
fn trace_to_exit(child: &Child) -> std::io::Result<(String, Option<u64>)> {
    let pid = child.id() as libc::pid_t;
    let mut peak = None;
    let mut first_stop = true;
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is a valid out pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::WIFEXITED(status) {
            return Ok((format!("exit status: {}", libc::WEXITSTATUS(status)), peak));
        }
        if libc::WIFSIGNALED(status) {
            return Ok((format!("signal: {}", libc::WTERMSIG(status)), peak));
        }
        let mut forward = 0;
        if first_stop {
            // The SIGTRAP after exec: from here on, stop again at exit.
            first_stop = false;
            let opts = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
            // SAFETY: ptrace on our stopped tracee.
            if unsafe {
                libc::ptrace(
                    libc::PTRACE_SETOPTIONS,
                    pid,
                    NULL,
                    opts as usize as *mut libc::c_void,
                )
            } != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        } else if status >> 8 == (libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8)) {
            peak = read_vm_hwm(pid);
        } else {
            forward = libc::WSTOPSIG(status);
        }
        // SAFETY: resuming our stopped tracee, with the signal it was about to get.
        if unsafe {
            libc::ptrace(
                libc::PTRACE_CONT,
                pid,
                NULL,
                forward as usize as *mut libc::c_void,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
}

fn read_vm_hwm(pid: libc::pid_t) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&text)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// A conflist run plugin by plugin as libcni runs it (same stdin per plugin:
/// the plugin object with the list's `name` and `cniVersion` and the
/// previous result as `prevResult`), minus libcni's own process and caching.
#[derive(Debug, Clone)]
pub struct Chain {
    cni_version: String,
    plugins: Vec<(PathBuf, Value)>,
    cni_path: PathBuf,
}

impl Chain {
    pub fn from_conflist(conflist: &str, cni_path: &Path) -> Result<Chain, ExecError> {
        let bad = |m: &str| ExecError::Conflist(format!("{m}: {conflist}"));
        let list: Value = serde_json::from_str(conflist).map_err(|e| bad(&e.to_string()))?;
        let name = list["name"].as_str().ok_or_else(|| bad("no name"))?;
        let version = list["cniVersion"]
            .as_str()
            .ok_or_else(|| bad("no cniVersion"))?;
        let mut plugins = Vec::new();
        for p in list["plugins"]
            .as_array()
            .ok_or_else(|| bad("no plugins"))?
        {
            let kind = p["type"]
                .as_str()
                .ok_or_else(|| bad("plugin without type"))?;
            let mut conf = p.clone();
            conf["name"] = Value::from(name);
            conf["cniVersion"] = Value::from(version);
            plugins.push((cni_path.join(kind), conf));
        }
        Ok(Chain {
            cni_version: version.to_owned(),
            plugins,
            cni_path: cni_path.to_owned(),
        })
    }

    /// ADD through the whole chain; the final result and the total time.
    pub fn add(&self, target: &Target<'_>) -> Result<(Value, Duration), ExecError> {
        let mut prev: Option<Value> = None;
        let mut total = Duration::ZERO;
        for (bin, conf) in &self.plugins {
            let mut conf = conf.clone();
            if let Some(p) = prev.take() {
                conf["prevResult"] = p;
            }
            let run = exec(
                bin,
                "ADD",
                target,
                &self.cni_path,
                conf.to_string().as_bytes(),
                false,
            )?;
            total += run.elapsed;
            prev = Some(
                serde_json::from_slice(&run.stdout).map_err(|_| ExecError::BadResult {
                    plugin: bin.display().to_string(),
                    command: "ADD".into(),
                    stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
                })?,
            );
        }
        Ok((prev.unwrap_or(Value::Null), total))
    }

    /// DEL in reverse order; `added` is the ADD result, handed to each plugin
    /// as `prevResult` from CNI 0.4.0 on, as libcni does with its cache.
    pub fn del(&self, target: &Target<'_>, added: &Value) -> Result<Duration, ExecError> {
        let with_prev = version_at_least(&self.cni_version, (0, 4, 0));
        let mut total = Duration::ZERO;
        for (bin, conf) in self.plugins.iter().rev() {
            let mut conf = conf.clone();
            if with_prev && !added.is_null() {
                conf["prevResult"] = added.clone();
            }
            total += exec(
                bin,
                "DEL",
                target,
                &self.cni_path,
                conf.to_string().as_bytes(),
                false,
            )?
            .elapsed;
        }
        Ok(total)
    }
}

fn version_at_least(v: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let t = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    t >= min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status =
            "Name:\tbridge\nVmPeak:\t  10000 kB\nVmHWM:\t    2948 kB\nVmRSS:\t    2900 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2948));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn chain_injects_name_and_version_into_each_plugin() {
        let list = r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;
        let chain = Chain::from_conflist(list, Path::new("/opt/cni")).unwrap();
        assert_eq!(chain.plugins.len(), 2);
        assert_eq!(chain.plugins[1].0, Path::new("/opt/cni/portmap"));
        assert_eq!(chain.plugins[1].1["name"], "cbr0");
        assert_eq!(chain.plugins[1].1["cniVersion"], "0.3.1");
        assert!(Chain::from_conflist(r#"{"name":"x","plugins":[]}"#, Path::new("/")).is_err());
    }

    #[test]
    fn prev_result_on_del_starts_at_0_4_0() {
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
        assert!(version_at_least("0.4.0", (0, 4, 0)));
        assert!(version_at_least("1.0.0", (0, 4, 0)));
    }

    fn root_target(host: &Netns) -> Target<'_> {
        Target {
            host,
            pod: host.path(),
            container_id: "probe",
            ifname: "eth0",
        }
    }

    #[test]
    fn peak_rss_is_the_plugin_s_own_not_the_harness_s() {
        // 64 MiB touched here would show up in ru_maxrss-style accounting.
        let ballast = vec![1u8; 64 << 20];
        let host = Netns::new("rssprobe").unwrap();
        let run = exec(
            Path::new("/bin/true"),
            "ADD",
            &root_target(&host),
            Path::new("/"),
            b"",
            true,
        )
        .unwrap();
        let peak = run.peak_rss_kib.expect("VmHWM read at the exit stop");
        assert!(peak > 0 && peak < 16 << 10, "{peak} KiB");
        assert!(ballast.iter().step_by(4096).all(|b| *b == 1));
    }

    #[test]
    fn the_plugin_sees_cni_env_runs_in_the_host_namespace_and_failures_are_errors() {
        let host = Netns::new("execprb").unwrap();
        let script = std::env::temp_dir().join(format!("fr-probe-{}.sh", std::process::id()));
        std::fs::write(&script, "#!/bin/sh\nread conf\necho \"$CNI_COMMAND $CNI_CONTAINERID $conf $(readlink /proc/self/ns/net)\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let run = exec(
            &script,
            "DEL",
            &root_target(&host),
            Path::new("/"),
            b"{}\n",
            false,
        );
        let _ = std::fs::remove_file(&script);
        let out = String::from_utf8(run.unwrap().stdout).unwrap();
        // A namespace's nsfs inode is what /proc/<pid>/ns/net names.
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(host.path()).unwrap());
        assert_eq!(out.trim_end(), format!("DEL probe {{}} net:[{inode}]"));

        let err = exec(
            Path::new("/bin/false"),
            "ADD",
            &root_target(&host),
            Path::new("/"),
            b"",
            true,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { status, .. } if status == "exit status: 1"),
            "{err}"
        );
    }
}

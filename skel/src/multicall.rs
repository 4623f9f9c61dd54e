//! One executable holding several plugins, each run when the executable is started under
//! its name (k3s ships its CNI plugins this way; busybox is the classic). The names are
//! installed as hard links to one file, so a delegate found on `CNI_PATH` is often this
//! very file: [`crate::delegate`] then runs it in this process (see `delegate::in_process`).

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

use netconf::{codes, CniError};

use crate::{process_env, run_with, Plugin};

/// A plugin and the file name it answers to.
pub struct Applet {
    pub name: &'static str,
    pub plugin: &'static (dyn Plugin + Sync),
}

/// What [`main`] was given: the executable's own name and its applets.
struct Executable {
    program: &'static str,
    applets: &'static [Applet],
}

static EXECUTABLE: OnceLock<Executable> = OnceLock::new();

/// Makes this process the multicall executable `program` holding `applets`, so that
/// delegates found on `CNI_PATH` as this file run in-process. [`main`] does it first; the
/// first call wins.
pub fn register(program: &'static str, applets: &'static [Applet]) {
    EXECUTABLE.get_or_init(|| Executable { program, applets });
}

/// The whole process edge of a multicall executable: runs the applet named like the file it
/// was started as (`bridge`, `/opt/cni/bin/host-local`). Started under its own name
/// (`program`), the first argument names the applet instead. Returns the exit code.
pub fn main(program: &'static str, applets: &'static [Applet]) -> i32 {
    register(program, applets);
    let exe = EXECUTABLE.get().expect("registered above");
    let mut args = std::env::args_os();
    let name = args.next().map(|a| base_name(&a)).unwrap_or_default();
    let name = if name == exe.program {
        match args.next() {
            Some(a) => a.to_string_lossy().into_owned(),
            None => {
                let _ = writeln!(io::stderr(), "{}", usage(exe));
                return 2;
            }
        }
    } else {
        name
    };
    run_applet(
        &name,
        process_env,
        io::stdin().lock(),
        io::stdout(),
        io::stderr(),
    )
}

/// Runs applet `name` exactly as the process edge would: the same code for a process started
/// under that name and for a delegate run in-process.
pub(crate) fn run_applet(
    name: &str,
    get: impl Fn(&str) -> Option<String>,
    stdin: impl Read,
    mut stdout: impl Write,
    stderr: impl Write,
) -> i32 {
    let Some(exe) = EXECUTABLE.get() else {
        return 1;
    };
    match exe.applets.iter().find(|a| a.name == name) {
        Some(applet) => run_with(get, stdin, stdout, stderr, applet.plugin),
        None => {
            let e = CniError::new(
                codes::INTERNAL,
                format!(
                    "{name:?} is not a plugin of {}; {}",
                    exe.program,
                    usage(exe)
                ),
            );
            let _ = stdout.write_all(e.to_json().as_bytes());
            1
        }
    }
}

fn usage(exe: &Executable) -> String {
    let names: Vec<&str> = exe.applets.iter().map(|a| a.name).collect();
    format!(
        "{} holds the CNI plugins {}: install it under those names (hard links) or run `{} PLUGIN`",
        exe.program,
        names.join(", "),
        exe.program
    )
}

fn base_name(arg0: &OsStr) -> String {
    Path::new(arg0)
        .file_name()
        .unwrap_or(arg0)
        .to_string_lossy()
        .into_owned()
}

/// Device and inode of a file, following symlinks.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether `path` is the file this process runs (same device and inode) and this process
/// is a multicall executable, so the plugin there can run in-process. A binary replaced on
/// disk since this process started is a different file and is executed.
pub(crate) fn is_this_executable(path: &Path) -> bool {
    static OWN: OnceLock<Option<(u64, u64)>> = OnceLock::new();
    if EXECUTABLE.get().is_none() {
        return false;
    }
    let own = *OWN.get_or_init(|| file_id(Path::new("/proc/self/exe")));
    own.is_some() && file_id(path) == own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_names_of_argv0() {
        assert_eq!(
            base_name(OsStr::new("/opt/cni/bin/host-local")),
            "host-local"
        );
        assert_eq!(base_name(OsStr::new("bridge")), "bridge");
        assert_eq!(base_name(OsStr::new("")), "");
    }

    #[test]
    fn without_applets_nothing_is_this_executable() {
        // The unit-test binary never called `main`, so no delegate may run in-process.
        assert!(!is_this_executable(Path::new("/proc/self/exe")));
    }
}

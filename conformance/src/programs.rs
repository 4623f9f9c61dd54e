//! Every program a test runs must come from a Debian package that `scripts/setup.sh` installs.
//!
//! CI and developers' machines drift: a tool installed by hand once (socat was) makes the suite
//! pass there and fail on a fresh machine, where `bash scripts/test.sh` is all a newcomer runs.
//! So the bed refuses to run a program unless it resolves on `PATH` to a file owned by a package
//! named in setup.sh's `packages=(…)` list, or by a package every Debian system has (Essential,
//! or Priority `required`: what debootstrap's minbase installs). A program that is missing, or
//! present but from elsewhere, fails the test with the fix in the message.
//!
//! [`check`] is called where the bed starts programs (`Netns::command`, `Netns::sh`, `cmd::*`);
//! `tests/programs_installed.rs` also scans the test sources for program names, so a program
//! run through a plain `Command` is caught as well.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Why a program may not be run by a test.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    #[error(
        "a test runs `{0}`, which is not installed on this machine; add the Debian package that \
         provides it to the `packages` list in scripts/setup.sh"
    )]
    Missing(String),
    #[error(
        "a test runs `{program}` ({path}), from package {package}, which scripts/setup.sh does not \
         install; add {package} to its `packages` list (a fresh machine would not have it)"
    )]
    NotInstalledBySetup {
        program: String,
        path: PathBuf,
        package: String,
    },
    #[error(
        "a test runs `{program}` ({path}), which no Debian package owns; the tests may only run \
         programs that scripts/setup.sh installs"
    )]
    Unpackaged { program: String, path: PathBuf },
}

/// The packages setup.sh installs, read from its `packages=(…)` array.
pub fn setup_packages() -> &'static BTreeSet<String> {
    static PACKAGES: OnceLock<BTreeSet<String>> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let path = crate::workspace_root().join("scripts/setup.sh");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        parse_setup_packages(&text)
    })
}

/// The words of the first `packages=( … )` array in a shell script.
pub fn parse_setup_packages(script: &str) -> BTreeSet<String> {
    let start = script
        .find("packages=(")
        .expect("scripts/setup.sh has a packages=( ... ) array")
        + "packages=(".len();
    let len = script[start..]
        .find(')')
        .expect("the packages array is closed");
    script[start..start + len]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

/// Packages present on every Debian system: Essential, or Priority `required`.
fn base_packages() -> &'static BTreeSet<String> {
    static BASE: OnceLock<BTreeSet<String>> = OnceLock::new();
    BASE.get_or_init(|| {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f", "${Package} ${Essential} ${Priority}\n"])
            .output()
            .expect("dpkg-query (the test bed runs on Debian)");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (name, essential, priority) = (w.next()?, w.next()?, w.next());
                (essential == "yes" || priority == Some("required")).then(|| name.to_owned())
            })
            .collect()
    })
}

/// Finds `program` the way `execvp` would, with this process's `PATH`.
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The package owning `path`, trying the names dpkg may know it by: first the file it resolves
/// to, since that package ships the executable itself (`/usr/bin/go` is golang-go's symlink to
/// golang-1.19-go's binary; iptables is an alternative), then the path itself, each also as its
/// twin across the merged-/usr split.
fn owner(path: &Path) -> Option<String> {
    let mut candidates = Vec::new();
    if let Ok(real) = path.canonicalize() {
        candidates.push(real);
    }
    candidates.push(path.to_path_buf());
    for p in candidates.clone() {
        let s = p.to_string_lossy();
        if let Some(rest) = s.strip_prefix("/usr") {
            candidates.push(PathBuf::from(rest));
        } else {
            candidates.push(PathBuf::from(format!("/usr{s}")));
        }
    }
    candidates.into_iter().find_map(|p| {
        let out = Command::new("dpkg").arg("-S").arg(&p).output().ok()?;
        if !out.status.success() {
            return None;
        }
        // "iproute2: /usr/bin/ip", or "pkg1, pkg2: /path" for a file two packages share.
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| !l.starts_with("diversion "))?;
        let pkgs = line.rsplit_once(": ")?.0;
        Some(pkgs.split(", ").next()?.split(':').next()?.to_owned())
    })
}

/// Whether tests may run `program`. Only bare names and paths into the system's own
/// directories are judged: a program given by any other path is the code under test (our
/// binaries in `target/`, copies of them in a test's temporary directory) or a path that
/// must not exist (tests of behaviour when a tool is missing).
pub fn check(program: &OsStr) -> Result<(), ProgramError> {
    static SEEN: OnceLock<Mutex<HashMap<String, Result<(), ProgramError>>>> = OnceLock::new();
    let name = program.to_string_lossy().into_owned();
    let system_dir = ["/usr/", "/bin/", "/sbin/"]
        .iter()
        .any(|d| name.starts_with(d));
    if name.contains('/') && !(system_dir && Path::new(&name).exists()) {
        return Ok(());
    }
    let seen = SEEN.get_or_init(Default::default);
    if let Some(r) = seen.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
        return r.clone();
    }
    let verdict = judge(&name);
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name, verdict.clone());
    verdict
}

fn judge(name: &str) -> Result<(), ProgramError> {
    let path = resolve(name).ok_or_else(|| ProgramError::Missing(name.to_owned()))?;
    let package = owner(&path).ok_or_else(|| ProgramError::Unpackaged {
        program: name.to_owned(),
        path: path.clone(),
    })?;
    if setup_packages().contains(&package) || base_packages().contains(&package) {
        Ok(())
    } else {
        Err(ProgramError::NotInstalledBySetup {
            program: name.to_owned(),
            path,
            package,
        })
    }
}

/// [`check`], panicking with its message: for the bed's own spawn points.
pub fn require(program: &OsStr) {
    if let Err(e) = check(program) {
        panic!("{e}");
    }
}

/// Shell words after which the next word is the command.
const PREFIX_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time",
];
/// Segments starting with these run no program of their own.
const NON_COMMANDS: &[&str] = &["for", "case", "in", "esac", "fi", "done", "}", "function"];
/// Builtins (and keywords used like them) that name no program to install.
const BUILTINS: &[&str] = &[
    "exec", "cd", "set", "export", "exit", "read", "wait", "trap", "true", "false", "echo",
    "printf", "test", "[", "[[", ":", ".", "source", "local", "return", "shift", "kill", "ulimit",
    "umask", "eval", "let", "type", "command",
];

/// The programs a shell snippet runs: the first word of each simple command (after `|`, `;`,
/// `&`, `&&`, `||`, `$(`, `(` or a newline, and after keywords such as `do` or `then`),
/// skipping builtins, variable assignments and expansions. A heuristic, good for the
/// one-liners tests write.
pub fn shell_programs(script: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let s = script
        .replace("\\\n", " ")
        .replace(">&", ">")
        .replace("$(", "\n")
        .replace(['|', ';', '&', '(', ')', '`'], "\n");
    for segment in s.lines() {
        let mut words = segment.split_whitespace().filter(|w| {
            !w.starts_with('<')
                && !w.starts_with('>')
                && !w.starts_with(|c: char| c.is_ascii_digit() && w.contains('>'))
        });
        let word = loop {
            match words.next() {
                Some(w) if PREFIX_WORDS.contains(&w) => continue,
                Some(w) if w.contains('=') && !w.starts_with('=') => continue,
                other => break other,
            }
        };
        let Some(word) = word else { continue };
        let word = word.trim_matches(|c| c == '"' || c == '\'');
        if word.is_empty()
            || NON_COMMANDS.contains(&word)
            || BUILTINS.contains(&word)
            || word.starts_with('$')
            || word.starts_with('-')
            || word
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "._-/+".contains(c)))
        {
            continue;
        }
        if !out.iter().any(|w| w == word) {
            out.push(word.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_package_list_is_parsed_without_comments() {
        let script =
            "x=1\npackages=(\n  etcd-server iptables # comment here\n  socat\n)\nfoo=(bar)\n";
        let got: Vec<_> = parse_setup_packages(script).into_iter().collect();
        assert_eq!(got, ["etcd-server", "iptables", "socat"]);
    }

    #[test]
    fn shell_snippets_yield_their_programs() {
        assert_eq!(
            shell_programs("echo ping | socat -T 2 - UDP:10.0.0.1:53"),
            ["socat"]
        );
        assert_eq!(
            shell_programs("for i in 1 2; do X=1 ip link show; done && sysctl -w a=b; v=$(cat /f)"),
            ["ip", "sysctl", "cat"]
        );
        assert_eq!(
            shell_programs("$BIN --flag > /dev/null 2>&1"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_missing_program_is_reported_with_the_fix() {
        let e = check(OsStr::new("surely-no-such-program-frx")).unwrap_err();
        assert!(matches!(e, ProgramError::Missing(_)));
        assert!(e.to_string().contains("scripts/setup.sh"), "{e}");
    }

    #[test]
    fn programs_from_listed_and_base_packages_pass() {
        for p in ["ip", "sh", "sleep", "iptables", "nft", "etcd", "socat"] {
            check(OsStr::new(p)).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn code_under_test_is_not_judged() {
        check(OsStr::new("/nonexistent/iptables-restore")).unwrap();
        let ours = crate::target_dir().join("release/bridge");
        check(ours.as_os_str()).unwrap();
    }
}

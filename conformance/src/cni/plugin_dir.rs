//! A directory of plugin executables for `CNI_PATH`, each entry a symlink to
//! the implementation a test chose.

use std::fmt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// The plugins flannel-rs implements.
pub const OUR_PLUGINS: [&str; 4] = ["bridge", "flannel", "host-local", "portmap"];
/// Where Debian's containernetworking-plugins installs the Go builds.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";
/// Overrides where our binaries are taken from (default `target/release`).
pub const BIN_DIR_ENV: &str = "FLANNEL_RS_BIN_DIR";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// flannel-rs, from [`our_bin_dir`].
    Ours,
    /// The upstream Go plugin from [`REFERENCE_DIR`].
    Reference,
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Impl::Ours => "our",
            Impl::Reference => "reference",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginDirError {
    #[error("no {which} build of plugin {name:?}: {path} is not an executable file{hint}")]
    Missing {
        name: String,
        which: Impl,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("plugin {0:?} is chosen twice")]
    Duplicate(String),
    #[error("flannel-rs does not implement plugin {0:?} (ours are {OUR_PLUGINS:?})")]
    NotOurs(String),
    #[error("plugin dir: {0}")]
    Io(#[from] std::io::Error),
}

/// The multicall executable our four plugins are hard links to.
pub const MULTICALL: &str = "flannel-rs-cni";

/// `$FLANNEL_RS_BIN_DIR`, else `<workspace>/target/release`. In the latter, the plugin names
/// are first (re)linked to the multicall executable, once per process: cargo replaces
/// `flannel-rs-cni` with a new file on every build, which leaves the old links behind.
pub fn our_bin_dir() -> PathBuf {
    match std::env::var_os(BIN_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let dir = crate::target_dir().join("release");
            static LINKED: std::sync::Once = std::sync::Once::new();
            LINKED.call_once(|| link_plugin_names(&dir));
            dir
        }
    }
}

/// `scripts/link-plugins.sh` on the build in `dir`, when there is one; a missing build is
/// reported by whoever looks for a plugin there.
fn link_plugin_names(dir: &Path) {
    let exe = dir.join(MULTICALL);
    if !is_executable(&exe) {
        return;
    }
    let script = crate::workspace_root().join("scripts/link-plugins.sh");
    match std::process::Command::new("sh")
        .arg(&script)
        .arg(&exe)
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("running {}: {e}", script.display()),
    }
}

#[derive(Debug)]
pub struct PluginDir {
    dir: TempDir,
    chosen: Vec<(String, Impl, PathBuf)>,
}

struct Sources<'a> {
    ours: &'a Path,
    reference: &'a Path,
}

impl PluginDir {
    /// Every reference plugin Debian ships (bridge, host-local, portmap,
    /// loopback, bandwidth, ...). There is no reference `flannel` build.
    pub fn reference() -> Result<PluginDir, PluginDirError> {
        let mut names: Vec<String> = std::fs::read_dir(REFERENCE_DIR)?
            .filter_map(Result::ok)
            .filter(|e| is_executable(&e.path()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let choices: Vec<(&str, Impl)> = names
            .iter()
            .map(|n| (n.as_str(), Impl::Reference))
            .collect();
        PluginDir::mixed(&choices)
    }

    /// Exactly our four plugins, nothing else.
    pub fn ours() -> Result<PluginDir, PluginDirError> {
        let choices: Vec<(&str, Impl)> = OUR_PLUGINS.iter().map(|n| (*n, Impl::Ours)).collect();
        PluginDir::mixed(&choices)
    }

    /// Exactly the listed plugins, each from the chosen implementation, e.g.
    /// our bridge delegating to the reference host-local.
    pub fn mixed(choices: &[(&str, Impl)]) -> Result<PluginDir, PluginDirError> {
        let ours = our_bin_dir();
        PluginDir::build(
            &Sources {
                ours: &ours,
                reference: Path::new(REFERENCE_DIR),
            },
            choices,
        )
    }

    fn build(src: &Sources<'_>, choices: &[(&str, Impl)]) -> Result<PluginDir, PluginDirError> {
        let dir = tempfile::Builder::new().prefix("fr-cni-bin-").tempdir()?;
        let mut chosen: Vec<(String, Impl, PathBuf)> = Vec::with_capacity(choices.len());
        for &(name, which) in choices {
            if chosen.iter().any(|(n, _, _)| n == name) {
                return Err(PluginDirError::Duplicate(name.to_owned()));
            }
            let target = match which {
                Impl::Ours if !OUR_PLUGINS.contains(&name) => {
                    return Err(PluginDirError::NotOurs(name.to_owned()))
                }
                Impl::Ours => src.ours.join(name),
                Impl::Reference => src.reference.join(name),
            };
            if !is_executable(&target) {
                let hint = match which {
                    Impl::Ours => {
                        " (run `cargo build --release --workspace` or set FLANNEL_RS_BIN_DIR)"
                    }
                    Impl::Reference => " (apt-get install containernetworking-plugins)",
                };
                return Err(PluginDirError::Missing {
                    name: name.to_owned(),
                    which,
                    path: target,
                    hint,
                });
            }
            symlink(&target, dir.path().join(name))?;
            chosen.push((name.to_owned(), which, target));
        }
        Ok(PluginDir { dir, chosen })
    }

    /// The directory to put on `CNI_PATH`.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Which implementation of `name` this directory holds, and its file.
    pub fn source_of(&self, name: &str) -> Option<(Impl, &Path)> {
        self.chosen
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, w, p)| (*w, p.as_path()))
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bin(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn mixed_links_each_plugin_to_the_chosen_build() {
        let ours = tempfile::tempdir().unwrap();
        let reference = tempfile::tempdir().unwrap();
        let our_bridge = fake_bin(ours.path(), "bridge");
        let ref_ipam = fake_bin(reference.path(), "host-local");
        fake_bin(reference.path(), "bridge");
        let src = Sources {
            ours: ours.path(),
            reference: reference.path(),
        };

        let pd = PluginDir::build(
            &src,
            &[("bridge", Impl::Ours), ("host-local", Impl::Reference)],
        )
        .unwrap();

        assert_eq!(
            std::fs::read_link(pd.path().join("bridge")).unwrap(),
            our_bridge
        );
        assert_eq!(
            std::fs::read_link(pd.path().join("host-local")).unwrap(),
            ref_ipam
        );
        assert_eq!(
            pd.source_of("bridge"),
            Some((Impl::Ours, our_bridge.as_path()))
        );
        assert_eq!(pd.source_of("portmap"), None);
        assert_eq!(std::fs::read_dir(pd.path()).unwrap().count(), 2);
    }

    #[test]
    fn missing_duplicate_and_foreign_choices_are_errors() {
        let ours = tempfile::tempdir().unwrap();
        let reference = tempfile::tempdir().unwrap();
        fake_bin(reference.path(), "bridge");
        std::fs::write(ours.path().join("portmap"), "not executable").unwrap();
        let src = Sources {
            ours: ours.path(),
            reference: reference.path(),
        };

        let err = PluginDir::build(&src, &[("portmap", Impl::Ours)]).unwrap_err();
        assert!(
            matches!(
                &err,
                PluginDirError::Missing {
                    which: Impl::Ours,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("cargo build --release"), "{err}");
        let err = PluginDir::build(
            &src,
            &[("bridge", Impl::Reference), ("bridge", Impl::Reference)],
        )
        .unwrap_err();
        assert!(matches!(err, PluginDirError::Duplicate(_)), "{err}");
        let err = PluginDir::build(&src, &[("loopback", Impl::Ours)]).unwrap_err();
        assert!(matches!(err, PluginDirError::NotOurs(_)), "{err}");
    }

    #[test]
    fn reference_dir_has_the_plugins_we_compare_against() {
        let pd = PluginDir::reference().unwrap();
        for name in ["bridge", "host-local", "portmap", "loopback"] {
            assert!(
                matches!(pd.source_of(name), Some((Impl::Reference, _))),
                "{name}"
            );
            assert!(pd.path().join(name).exists(), "{name}");
        }
    }
}

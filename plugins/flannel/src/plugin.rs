//! The CNI verbs of the flannel meta-plugin, on top of the library's config, delegate and
//! store handling. Errors become `CniError`s here, once; a delegate's own CNI error passes
//! through verbatim, as Go's skel unwraps it.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::daemon::{self, DaemonState, StatusUrl};
use crate::delegate_conf::{self, Delegate};
use crate::gc::{valid_container_ids, ATTACHMENT_KEYS};
use crate::store::Store;
use crate::{subnet, FlannelConf, FlannelError};
use netconf::{codes, CniError, CniResult};
use serde_json::Value;
use skel::{delegate, Plugin, Request};

pub struct Flannel;

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string())
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The delegate for the current config and subnet.env.
fn current_delegate(conf: &FlannelConf) -> Result<Delegate, FlannelError> {
    let env = subnet::load(&conf.subnet_file).map_err(FlannelError::SubnetEnv)?;
    delegate_conf::build(conf, &env)
}

/// What the configured daemon says; `None` when the check is turned off.
fn ask_daemon(conf: &FlannelConf) -> Option<DaemonState> {
    let url = conf.daemon_status_url.as_deref()?;
    Some(match StatusUrl::parse(url) {
        Ok(url) => daemon::probe(&url, daemon::TIMEOUT),
        Err(why) => DaemonState::NoAnswer {
            at: url.to_owned(),
            why,
        },
    })
}

/// The delegate creates the interface inside `CNI_NETNS`. A path that is no namespace handle
/// fails there anyway, but only after the save file was written and IPAM ran, and the undo
/// (a delegate DEL) fails on the same path and so keeps the file. Refusing it first leaves
/// nothing behind. Every namespace handle (a `/run/netns` bind mount, `/proc/<pid>/ns/net`)
/// is an inode of nsfs, the filesystem our own namespace handle lives on.
fn check_netns(netns: Option<&Path>) -> Result<(), CniError> {
    let Some(path) = netns else {
        return Ok(());
    };
    let fail = |why: String| {
        internal(format!(
            "failed to open netns {:?}: {why}",
            path.display().to_string()
        ))
    };
    let target = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    let own = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| fail(format!("cannot inspect the plugin's own netns: {e}")))?;
    if target.dev() != own.dev() {
        return Err(fail("not a namespace handle".into()));
    }
    Ok(())
}

impl Flannel {
    /// Releases what a failed delegate ADD may have allocated (typically the IP). Upstream
    /// keeps the saved file and relies on the runtime's DEL; doing it here also covers
    /// runtimes that skip DEL after a failed ADD (containernetworking/plugins#426). The file
    /// stays when the DEL fails so that the runtime's DEL can retry it.
    fn undo_add(store: &Store, d: &Delegate, req: &Request) {
        match delegate::del(&d.plugin_type, &d.bytes, &req.env) {
            Ok(()) => {
                if let Err(e) = store.remove(&req.env.container_id) {
                    eprintln!("flannel: after a failed ADD: {e}");
                }
            }
            Err(e) => eprintln!("flannel: releasing after a failed ADD: delegate DEL failed: {e}"),
        }
    }

    /// A saved file that cannot be parsed (a torn write by an older flannel, manual edits):
    /// upstream logs and succeeds without releasing anything. We still try to release the
    /// container's resources with a delegate rebuilt from the current config.
    fn del_with_corrupt_save(store: &Store, conf: &FlannelConf, req: &Request, why: &FlannelError) {
        eprintln!("flannel: {why}; rebuilding the delegate config from the current settings");
        match current_delegate(conf) {
            Ok(d) => {
                if let Err(e) = delegate::del(&d.plugin_type, &d.bytes, &req.env) {
                    eprintln!("flannel: delegate DEL with the rebuilt config failed: {e}");
                }
            }
            Err(e) => {
                eprintln!("flannel: cannot rebuild the delegate config, resources may leak: {e}")
            }
        }
        if let Err(e) = store.remove(&req.env.container_id) {
            eprintln!("flannel: {e}");
        }
    }

    /// GC of one delegate type; a delegate's CNI error is kept as is.
    fn forward_gc(d: &Delegate, req: &Request, errors: &mut Vec<CniError>) {
        let attachments: Vec<(&str, Value)> = ATTACHMENT_KEYS
            .iter()
            .filter_map(|k| req.conf.raw.get(*k).map(|v| (*k, v.clone())))
            .collect();
        let bytes = d.with_keys(&attachments);
        let mut types = vec![d.plugin_type.clone()];
        // Upstream bridge does not forward GC to its IPAM, so ask the IPAM directly; it
        // reads its section from the same config.
        types.extend(d.ipam_type().filter(|t| *t != d.plugin_type));
        for t in types {
            if let Err(e) = delegate::gc(&t, &bytes, &req.env) {
                errors.push(e);
            }
        }
    }
}

impl Plugin for Flannel {
    fn about(&self) -> String {
        format!(
            "CNI Plugin flannel version v{} (linux/{}) commit flannel-rs",
            env!("CARGO_PKG_VERSION"),
            go_arch()
        )
    }

    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let conf = FlannelConf::parse(&req.stdin)
            .map_err(|e| internal(format!("failed to load flannel netconf file: {e}")))?;
        let d = current_delegate(&conf).map_err(|e| match (&e, ask_daemon(&conf)) {
            // Upstream's text first (runbooks grep for it), then what the daemon knows.
            (FlannelError::SubnetEnv(_), Some(state)) => {
                internal(format!("{e} {}.", state.describe()))
            }
            _ => internal(e),
        })?;
        eprintln!(
            "delegateAdd: netconf sent to delegate plugin:\n{}",
            String::from_utf8_lossy(&d.bytes)
        );
        check_netns(req.env.netns.as_deref())?;
        let store = Store::new(&conf.data_dir);
        store
            .save(&req.env.container_id, &d.bytes)
            .map_err(internal)?;
        // A plugin that cannot be found is not a CNI error of the delegate: keep the prefix.
        // Nothing ran, so nothing needs releasing, only the save file goes.
        if let Err(e) = delegate::find(&d.plugin_type, &req.env.path) {
            if let Err(rm) = store.remove(&req.env.container_id) {
                eprintln!("flannel: after a failed ADD: {rm}");
            }
            return Err(CniError::new(
                e.code,
                format!("failed to delegate add: {}", e.msg),
            ));
        }
        let result = delegate::add(&d.plugin_type, &d.bytes, &req.env, req.conf.cni_version);
        if result.is_err() {
            Self::undo_add(&store, &d, req);
        }
        result
    }

    fn del(&self, req: &Request) -> Result<(), CniError> {
        let conf = FlannelConf::parse(&req.stdin).map_err(internal)?;
        let store = Store::new(&conf.data_dir);
        let Some(bytes) = store.load(&req.env.container_id).map_err(internal)? else {
            return Ok(());
        };
        match Delegate::from_saved(bytes) {
            Ok(d) => {
                let result = delegate::del(&d.plugin_type, &d.bytes, &req.env);
                // Removed even when the delegate failed, as upstream: a retried DEL then
                // succeeds instead of failing forever on a delegate that cannot recover.
                store.remove(&req.env.container_id).map_err(internal)?;
                result
            }
            Err(why) => {
                Self::del_with_corrupt_save(&store, &conf, req, &why);
                Ok(())
            }
        }
    }

    /// Upstream's CHECK does nothing; we ask the delegate to check what it created.
    fn check(&self, req: &Request) -> Result<(), CniError> {
        let conf = FlannelConf::parse(&req.stdin).map_err(internal)?;
        let store = Store::new(&conf.data_dir);
        let bytes = store
            .load(&req.env.container_id)
            .map_err(internal)?
            .ok_or_else(|| {
                internal(format!(
                    "no saved delegate config for container {} in {}: was it added by flannel?",
                    req.env.container_id,
                    conf.data_dir.display()
                ))
            })?;
        let d = Delegate::from_saved(bytes).map_err(internal)?;
        let prev: Vec<(&str, Value)> = req
            .conf
            .raw
            .get("prevResult")
            .map(|p| ("prevResult", p.clone()))
            .into_iter()
            .collect();
        delegate::check(&d.plugin_type, &d.with_keys(&prev), &req.env)
    }

    /// Ready when flanneld says it is ready, it has written a usable subnet.env, and the
    /// delegate is ready. Otherwise error 50 with the daemon's own reason.
    fn status(&self, req: &Request) -> Result<(), CniError> {
        let conf = FlannelConf::parse(&req.stdin).map_err(internal)?;
        let daemon = ask_daemon(&conf);
        let not_ready = |what: String| {
            CniError::new(
                codes::NOT_AVAILABLE,
                format!("flannel is not ready: {what}"),
            )
        };
        let env = subnet::load(&conf.subnet_file).map_err(|e| {
            let daemon = match &daemon {
                Some(state) => state.describe(),
                None => "the flannel daemon on this node is not running or not ready".into(),
            };
            not_ready(format!(
                "cannot use {}: {e}; {daemon}",
                conf.subnet_file.display()
            ))
        })?;
        let silent_default = |s: &DaemonState| {
            matches!(s, DaemonState::NotRunning { .. }) && !conf.daemon_status_configured
        };
        if let Some(state) = daemon.filter(|s| !s.is_ready() && !silent_default(s)) {
            return Err(not_ready(state.describe()));
        }
        let d = delegate_conf::build(&conf, &env).map_err(internal)?;
        delegate::status(&d.plugin_type, &d.bytes, &req.env)
    }

    /// Drops saved configs of containers the runtime no longer knows and lets the delegate
    /// and its IPAM free what they hold for them.
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        let conf = FlannelConf::parse(&req.stdin).map_err(internal)?;
        let valid: BTreeSet<String> = valid_container_ids(&req.conf.raw).map_err(|e| {
            CniError::new(
                codes::DECODE,
                format!("failed to parse GC attachments: {e}"),
            )
        })?;
        let store = Store::new(&conf.data_dir);
        let mut errors: Vec<CniError> = Vec::new();
        match store.ids() {
            Ok(ids) => {
                for id in ids.iter().filter(|id| !valid.contains(*id)) {
                    if let Err(e) = store.remove(id) {
                        errors.push(internal(e));
                    }
                }
            }
            Err(e) => errors.push(internal(e)),
        }
        match current_delegate(&conf) {
            Ok(d) => Self::forward_gc(&d, req, &mut errors),
            Err(e) => errors.push(internal(e)),
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(internal(
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }
}

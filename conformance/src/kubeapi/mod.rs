//! A small Kubernetes API server for tests: no real API server can run on the test machine,
//! so flanneld's kube mode is driven against this one, through kube-rs exactly as against a
//! cluster (a kubeconfig with an `http://` server).
//!
//! It serves, over plain HTTP/1.1:
//! - `GET /api/v1/nodes` (a full list; `limit`/`continue` are ignored, selectors too),
//! - `GET /api/v1/nodes?watch=true&resourceVersion=N` (a chunked stream of
//!   `{"type":"ADDED|MODIFIED|DELETED","object":...}` lines; `410 Expired` as an `ERROR`
//!   event once the history before N was compacted; it ends after `timeoutSeconds`),
//! - `GET /api/v1/nodes/{name}`, `PATCH /api/v1/nodes/{name}[/status]` (strategic merge
//!   and JSON merge patches; conditions merge by `type`),
//! - `GET /api/v1/namespaces/{ns}/pods/{name}`.
//!
//! Objects keep the JSON shapes of the Kubernetes API reference (see [`fixtures`]); tests
//! change Nodes through [`KubeApi`] and read back every request the server received.

mod fixtures;
mod http;
mod patch;
mod store;

pub use fixtures::{node as fixture_node, pod as fixture_pod};
pub use patch::{merge_patch, strategic_merge_patch};
pub use store::{NodeEvent, PatchError, Recorded};

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::netns::Netns;
use http::{read_request, respond, status, Chunked, Request};
use store::Store;

/// How often idle watches and the accept loop look at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);
/// A watch without `timeoutSeconds` ends after this (the API server's default range).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

struct Shared {
    store: Mutex<Store>,
    changed: Condvar,
    shutdown: AtomicBool,
    /// Bumped to end every open watch (an API server restart).
    generation: AtomicU64,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running server; stopped (listener closed, watches ended) on drop.
pub struct KubeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// Binds a listener inside `netns` from a short-lived thread: the socket keeps the namespace
/// it was created in, and no long-lived thread ever switches namespace.
fn bind_in(netns: &Netns, addr: SocketAddr) -> io::Result<TcpListener> {
    let path = netns.path().to_owned();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        // SAFETY: setns on this thread only, with a valid namespace fd; the thread ends here.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        TcpListener::bind(addr)
    })
    .join()
    .map_err(|_| io::Error::other("bind thread panicked"))?
}

impl KubeApi {
    /// Listens on 127.0.0.1 (a free port) of the current namespace.
    pub fn start_local() -> io::Result<KubeApi> {
        Self::serve(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?)
    }

    /// Listens on `ip` (a free port) inside `netns`.
    pub fn start_in(netns: &Netns, ip: IpAddr) -> io::Result<KubeApi> {
        Self::serve(bind_in(netns, SocketAddr::new(ip, 0))?)
    }

    fn serve(listener: TcpListener) -> io::Result<KubeApi> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("kubeapi-accept".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(KubeApi {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server, without credentials.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user: {{}}\n",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    fn mutate<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let r = f(&mut self.shared.store());
        self.shared.changed.notify_all();
        r
    }

    /// Adds (or replaces) a Node; returns it as stored.
    pub fn put_node(&self, node: Value) -> Value {
        self.mutate(|s| s.put_node(node))
    }

    /// Changes a Node in place, as a controller would (one MODIFIED event).
    pub fn update_node(&self, name: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
        self.mutate(|s| {
            let mut node = s.node(name)?.clone();
            f(&mut node);
            Some(s.put_node(node))
        })
    }

    pub fn delete_node(&self, name: &str) -> Option<Value> {
        self.mutate(|s| s.delete_node(name))
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.shared.store().node(name).cloned()
    }

    pub fn put_pod(&self, pod: Value) {
        self.mutate(|s| s.put_pod(pod))
    }

    /// Drops the event history: watching clients must relist after their next reconnect.
    pub fn compact(&self) {
        self.mutate(Store::compact)
    }

    /// Deletes a Node while no watch can see it, as across an API server restart whose
    /// history was compacted meanwhile: open watches end without the event, and resuming
    /// from the old resourceVersion gets 410 Gone, so clients only learn of it by relisting.
    pub fn delete_node_unseen(&self, name: &str) -> Option<Value> {
        let mut store = self.shared.store();
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let node = store.delete_node(name);
        store.compact();
        drop(store);
        self.shared.changed.notify_all();
        node
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.store().requests.clone()
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("kubeapi-conn".into())
                    .spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        if let Err(e) = serve_one(&stream, &s) {
                            if e.kind() != io::ErrorKind::BrokenPipe {
                                eprintln!("kubeapi: {e}");
                            }
                        }
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 2),
            Err(e) => {
                eprintln!("kubeapi: accept: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn not_found(what: &str, name: &str) -> (u16, Value) {
    let mut s = status(404, "NotFound", &format!("{what} \"{name}\" not found"));
    s["details"] = json!({"name": name, "kind": what});
    (404, s)
}

fn serve_one(stream: &TcpStream, shared: &Shared) -> io::Result<()> {
    let req = read_request(stream)?;
    shared.store().requests.push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        content_type: req.content_type.clone(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
    });
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let watching = matches!(req.param("watch"), Some("true" | "1"));
    let (code, body) = match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["api", "v1", "nodes"]) if watching => return watch(stream, shared, &req),
        ("GET", ["api", "v1", "nodes"]) => (200, shared.store().node_list()),
        ("GET", ["api", "v1", "nodes", name]) => match shared.store().node(name) {
            Some(n) => (200, n.clone()),
            None => not_found("nodes", name),
        },
        ("PATCH", ["api", "v1", "nodes", name, rest @ ..])
            if rest.is_empty() || rest == ["status"] =>
        {
            let result =
                shared
                    .store()
                    .patch_node(name, !rest.is_empty(), &req.content_type, &req.body);
            shared.changed.notify_all();
            match result {
                Ok(n) => (200, n),
                Err(PatchError::NotFound) => not_found("nodes", name),
                Err(PatchError::UnsupportedType(t)) => (
                    415,
                    status(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {t:?})")),
                ),
                Err(PatchError::BadBody(e)) => (400, status(400, "BadRequest", &e)),
            }
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            match shared.store().pod(ns, name) {
                Some(p) => (200, p.clone()),
                None => not_found("pods", name),
            }
        }
        (_, ["api", "v1", ..]) => (
            405,
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
        ),
        _ => (
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    };
    respond(stream, code, &body)
}

fn event_json(e: &NodeEvent) -> Value {
    json!({"type": e.kind, "object": e.object})
}

fn watch(stream: &TcpStream, shared: &Shared, req: &Request) -> io::Result<()> {
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let deadline = Instant::now() + timeout;
    let mut out = Chunked::start(stream)?;
    let mut store = shared.store();
    let generation = shared.generation.load(Ordering::SeqCst);
    let (mut pending, mut seen) = match req.param("resourceVersion") {
        None | Some("") | Some("0") => (store.current_as_added(), store.resource_version()),
        Some(text) => {
            let rv: u64 = text.parse().unwrap_or(0);
            match store.events_after(rv) {
                Some(events) => (events, rv),
                None => {
                    drop(store);
                    let gone = status(410, "Expired", &format!("too old resource version: {rv}"));
                    out.line(&json!({"type": "ERROR", "object": gone}))?;
                    return out.finish();
                }
            }
        }
    };
    loop {
        if let Some(last) = pending.last() {
            seen = seen.max(last.rv);
        }
        drop(store);
        for e in pending.drain(..) {
            out.line(&event_json(&e))?;
        }
        if shared.shutdown.load(Ordering::SeqCst) || Instant::now() >= deadline {
            return out.finish();
        }
        store = shared.store();
        store = shared
            .changed
            .wait_timeout(store, POLL)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        if shared.generation.load(Ordering::SeqCst) != generation {
            drop(store);
            return out.finish();
        }
        match store.events_after(seen) {
            Some(events) => pending = events,
            None => {
                // Compacted while we were behind: the client must relist.
                drop(store);
                let gone = status(410, "Expired", &format!("too old resource version: {seen}"));
                out.line(&json!({"type": "ERROR", "object": gone}))?;
                return out.finish();
            }
        }
    }
}

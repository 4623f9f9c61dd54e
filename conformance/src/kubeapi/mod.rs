//! A small Kubernetes API server for tests: no real API server can run on the test machine,
//! so flanneld's kube mode is driven against this one, through kube-rs exactly as against a
//! cluster (a kubeconfig with an `http://` server).
//!
//! It serves every kind in [`kinds::KINDS`] (Nodes, Pods, Namespaces, NetworkPolicies) the
//! same way, over plain HTTP/1.1: get, list (with `limit`/`continue` paging read as of the
//! first page), watch (see [`watch`]: bookmarks, 410 after compaction, `timeoutSeconds`),
//! create, update and patch (strategic merge with the kind's merge keys, JSON merge; a
//! stale `metadata.resourceVersion` is a 409 Conflict), delete, and the `status`
//! subresource. Selectors are not implemented.
//!
//! It misbehaves as real ones do, on request: [`KubeApi::inject`] makes matching requests
//! fail with 429/5xx/409 replies shaped like kube-apiserver's (see [`faults`]);
//! [`KubeApi::set_watch_limit`] ends watches early; [`KubeApi::restart`] drops every
//! connection, refuses new ones for a while and comes back with an empty watch cache.
//! Objects keep the JSON shapes of the Kubernetes API reference (see [`fixtures`]); tests
//! read back every request the server received, with the status it answered.

mod faults;
mod fixtures;
mod http;
mod kinds;
mod patch;
mod store;
mod watch;

pub use faults::{Fault, Reply, Verb};
pub use fixtures::{node as fixture_node, pod as fixture_pod};
pub use kinds::{Kind, KINDS};
pub use patch::{merge_patch, strategic_merge_patch, strategic_merge_patch_with};
pub use store::{Change, Key, NodeEvent, PatchError, Recorded, WriteError};

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::netns::Netns;
use http::{read_request, respond, respond_with, status, Request};
use store::{key_of, ListError, Part, Store};

/// How often idle watches and the accept loop look at the shutdown flag.
const POLL: Duration = Duration::from_millis(100);
/// The real server's default: the watch cache sends a bookmark about once a minute.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// Server behaviour tests may change while it runs.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// Watches end after at most this long, whatever `timeoutSeconds` asked for.
    watch_limit: Option<Duration>,
    /// `None`: no bookmarks even when asked for.
    bookmark_interval: Option<Duration>,
}

struct Shared {
    store: Mutex<Store>,
    changed: Condvar,
    shutdown: AtomicBool,
    /// Bumped to end every open watch abruptly (connections lost, a restart).
    generation: AtomicU64,
    settings: Mutex<Settings>,
    faults: Mutex<Vec<Fault>>,
    /// Open connections, so a restart can drop them.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn settings(&self) -> Settings {
        *lock(&self.settings)
    }
}

/// One accept loop over one listener.
struct Listening {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The running server; stopped (listener closed, watches ended) on drop.
pub struct KubeApi {
    addr: SocketAddr,
    /// The namespace the listener lives in (`None`: the test's own).
    netns: Option<PathBuf>,
    shared: Arc<Shared>,
    listening: Mutex<Option<Listening>>,
}

/// Binds a listener inside `netns` from a short-lived thread: the socket keeps the namespace
/// it was created in, and no long-lived thread ever switches namespace.
fn bind_in(netns: &Path, addr: SocketAddr) -> io::Result<TcpListener> {
    let path = netns.to_owned();
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
        Self::serve(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?, None)
    }

    /// Listens on `ip` (a free port) inside `netns`.
    pub fn start_in(netns: &Netns, ip: IpAddr) -> io::Result<KubeApi> {
        let listener = bind_in(netns.path(), SocketAddr::new(ip, 0))?;
        Self::serve(listener, Some(netns.path().to_owned()))
    }

    fn serve(listener: TcpListener, netns: Option<PathBuf>) -> io::Result<KubeApi> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            settings: Mutex::new(Settings {
                watch_limit: None,
                bookmark_interval: Some(BOOKMARK_INTERVAL),
            }),
            faults: Mutex::new(Vec::new()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
        });
        let api = KubeApi {
            addr,
            netns,
            shared,
            listening: Mutex::new(None),
        };
        api.listen(listener)?;
        Ok(api)
    }

    fn listen(&self, listener: TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (self.shared.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("kubeapi-accept".into())
            .spawn(move || accept_loop(listener, s, st))?;
        *lock(&self.listening) = Some(Listening { stop, thread });
        Ok(())
    }

    /// Closes the listener: new connections are refused from now on.
    fn stop_listening(&self) {
        if let Some(l) = lock(&self.listening).take() {
            l.stop.store(true, Ordering::SeqCst);
            let _ = l.thread.join();
        }
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

    fn kind(resource: &str) -> &'static Kind {
        kinds::by_resource(resource).unwrap_or_else(|| panic!("kind {resource:?} is not served"))
    }

    fn key(resource: &str, namespace: &str, name: &str) -> Key {
        let kind = Self::kind(resource);
        Key {
            resource: kind.resource,
            namespace: if kind.namespaced {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        }
    }

    /// Adds (or replaces) an object of `resource` (`"nodes"`, `"pods"`, ...), as a
    /// controller would; returns it as stored.
    pub fn put(&self, resource: &str, obj: Value) -> Value {
        let kind = Self::kind(resource);
        self.mutate(|s| s.put(kind, obj))
    }

    /// `namespace` is ignored for cluster-scoped kinds.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .store()
            .get(&Self::key(resource, namespace, name))
            .cloned()
    }

    /// Changes an object in place (one MODIFIED event).
    pub fn update(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let kind = Self::kind(resource);
        let key = Self::key(resource, namespace, name);
        self.mutate(|s| {
            let mut obj = s.get(&key)?.clone();
            f(&mut obj);
            Some(s.put(kind, obj))
        })
    }

    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = Self::key(resource, namespace, name);
        self.mutate(|s| s.delete(&key, None).ok())
    }

    pub fn put_node(&self, node: Value) -> Value {
        self.put("nodes", node)
    }

    pub fn update_node(&self, name: &str, f: impl FnOnce(&mut Value)) -> Option<Value> {
        self.update("nodes", "", name, f)
    }

    pub fn delete_node(&self, name: &str) -> Option<Value> {
        self.delete("nodes", "", name)
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.get("nodes", "", name)
    }

    pub fn put_pod(&self, pod: Value) {
        self.put("pods", pod);
    }

    /// Drops the event history: watches resuming from before now get 410 Gone.
    pub fn compact(&self) {
        self.mutate(Store::compact)
    }

    /// Moves the resourceVersion on without changing any object served here, as a real
    /// cluster's Lease and Event writes do constantly.
    pub fn unrelated_write(&self) {
        self.mutate(Store::unrelated_write)
    }

    /// Deletes a Node while no watch can see it, as across an API server restart whose
    /// history was compacted meanwhile: open watches end without the event, and resuming
    /// from the old resourceVersion gets 410 Gone, so clients only learn of it by relisting.
    pub fn delete_node_unseen(&self, name: &str) -> Option<Value> {
        let key = Self::key("nodes", "", name);
        let mut store = self.shared.store();
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let node = store.delete(&key, None).ok();
        store.compact();
        drop(store);
        self.shared.changed.notify_all();
        node
    }

    /// Matching requests get the fault's reply instead of being served, until its count
    /// is used up. Faults are tried in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    /// How many injected replies have not been given yet.
    pub fn faults_pending(&self) -> usize {
        lock(&self.shared.faults).iter().map(|f| f.remaining).sum()
    }

    /// Ends every watch after at most `limit` (`None`: only `timeoutSeconds` counts).
    pub fn set_watch_limit(&self, limit: Option<Duration>) {
        lock(&self.shared.settings).watch_limit = limit;
    }

    /// How often watches that asked for bookmarks get one (`None`: never).
    pub fn set_bookmark_interval(&self, every: Option<Duration>) {
        lock(&self.shared.settings).bookmark_interval = every;
    }

    /// Drops every open connection at once: watches end without their closing chunk, as
    /// when a proxy in between goes away.
    pub fn drop_connections(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        for (_, c) in lock(&self.shared.conns).drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.shared.changed.notify_all();
    }

    /// A restart of the API server: every connection (watches included) is dropped, new
    /// ones are refused for `downtime`, and the server comes back on the same address with
    /// the objects (they live in etcd) but an empty watch cache, while the rest of the
    /// cluster kept writing: resuming a watch from before the restart gets 410 Gone.
    pub fn restart(&self, downtime: Duration) -> io::Result<()> {
        self.stop_listening();
        self.drop_connections();
        self.mutate(|s| {
            s.unrelated_write();
            s.compact();
        });
        std::thread::sleep(downtime);
        let listener = match &self.netns {
            Some(ns) => bind_in(ns, self.addr)?,
            None => TcpListener::bind(self.addr)?,
        };
        self.listen(listener)
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
        self.stop_listening();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) && !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                if let Ok(c) = stream.try_clone() {
                    lock(&shared.conns).insert(id, c);
                }
                let s = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("kubeapi-conn".into())
                    .spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        if let Err(e) = serve_one(&stream, &s) {
                            if !matches!(
                                e.kind(),
                                io::ErrorKind::BrokenPipe
                                    | io::ErrorKind::ConnectionReset
                                    | io::ErrorKind::UnexpectedEof
                                    | io::ErrorKind::NotConnected
                            ) {
                                eprintln!("kubeapi: {e}");
                            }
                        }
                        lock(&s.conns).remove(&id);
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

/// `errors.NewNotFound`.
fn not_found(resource: &str, name: &str) -> (u16, Value) {
    let mut s = status(404, "NotFound", &format!("{resource} \"{name}\" not found"));
    s["details"] = json!({"name": name, "kind": resource});
    (404, s)
}

fn write_error(e: WriteError, resource: &str, name: &str) -> (u16, Value) {
    match e {
        WriteError::NotFound => not_found(resource, name),
        WriteError::AlreadyExists => {
            let mut s = status(409, "AlreadyExists", &format!("{resource} \"{name}\" already exists"));
            s["details"] = json!({"name": name, "kind": resource});
            (409, s)
        }
        WriteError::Conflict => (409, faults::conflict(resource, name)),
        WriteError::UnsupportedType(t) => (
            415,
            status(415, "UnsupportedMediaType", &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {t:?})")),
        ),
        WriteError::BadBody(e) => (400, status(400, "BadRequest", &e)),
    }
}

const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn record(shared: &Shared, req: &Request, status: u16) {
    shared.store().requests.push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        content_type: req.content_type.clone(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
        status,
        at: Instant::now(),
    });
}

/// The first injected fault matching the request, used up by one.
fn take_fault(shared: &Shared, verb: Verb, resource: &str) -> Option<Reply> {
    let mut faults = lock(&shared.faults);
    let f = faults.iter_mut().find(|f| f.matches(verb, resource))?;
    f.remaining -= 1;
    Some(f.reply.clone())
}

fn serve_one(stream: &TcpStream, shared: &Shared) -> io::Result<()> {
    let req = read_request(stream)?;
    let watching = matches!(req.param("watch"), Some("true" | "1"));
    let Some(target) = kinds::parse_path(&req.path) else {
        record(shared, &req, 404);
        return respond(
            stream,
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    let kind = target.kind;
    let Some(verb) = Verb::of(&req.method, target.name.is_some(), watching) else {
        record(shared, &req, 405);
        return respond(
            stream,
            405,
            &status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
        );
    };
    if let Some(reply) = take_fault(shared, verb, kind.resource) {
        let r = faults::render(&reply, verb, kind.resource, target.name.as_deref());
        record(shared, &req, r.code);
        respond_with(stream, r.code, r.content_type, r.retry_after, &r.body)?;
        if r.close {
            let _ = stream.shutdown(Shutdown::Both);
        }
        return Ok(());
    }
    if verb == Verb::Watch {
        record(shared, &req, 200);
        return watch::serve(stream, shared, &req, kind, target.namespace.as_deref());
    }
    let (code, body) = handle(shared, &req, &target, verb);
    record(shared, &req, code);
    respond(stream, code, &body)
}

fn handle(shared: &Shared, req: &Request, target: &kinds::Target, verb: Verb) -> (u16, Value) {
    let kind = target.kind;
    let ns = target.namespace.as_deref();
    let name = target.name.clone().unwrap_or_default();
    let key = Key {
        resource: kind.resource,
        namespace: ns.unwrap_or("").to_owned(),
        name: name.clone(),
    };
    let part = match target.subresource.as_deref() {
        None => Part::Main,
        Some("status") if kind.status_subresource => Part::Status,
        Some(_) => {
            return (
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            )
        }
    };
    let body_json = || serde_json::from_slice::<Value>(&req.body).map_err(|e| e.to_string());
    let mut store = shared.store();
    let result = match verb {
        Verb::Get => match store.get(&key) {
            Some(o) => (200, o.clone()),
            None => not_found(kind.resource, &name),
        },
        Verb::List => {
            let limit = req.param("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
            let token = req.param("continue").filter(|c| !c.is_empty());
            match store.list(kind, ns, limit, token) {
                Ok(page) => {
                    let mut meta = json!({"resourceVersion": page.rv.to_string()});
                    if let Some(c) = page.continue_token {
                        meta["continue"] = json!(c);
                        meta["remainingItemCount"] = json!(page.remaining);
                    }
                    (
                        200,
                        json!({"kind": kind.list_kind(), "apiVersion": kind.api_version, "metadata": meta, "items": page.items}),
                    )
                }
                Err(ListError::Expired) => (410, status(410, "Expired", CONTINUE_EXPIRED)),
                Err(ListError::BadContinue) => (
                    400,
                    status(
                        400,
                        "BadRequest",
                        "continue key is not valid: illegal base64 data",
                    ),
                ),
            }
        }
        Verb::Create => match body_json() {
            Err(e) => (400, status(400, "BadRequest", &e)),
            Ok(mut obj) => {
                if let Some(ns) = ns {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                let key = key_of(kind, &obj);
                if store.get(&key).is_some() {
                    write_error(WriteError::AlreadyExists, kind.resource, &key.name)
                } else {
                    (201, store.put(kind, obj))
                }
            }
        },
        Verb::Update => match body_json() {
            Err(e) => (400, status(400, "BadRequest", &e)),
            Ok(obj) => match store.replace(kind, &key, part, obj) {
                Ok(o) => (200, o),
                Err(e) => write_error(e, kind.resource, &name),
            },
        },
        Verb::Patch => match store.patch(kind, &key, part, &req.content_type, &req.body) {
            Ok(o) => (200, o),
            Err(e) => write_error(e, kind.resource, &name),
        },
        Verb::Delete => {
            let pre = body_json().ok();
            let pre = pre
                .as_ref()
                .and_then(|b| b["preconditions"]["resourceVersion"].as_str());
            match store.delete(&key, pre) {
                Ok(o) => (200, o),
                Err(e) => write_error(e, kind.resource, &name),
            }
        }
        Verb::Watch => unreachable!("served as a stream"),
    };
    drop(store);
    shared.changed.notify_all();
    result
}

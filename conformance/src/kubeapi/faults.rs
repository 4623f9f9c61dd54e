//! Failures a real API server answers with, injected by tests for any kind and verb.
//!
//! Each reply is shaped as kube-apiserver sends it (k8s.io/apiserver, apimachinery's
//! `errors` package): priority-and-fairness and max-in-flight rejections are a plain-text
//! 429 with `Retry-After: 1`; a shutting-down server answers a plain-text 429 with
//! `Retry-After: 5` and closes the connection; every other failure is a `Status` object,
//! and a Status whose `details.retryAfterSeconds` is set also gets a `Retry-After` header.

use serde_json::{json, Value};

use super::http::status;

/// The API verbs, as RBAC and audit logs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    pub fn of(method: &str, has_name: bool, watching: bool) -> Option<Verb> {
        Some(match (method, has_name) {
            ("GET", _) if watching => Verb::Watch,
            ("GET", true) => Verb::Get,
            ("GET", false) => Verb::List,
            ("POST", false) => Verb::Create,
            ("PUT", true) => Verb::Update,
            ("PATCH", true) => Verb::Patch,
            ("DELETE", true) => Verb::Delete,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

/// What the server answers instead of serving the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Priority and fairness (or max-in-flight) rejected the request.
    Throttled { retry_after: u32 },
    /// The server is shutting down (`--shutdown-send-retry-after`).
    ShuttingDown,
    /// `errors.NewServerTimeout`: 500, reason `ServerTimeout`, with retryAfterSeconds.
    ServerTimeout { retry_after: u32 },
    /// `errors.NewInternalError`: 500, reason `InternalError`, no retry hint.
    Internal,
    /// `errors.NewServiceUnavailable`, with a retry hint as an aggregated or proxied
    /// server gives one: 503.
    Unavailable { retry_after: u32 },
    /// `errors.NewTimeoutError`: 504, reason `Timeout`, with retryAfterSeconds.
    GatewayTimeout { retry_after: u32 },
    /// `errors.NewConflict` for the target object, as the server answers once its own
    /// retries of a patch keep losing to concurrent writers.
    Conflict,
}

/// A rule: requests it matches get its reply, `remaining` times.
#[derive(Debug, Clone)]
pub struct Fault {
    pub verbs: Vec<Verb>,
    /// `None`: every resource.
    pub resource: Option<&'static str>,
    pub remaining: usize,
    pub reply: Reply,
}

impl Fault {
    /// Matches every verb on every resource once; narrow it with [`Fault::on`] and
    /// [`Fault::times`].
    pub fn new(reply: Reply) -> Fault {
        Fault {
            verbs: Vec::new(),
            resource: None,
            remaining: 1,
            reply,
        }
    }

    pub fn on(mut self, verbs: &[Verb], resource: &'static str) -> Fault {
        self.verbs = verbs.to_vec();
        self.resource = Some(resource);
        self
    }

    pub fn times(mut self, n: usize) -> Fault {
        self.remaining = n;
        self
    }

    pub fn matches(&self, verb: Verb, resource: &str) -> bool {
        self.remaining > 0
            && (self.verbs.is_empty() || self.verbs.contains(&verb))
            && (self.resource.is_none() || self.resource == Some(resource))
    }
}

/// A rendered reply: status, headers beyond Content-Type, body and its type.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub code: u16,
    pub retry_after: Option<u32>,
    pub close: bool,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

fn status_reply(code: u16, body: Value) -> Rendered {
    let retry_after = body["details"]["retryAfterSeconds"]
        .as_u64()
        .filter(|s| *s > 0)
        .map(|s| s as u32);
    Rendered {
        code,
        retry_after,
        close: false,
        content_type: "application/json",
        body: serde_json::to_vec(&body).expect("JSON values serialize"),
    }
}

fn plain(code: u16, retry_after: u32, text: &str, close: bool) -> Rendered {
    Rendered {
        code,
        retry_after: Some(retry_after),
        close,
        content_type: "text/plain; charset=utf-8",
        // Go's http.Error appends a newline.
        body: format!("{text}\n").into_bytes(),
    }
}

/// The answer `reply` gives to `verb` on `resource` (object `name`, if any).
pub fn render(reply: &Reply, verb: Verb, resource: &str, name: Option<&str>) -> Rendered {
    let with_details = |mut s: Value, retry: Option<u32>| {
        let mut d = json!({"kind": resource});
        if let Some(n) = name {
            d["name"] = json!(n);
        }
        if let Some(r) = retry {
            d["retryAfterSeconds"] = json!(r);
        }
        s["details"] = d;
        s
    };
    match reply {
        Reply::Throttled { retry_after } => plain(
            429,
            *retry_after,
            "Too many requests, please try again later.",
            false,
        ),
        Reply::ShuttingDown => plain(
            429,
            5,
            "The apiserver is shutting down, please try again later.",
            true,
        ),
        Reply::ServerTimeout { retry_after } => {
            let msg = format!(
                "The {} operation against {resource} could not be completed at this time, please try again.",
                verb.name()
            );
            let mut s = with_details(status(500, "ServerTimeout", &msg), Some(*retry_after));
            s["details"]["name"] = json!(verb.name());
            status_reply(500, s)
        }
        Reply::Internal => status_reply(
            500,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Internal error occurred: etcdserver: leader changed",
                "reason": "InternalError",
                "details": {"causes": [{"message": "etcdserver: leader changed"}]},
                "code": 500,
            }),
        ),
        Reply::Unavailable { retry_after } => status_reply(
            503,
            with_details(
                status(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
                Some(*retry_after),
            ),
        ),
        Reply::GatewayTimeout { retry_after } => status_reply(
            504,
            with_details(
                status(
                    504,
                    "Timeout",
                    "the server was unable to return a response in the time allotted, but may still be processing the request",
                ),
                Some(*retry_after),
            ),
        ),
        Reply::Conflict => status_reply(409, conflict(resource, name.unwrap_or(""))),
    }
}

/// `errors.NewConflict` for an object whose resourceVersion moved on.
pub fn conflict(resource: &str, name: &str) -> Value {
    let mut s = status(
        409,
        "Conflict",
        &format!("Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
    );
    s["details"] = json!({"name": name, "kind": resource});
    s
}

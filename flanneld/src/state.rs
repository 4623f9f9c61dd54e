//! What the daemon knows about itself, shared with the HTTP endpoints. `/readyz` reads
//! `ready`; the rest is kept so `/metrics` and `/status` can be served from the same place.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::subnet::Lease;

#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The lease is held, rules are in place and subnet.env is written.
    pub ready: bool,
    pub lease: Option<Lease>,
    pub peers: usize,
    /// The most recent failure worth an operator's attention, with when it happened.
    pub last_error: Option<(SystemTime, String)>,
    pub lease_renewals: u64,
    pub reconcile_repairs: u64,
}

/// A cheaply cloneable handle on the shared [`Status`].
#[derive(Debug, Clone, Default)]
pub struct State(Arc<Mutex<Status>>);

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Locks the status. A panic elsewhere while holding it leaves plain data behind, which is
    /// still the best information there is.
    pub fn lock(&self) -> MutexGuard<'_, Status> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    pub fn set_error(&self, e: impl std::fmt::Display) {
        self.lock().last_error = Some((SystemTime::now(), e.to_string()));
    }
}

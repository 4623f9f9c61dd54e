//! What the daemon knows about itself, shared with the HTTP endpoints: `/readyz` reads the
//! phase, `/status` and `/metrics` read the rest, and the counters live in [`Metrics`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::metrics::{DatapathSource, Metrics};
use crate::subnet::{Lease, SharedLease};

/// Where startup is, or that it is done. Everything but `Ready` says why pods cannot start yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// Connecting to etcd or the API server; the last failure, if one happened.
    #[default]
    Connecting,
    ConnectFailed(String),
    /// The network config is missing or invalid; the last reason, once known.
    WaitingForConfig(Option<String>),
    /// Interface selection and backend device setup.
    SettingUp,
    /// Claiming a subnet; the last failure, if one happened.
    AcquiringLease(Option<String>),
    /// Everything is in place except subnet.env, which could not be written.
    SubnetFileFailed(String),
    /// The lease is held, rules are in place and subnet.env is written.
    Ready,
}

impl Phase {
    /// Why the node is not ready, in words an operator can act on; `None` when it is.
    pub fn reason(&self) -> Option<String> {
        Some(match self {
            Phase::Ready => return None,
            Phase::Connecting => "not yet configured: connecting to the subnet store".into(),
            Phase::ConnectFailed(e) => format!("not yet configured: subnet store unreachable: {e}"),
            Phase::WaitingForConfig(None) => "waiting for network config".into(),
            Phase::WaitingForConfig(Some(e)) => format!("waiting for network config: {e}"),
            Phase::SettingUp => "not yet configured: setting up the interface and backend".into(),
            Phase::AcquiringLease(None) => "acquiring a subnet lease".into(),
            Phase::AcquiringLease(Some(e)) => format!("lease failed: {e}"),
            Phase::SubnetFileFailed(e) => format!("cannot write the subnet file: {e}"),
        })
    }
}

/// Two or more leases announcing the same public IP: peers cannot tell the nodes apart, and
/// traffic for one of the subnets goes to the wrong node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicatePublicIp {
    pub public_ip: std::net::Ipv4Addr,
    pub subnets: Vec<ipnet::Ipv4Net>,
}

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub phase: Phase,
    pub lease: Option<Lease>,
    /// The other nodes' leases, as last applied to the backend.
    pub peers: Vec<SharedLease>,
    /// The most recent failure worth an operator's attention, with when it happened.
    pub last_error: Option<(SystemTime, String)>,
    pub duplicates: Vec<DuplicatePublicIp>,
    /// The backend's own datapath, once it runs (udp's counters, WireGuard's peers).
    pub datapath: Option<DatapathSource>,
    /// NetworkPolicy enforcement, when `--network-policy` is on.
    pub netpol: Option<flannel_status::NetpolReport>,
}

impl Status {
    pub fn ready(&self) -> bool {
        self.phase == Phase::Ready
    }
}

/// A cheaply cloneable handle on the shared [`Status`] and the daemon's [`Metrics`].
#[derive(Debug, Clone, Default)]
pub struct State {
    status: Arc<Mutex<Status>>,
    metrics: Arc<Metrics>,
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Locks the status. A panic elsewhere while holding it leaves plain data behind, which is
    /// still the best information there is.
    pub fn lock(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn set_error(&self, e: impl std::fmt::Display) {
        self.lock().last_error = Some((SystemTime::now(), e.to_string()));
    }

    /// Moves startup along. Once ready, the node stays ready: later failures are kept as
    /// the last error while the data plane keeps serving.
    pub fn set_phase(&self, phase: Phase) {
        let mut st = self.lock();
        if st.phase != Phase::Ready || phase == Phase::Ready {
            st.phase = phase;
        }
    }

    /// A startup failure: the phase names it and it is also the last error.
    pub fn fail_phase(&self, phase: Phase) {
        let Some(reason) = phase.reason() else {
            return self.set_phase(phase);
        };
        let mut st = self.lock();
        st.last_error = Some((SystemTime::now(), reason));
        if st.phase != Phase::Ready {
            st.phase = phase;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_sticky_and_reasons_name_the_cause() {
        let state = State::new();
        assert_eq!(
            state.snapshot().phase.reason().unwrap(),
            "not yet configured: connecting to the subnet store"
        );
        state.fail_phase(Phase::AcquiringLease(Some("out of subnets".into())));
        let st = state.snapshot();
        assert!(!st.ready());
        assert_eq!(st.phase.reason().unwrap(), "lease failed: out of subnets");
        assert_eq!(st.last_error.unwrap().1, "lease failed: out of subnets");
        state.set_phase(Phase::Ready);
        state.fail_phase(Phase::AcquiringLease(Some("etcd down".into())));
        let st = state.snapshot();
        assert!(st.ready(), "a lost lease does not take a running node down");
        assert_eq!(st.last_error.unwrap().1, "lease failed: etcd down");
    }
}

//! Scale benchmarks (`scripts/bench-scale.sh`): how the lease store and the daemon hold up
//! with thousands of nodes.
//!
//! - [`lease_storm`]: N simulated nodes acquiring leases from one etcd at once through the
//!   daemon's own lease code (needs the `scale` feature, which links flanneld);
//! - [`records`]: the lease records as etcd lists them, and the no-duplicates check;
//! - [`route_storm`]: one real flanneld with thousands of peers: start-up programming,
//!   new-lease-to-route latency, memory;
//! - [`route_monitor`]: a namespace's routes within a network, from netlink notifications.

#[cfg(feature = "scale")]
pub mod lease_storm;
#[cfg(feature = "scale")]
pub mod records;
pub mod route_monitor;
pub mod route_storm;

//! netops — the single place where flannel-rs touches the kernel.
//!
//! Modules:
//! - [`netns`]: open a network namespace (with the nsfs/procfs check upstream performs) and
//!   [`netns::NetnsGuard`], an RAII, `!Send` guard that moves the *current thread* into a
//!   namespace and back.
//! - [`netlink`]: a synchronous NETLINK_ROUTE client ([`netlink::Handle`]) with typed,
//!   mostly idempotent link/address/route/neighbour/FDB operations, request batching, and a
//!   fake transport ([`netlink::fake::FakeClient`]) so message construction is testable
//!   without root.
//! - [`sysctl`]: read/write `/proc/sys` of the current thread's namespace.
//! - [`ethtool`]: device features (offloads) over the `SIOCETHTOOL` ioctl.
//! - [`firewall`]: `iptables-restore` batches, `iptables-save` parsing, and `nft`
//!   transactions and table listings.
//! - [`conntrack`]: deleting connection-tracking entries over ctnetlink.
//! - [`file`]: replacing a file atomically (temporary file + rename), for files other
//!   processes read while they are rewritten.
//!
//! Threading rule: namespace membership is a property of an OS *thread*. Only call
//! [`netns::NetnsGuard::enter`] (or anything using it) on a thread you own for the whole
//! guard's lifetime — never on a pooled or async-runtime thread, where another task could run
//! while the thread sits in the foreign namespace. Prefer [`netlink::Handle::in_netns`]: it
//! enters only long enough to create a socket, which then stays bound to that namespace.
//! Processes spawned while a guard is held (iptables, sysctl helpers) inherit the thread's
//! namespace.

pub mod conntrack;
pub mod ethtool;
mod family;
pub mod file;
pub mod firewall;
pub mod netlink;
pub mod netns;
pub mod sysctl;
pub mod wireguard;

pub use family::Family;

//! Synchronous NETLINK_ROUTE client.
//!
//! Every operation is first turned into a [`Request`] (pure message construction, unit-tested
//! against [`fake::FakeClient`]) and then executed by a [`Handle`] over a [`Client`]
//! transport. A `Handle` created with [`Handle::in_netns`] keeps operating on that namespace
//! from any thread: the namespace is a property of the socket, fixed at creation.

mod addr;
mod bridge_vlan;
mod error;
pub mod fake;
mod link;
mod mac;
mod monitor;
mod neigh;
mod request;
mod route;
mod socket;
mod transport;

#[cfg(test)]
mod tests;

pub use addr::Addr;
pub use bridge_vlan::PortVlan;
pub use error::NetlinkError;
pub use link::{
    BridgePort, BridgeSpec, LinkInfo, LinkKind, OperState, VethSpec, VxlanInfo, VxlanSpec,
};
pub use mac::{MacAddr, MacParseError};
pub use monitor::{Monitor, Notice};
pub use neigh::{Fdb, Neigh};
pub use request::Request;
pub use route::{RouteKind, RouteSpec};
pub use socket::SocketClient;
pub use transport::{Client, Handle};

pub use crate::Family;

impl Family {
    fn address_family(self) -> netlink_packet_route::AddressFamily {
        match self {
            Family::V4 => netlink_packet_route::AddressFamily::Inet,
            Family::V6 => netlink_packet_route::AddressFamily::Inet6,
        }
    }
}

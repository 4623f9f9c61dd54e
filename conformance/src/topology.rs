//! An underlay network for multi-host tests.
//!
//! ```text
//!   host ─┐                               ┌─ host
//!   host ─┼─ switch A ── router ── switch B ┼─ host
//!          192.168.1.0/24          192.168.2.0/24
//! ```
//!
//! Each switch is a namespace holding a Linux bridge; each host is a
//! namespace whose `eth0` is a veth into a switch. The router forwards between
//! the segments and every host routes the other segment through it, so hosts
//! on one segment are L2 neighbours (where DirectRouting applies) and hosts on
//! different segments are not. Addresses overlap between tests harmlessly:
//! each underlay lives in its own namespaces.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use ipnet::Ipv4Net;

use crate::cmd::CmdError;
use crate::netns::{Netns, NetnsError};

const BRIDGE: &str = "br0";
/// Router address on each segment; hosts are numbered from .1 upwards.
const ROUTER_HOST_PART: u8 = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    A,
    B,
}

impl Segment {
    fn index(self) -> usize {
        match self {
            Segment::A => 0,
            Segment::B => 1,
        }
    }

    fn other(self) -> Segment {
        match self {
            Segment::A => Segment::B,
            Segment::B => Segment::A,
        }
    }

    pub fn subnet(self) -> Ipv4Net {
        let third = 1 + self.index() as u8;
        Ipv4Net::new(Ipv4Addr::new(192, 168, third, 0), 24).expect("/24 is a valid prefix")
    }

    pub fn router_ip(self) -> Ipv4Addr {
        self.address(ROUTER_HOST_PART)
    }

    fn address(self, host_part: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet().network().octets();
        Ipv4Addr::new(a, b, c, host_part)
    }
}

/// Two switched segments joined by a router.
#[derive(Debug)]
pub struct Underlay {
    router: Netns,
    switches: [Netns; 2],
    next_host: [AtomicU32; 2],
    next_port: AtomicU32,
}

impl Underlay {
    pub fn new() -> Result<Underlay, NetnsError> {
        let switches = [Netns::new("swa")?, Netns::new("swb")?];
        for sw in &switches {
            sw.exec_ok(&[
                "ip",
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
            ])?;
            sw.exec_ok(&["ip", "link", "set", BRIDGE, "up"])?;
        }
        let router = Netns::new("rt")?;
        let underlay = Underlay {
            router,
            switches,
            next_host: [AtomicU32::new(1), AtomicU32::new(1)],
            next_port: AtomicU32::new(0),
        };
        for (seg, ifname) in [(Segment::A, "eth0"), (Segment::B, "eth1")] {
            underlay.attach(&underlay.router, seg, ifname, seg.router_ip())?;
        }
        underlay.router.set_loopback_up()?;
        underlay
            .router
            .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(underlay)
    }

    pub fn router(&self) -> &Netns {
        &self.router
    }

    pub fn switch(&self, seg: Segment) -> &Netns {
        &self.switches[seg.index()]
    }

    /// A new host on `seg` with the next free address.
    pub fn add_host(&self, seg: Segment, tag: &str) -> Result<Host, NetnsError> {
        let n = self.next_host[seg.index()].fetch_add(1, Ordering::Relaxed);
        let part = u8::try_from(n)
            .ok()
            .filter(|p| *p < ROUTER_HOST_PART)
            .unwrap_or_else(|| panic!("segment {seg:?} has no free host address left"));
        self.add_host_with_ip(seg, tag, seg.address(part))
    }

    /// A new host on `seg` with a chosen address (inside the segment's /24,
    /// not the router's); the caller keeps addresses unique.
    pub fn add_host_with_ip(
        &self,
        seg: Segment,
        tag: &str,
        ip: Ipv4Addr,
    ) -> Result<Host, NetnsError> {
        assert!(
            seg.subnet().contains(&ip),
            "{ip} is not on segment {seg:?} ({})",
            seg.subnet()
        );
        assert_ne!(ip, seg.router_ip(), "{ip} belongs to the router");
        let netns = Netns::new(tag)?;
        self.attach(&netns, seg, "eth0", ip)?;
        // A host that reuses the address of a removed one (the benchmark's rounds do) would
        // otherwise inherit that host's MAC in the router's neighbour cache: the router keeps
        // forwarding to a port that is gone until the entry ages out, and a host that never
        // speaks first (wireguard-go with no peer handshaking yet) stays unreachable across
        // the router. Dropping the entry makes the router resolve the address afresh.
        self.router
            .exec_ok(&["ip", "neigh", "flush", "to", &ip.to_string()])?;
        netns.set_loopback_up()?;
        let other = seg.other().subnet().to_string();
        netns.exec_ok(&[
            "ip",
            "route",
            "add",
            &other,
            "via",
            &seg.router_ip().to_string(),
        ])?;
        Ok(Host {
            netns,
            segment: seg,
            ip,
        })
    }

    /// Plugs `ifname` of `ns` into the switch of `seg` with address `ip`.
    fn attach(&self, ns: &Netns, seg: Segment, ifname: &str, ip: Ipv4Addr) -> Result<(), CmdError> {
        let sw = self.switch(seg);
        let port = format!("p{}", self.next_port.fetch_add(1, Ordering::Relaxed));
        // Both ends are created inside namespaces, never in the root one.
        ns.exec_ok(&[
            "ip",
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            sw.name(),
        ])?;
        sw.exec_ok(&["ip", "link", "set", &port, "master", BRIDGE, "up"])?;
        let cidr = format!("{ip}/{}", seg.subnet().prefix_len());
        ns.exec_ok(&["ip", "addr", "add", &cidr, "dev", ifname])?;
        ns.exec_ok(&["ip", "link", "set", ifname, "up"])?;
        Ok(())
    }
}

/// A node of the underlay: a namespace with `eth0` on one segment.
#[derive(Debug)]
pub struct Host {
    netns: Netns,
    segment: Segment,
    ip: Ipv4Addr,
}

impl Host {
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    pub fn segment(&self) -> Segment {
        self.segment
    }

    /// The address of `eth0` (what flanneld would pick as its public IP).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `eth0`'s address with prefix, e.g. `192.168.1.3/24`.
    pub fn cidr(&self) -> Ipv4Net {
        Ipv4Net::new(self.ip, self.segment.subnet().prefix_len()).expect("segment prefix is valid")
    }
}

impl AsRef<Netns> for Host {
    fn as_ref(&self) -> &Netns {
        &self.netns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_distinct_private_24s_with_router_at_254() {
        assert_eq!(Segment::A.subnet().to_string(), "192.168.1.0/24");
        assert_eq!(Segment::B.subnet().to_string(), "192.168.2.0/24");
        assert_eq!(Segment::A.router_ip(), Ipv4Addr::new(192, 168, 1, 254));
        assert_eq!(Segment::B.other(), Segment::A);
    }
}

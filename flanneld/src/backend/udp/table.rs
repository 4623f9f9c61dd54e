//! The forwarding table: which peer serves which subnet, published to the forwarding threads
//! as an immutable snapshot (see `datapath::Published`).

use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    net: u32,
    mask: u32,
    peer: SocketAddrV4,
}

/// Subnet → peer endpoint, longest prefix first; and the peers' addresses, sorted, to
/// recognise datagrams from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
    peers: Vec<Ipv4Addr>,
}

impl RouteTable {
    pub fn new(entries: impl IntoIterator<Item = (Ipv4Net, SocketAddrV4)>) -> RouteTable {
        let mut routes: Vec<Route> = entries
            .into_iter()
            .map(|(net, peer)| Route {
                net: u32::from(net.network()),
                mask: u32::from(net.netmask()),
                peer,
            })
            .collect();
        // Longest prefix first makes the first match the best one.
        routes.sort_by(|a, b| b.mask.cmp(&a.mask).then(a.net.cmp(&b.net)));
        routes.dedup_by(|a, b| a.net == b.net && a.mask == b.mask);
        let mut peers: Vec<Ipv4Addr> = routes.iter().map(|r| *r.peer.ip()).collect();
        peers.sort_unstable();
        peers.dedup();
        RouteTable { routes, peers }
    }

    /// The peer serving `dst`. A node's subnets all have the same length, so the table is
    /// short and the scan stays in cache; callers look up once per super-packet.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<SocketAddrV4> {
        let d = u32::from(dst);
        self.routes
            .iter()
            .find(|r| d & r.mask == r.net)
            .map(|r| r.peer)
    }

    pub fn is_peer(&self, ip: Ipv4Addr) -> bool {
        self.peers.binary_search(&ip).is_ok()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, last), 8285)
    }

    #[test]
    fn longest_prefix_wins_and_peers_are_known() {
        let t = RouteTable::new([
            ("10.244.0.0/16".parse().unwrap(), ep(1)),
            ("10.244.2.0/24".parse().unwrap(), ep(2)),
            ("10.244.3.0/24".parse().unwrap(), ep(3)),
        ]);
        assert_eq!(t.lookup(Ipv4Addr::new(10, 244, 2, 9)), Some(ep(2)));
        assert_eq!(t.lookup(Ipv4Addr::new(10, 244, 3, 0)), Some(ep(3)));
        assert_eq!(t.lookup(Ipv4Addr::new(10, 244, 9, 9)), Some(ep(1)));
        assert_eq!(t.lookup(Ipv4Addr::new(10, 245, 0, 1)), None);
        assert!(t.is_peer(Ipv4Addr::new(192, 168, 0, 3)));
        assert!(!t.is_peer(Ipv4Addr::new(192, 168, 0, 4)));
    }
}

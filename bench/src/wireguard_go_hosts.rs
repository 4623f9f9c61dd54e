//! The overlay benchmark's reference for userspace WireGuard: the same hosts with Debian's
//! wireguard-go as `flannel-wg`, configured as upstream flanneld configures its kernel device
//! (key, port 51820, the subnet address as /32, MTU 1500 − 80, one route for the network,
//! one peer per other host allowed its subnet), and pods attached through the same CNI chain
//! from a subnet.env written as flanneld would write it.

use std::net::SocketAddr;

use ipnet::{IpNet, Ipv4Net};

use super::cluster::{Backend, Cluster, ClusterError, Node, NETWORK};
use conformance::wireguard_go::{genkey, WgPeer, WireguardGo};

/// The label of these rows.
pub const LABEL: &str = "wireguard-go (Debian)";
const PORT: u16 = 51820;
const MTU: u32 = 1420;

/// Hosts laid out as for our WireGuard rows, each with a running wireguard-go.
pub struct WgGoHosts {
    pub nodes: Vec<Node>,
    pub subnets: Vec<Ipv4Net>,
    pub devices: Vec<WireguardGo>,
}

/// The devices go before their namespaces.
impl Drop for WgGoHosts {
    fn drop(&mut self) {
        self.devices.clear();
    }
}

impl WgGoHosts {
    /// `wg show` of every host, for a failure message.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (node, dev) in self.nodes.iter().zip(&self.devices) {
            let show = dev
                .wg(&["show", "flannel-wg"])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| e.to_string());
            out.push_str(&format!("{} wg show:\n{show}\n", node.tag()));
        }
        out
    }
}

pub fn start(cluster: &Cluster) -> Result<WgGoHosts, ClusterError> {
    let nodes = cluster.add_nodes(Backend::Wireguard)?;
    let network: IpNet = NETWORK.parse().expect("valid network");
    let mut keys = Vec::new();
    let mut devices = Vec::new();
    let mut subnets = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let subnet =
            Ipv4Net::new(std::net::Ipv4Addr::new(10, 244, i as u8 + 1, 0), 24).expect("valid /24");
        let key = node.dir().join("wgkey");
        keys.push(genkey(&key)?);
        let ns = node.host().netns();
        let dev = WireguardGo::start(ns, "flannel-wg")?;
        let host = Ipv4Net::new(subnet.network(), 32).expect("valid /32");
        dev.configure(ns, &key, PORT, host.into(), MTU, network)?;
        std::fs::write(
            node.subnet_file(),
            format!(
                "FLANNEL_NETWORK={NETWORK}\nFLANNEL_SUBNET={}/24\nFLANNEL_MTU={MTU}\nFLANNEL_IPMASQ=false\n",
                subnet.hosts().next().expect("a gateway address")
            ),
        )?;
        devices.push(dev);
        subnets.push(subnet);
    }
    for (i, dev) in devices.iter().enumerate() {
        for (j, node) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            dev.add_peer(&WgPeer {
                public_key: keys[j].clone(),
                endpoint: SocketAddr::new(node.host().ip().into(), PORT),
                allowed_ips: vec![subnets[j].into()],
                psk_file: None,
            })?;
        }
    }
    Ok(WgGoHosts {
        nodes,
        subnets,
        devices,
    })
}

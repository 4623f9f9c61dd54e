//! A small flannel cluster for the demo and the overlay benchmark: the bed's
//! underlay, one etcd on the router, hosts running our `flanneld`, and pods
//! attached through libcni with the kube-flannel conflist and our plugins.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use super::interrupt::{self, Interrupted};
use conformance::cmd::CmdError;
use conformance::cni::{our_bin_dir, CniFailure, Driver};
use conformance::etcd::{Etcd, EtcdError, EtcdOptions};
use conformance::flanneld::{Flanneld, FlanneldError};
use conformance::netns::{Netns, NetnsError};
use conformance::topology::{Host, Segment, Underlay};

/// The flannel network every scenario uses (kube-flannel's default).
pub const NETWORK: &str = "10.244.0.0/16";
/// flanneld's default etcd prefix.
pub const PREFIX: &str = conformance::flanneld::ETCD_PREFIX;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Cmd(#[from] CmdError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{path} is missing: build it with `cargo build --release --workspace`")]
    MissingBinary { path: PathBuf },
    #[error(transparent)]
    Flanneld(#[from] FlanneldError),
    #[error("flanneld on {host} wrote no subnet file within {waited:?}; log:\n{log}")]
    NotReady {
        host: String,
        waited: Duration,
        log: String,
    },
    #[error("CNI {verb} of {pod} on {host}: {failure}\n{stderr}", stderr = failure.stderr)]
    Cni {
        verb: &'static str,
        pod: String,
        host: String,
        failure: Box<CniFailure>,
    },
    #[error("ADD of {pod} returned no IPv4 address: {result}")]
    NoPodIp { pod: String, result: Value },
}

/// The backends a scenario runs, in upstream's net-conf.json terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Vxlan,
    VxlanDirectRouting,
    HostGw,
    /// TUN `flannel0` with every packet forwarded by flanneld in user space.
    Udp,
    /// flanneld's userspace WireGuard on the TUN device `flannel-wg`.
    Wireguard,
}

impl Backend {
    pub const ALL: [Backend; 5] = [
        Backend::Vxlan,
        Backend::VxlanDirectRouting,
        Backend::HostGw,
        Backend::Udp,
        Backend::Wireguard,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::VxlanDirectRouting => "vxlan+DirectRouting",
            Backend::HostGw => "host-gw",
            Backend::Udp => "udp",
            Backend::Wireguard => "wireguard (userspace)",
        }
    }

    /// flanneld flags the backend needs on this node beyond the cluster's: WireGuard runs
    /// our userspace implementation even where the kernel has the module.
    pub fn flanneld_args(self) -> &'static [&'static str] {
        match self {
            Backend::Wireguard => &["--wireguard-impl=userspace"],
            _ => &[],
        }
    }

    /// The `<prefix>/config` value flanneld reads.
    pub fn net_conf(self) -> Value {
        let backend = match self {
            Backend::Vxlan => json!({"Type": "vxlan"}),
            Backend::VxlanDirectRouting => json!({"Type": "vxlan", "DirectRouting": true}),
            Backend::HostGw => json!({"Type": "host-gw"}),
            Backend::Udp => json!({"Type": "udp"}),
            Backend::Wireguard => json!({"Type": "wireguard"}),
        };
        json!({"Network": NETWORK, "Backend": backend})
    }

    /// Where the hosts go: host-gw routes pod subnets via the peer's address
    /// as a next hop, so every host must share one L2 segment.
    pub fn host_segments(self) -> &'static [Segment] {
        match self {
            Backend::HostGw => &[Segment::A, Segment::A],
            _ => &[Segment::A, Segment::A, Segment::B],
        }
    }
}

/// The underlay with etcd listening on the router's segment-A address, which
/// hosts on both segments reach.
pub struct Cluster {
    pub etcd: Etcd,
    pub underlay: Underlay,
}

impl Cluster {
    pub fn start() -> Result<Cluster, ClusterError> {
        for bin in ["flanneld", "flannel", "bridge", "host-local", "portmap"] {
            let path = our_bin_dir().join(bin);
            if !path.is_file() {
                return Err(ClusterError::MissingBinary { path });
            }
        }
        let underlay = Underlay::new()?;
        let ip = IpAddr::V4(Segment::A.router_ip());
        let etcd = Etcd::start(EtcdOptions::in_netns(underlay.router(), ip))?;
        Ok(Cluster { etcd, underlay })
    }

    /// Clears every lease record and installs `backend`'s network config, so
    /// the next flanneld starts from a clean store.
    pub fn configure(&self, backend: Backend) -> Result<(), ClusterError> {
        self.etcd
            .etcdctl(&["del", "--prefix", &format!("{PREFIX}/subnets/")])?;
        self.etcd
            .put(&format!("{PREFIX}/config"), &backend.net_conf().to_string())?;
        Ok(())
    }

    /// The hosts `backend` runs on, named h1, h2, ... and numbered from .1
    /// on each segment, so every backend's output reads the same.
    pub fn add_nodes(&self, backend: Backend) -> Result<Vec<Node>, ClusterError> {
        let mut per_segment = [0u8; 2];
        let mut nodes = Vec::new();
        for (i, seg) in backend.host_segments().iter().enumerate() {
            let slot = &mut per_segment[usize::from(*seg == Segment::B)];
            *slot += 1;
            nodes.push(self.add_node(
                *seg,
                segment_address(*seg, *slot),
                &format!("h{}", i + 1),
            )?);
        }
        Ok(nodes)
    }

    /// A new host with a chosen underlay address (hosts of a previous round
    /// are gone by then, so addresses can be reused and stay readable).
    pub fn add_node(&self, seg: Segment, ip: Ipv4Addr, tag: &str) -> Result<Node, ClusterError> {
        let host = self.underlay.add_host_with_ip(seg, tag, ip)?;
        Ok(Node {
            tag: tag.to_owned(),
            flanneld: Flanneld::etcd(host, &self.etcd.endpoint())?,
        })
    }
}

/// A host namespace and, once started, its flanneld (the bed's harness against the
/// cluster's etcd).
pub struct Node {
    tag: String,
    flanneld: Flanneld,
}

impl Node {
    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn host(&self) -> &Host {
        &self.flanneld.host
    }

    pub fn subnet_file(&self) -> &Path {
        self.flanneld.subnet_file()
    }

    /// The node's private directory (subnet.env, IPAM store, log, key files).
    pub fn dir(&self) -> &Path {
        self.flanneld.dir()
    }

    pub fn log(&self) -> String {
        self.flanneld.log()
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.flanneld.pid()
    }

    /// flanneld's arguments for the last start (after the program name).
    pub fn flanneld_args(&self) -> Vec<String> {
        self.flanneld.argv()
    }

    /// Starts `flanneld` with `extra` flags inside the host namespace; output goes to a log
    /// file. When it started.
    pub fn start_flanneld(&mut self, extra: &[&str]) -> Result<Instant, ClusterError> {
        self.flanneld.set_args(extra);
        Ok(self.flanneld.spawn()?)
    }

    /// Waits for this run of flanneld to write subnet.env; returns the lease
    /// network (FLANNEL_SUBNET holds the gateway address, e.g. 10.244.3.1/24).
    pub fn wait_ready(&mut self, within: Duration) -> Result<Ipv4Net, ClusterError> {
        let started = Instant::now();
        loop {
            interrupt::check()?;
            if self.flanneld.poll_ready()?.is_some() {
                return self.subnet();
            }
            if started.elapsed() > within {
                return Err(ClusterError::NotReady {
                    host: self.tag.clone(),
                    waited: started.elapsed(),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lease network from subnet.env.
    pub fn subnet(&self) -> Result<Ipv4Net, ClusterError> {
        Ok(self.flanneld.subnet()?)
    }

    /// FLANNEL_MTU from subnet.env: the size of the largest packet a pod sends.
    pub fn mtu(&self) -> Option<usize> {
        self.flanneld.mtu().map(|m| m as usize)
    }

    /// SIGTERM (SIGKILL and an error if flanneld ignores it); the exit status if it ran.
    pub fn stop_flanneld(&mut self) -> Result<Option<ExitStatus>, ClusterError> {
        if self.flanneld.pid().is_none() {
            return Ok(None);
        }
        Ok(Some(self.flanneld.stop()?))
    }

    /// The kube-flannel conflist, byte for byte upstream's except for where
    /// files go. All hosts of this bed share one filesystem, so the defaults
    /// (/run/flannel/subnet.env, /var/lib/cni/flannel, /var/lib/cni/networks)
    /// would make every host read one subnet.env and allocate from one IPAM
    /// store; flannel's `subnetFile` and `dataDir` and its `ipam` key (which
    /// it forwards to host-local) point each host at its own temp dir.
    pub fn conflist(&self) -> String {
        self.flanneld.conflist()
    }

    /// A new pod namespace attached to this host through libcni.
    pub fn add_pod(&self, driver: &Driver, name: &str) -> Result<Pod, ClusterError> {
        let netns = Netns::new("pod")?;
        netns.set_loopback_up()?;
        let container_id = format!("{}-{name}", self.tag);
        let result = driver
            .add(
                &self.conflist(),
                self.host().netns(),
                &netns,
                "eth0",
                &container_id,
                None,
            )
            .map_err(|failure| ClusterError::Cni {
                verb: "ADD",
                pod: name.to_owned(),
                host: self.tag.clone(),
                failure: Box::new(failure),
            })?;
        let ip = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .find_map(|a| a.parse::<Ipv4Net>().ok())
            .map(|n| n.addr())
            .ok_or_else(|| ClusterError::NoPodIp {
                pod: name.to_owned(),
                result: result.clone(),
            })?;
        Ok(Pod {
            name: name.to_owned(),
            container_id,
            netns,
            ip,
            attached: true,
        })
    }

    /// DEL of `pod` through libcni, as a runtime does when it stops the pod.
    pub fn remove_pod(&self, driver: &Driver, pod: &mut Pod) -> Result<(), ClusterError> {
        driver
            .del(
                &self.conflist(),
                self.host().netns(),
                &pod.netns,
                "eth0",
                &pod.container_id,
                None,
            )
            .map_err(|failure| ClusterError::Cni {
                verb: "DEL",
                pod: pod.name.clone(),
                host: self.tag.clone(),
                failure: Box::new(failure),
            })?;
        pod.attached = false;
        Ok(())
    }

    /// How this host reaches `other`'s pod subnet, read from its routing
    /// table rather than assumed from the backend: e.g. "same segment,
    /// flannel.1" (encapsulated) or "same segment, eth0" (routed directly).
    pub fn path_to(&self, other: &Node, other_subnet: Ipv4Net) -> String {
        if std::ptr::eq(self, other) {
            return "same host, cni0".to_owned();
        }
        // `route get` rather than the subnet's own route: udp has one route for the whole
        // network (via flannel0), the other backends one per peer.
        let probe = other_subnet.hosts().next().unwrap_or(other_subnet.addr());
        let out = self
            .host()
            .netns()
            .exec(&["ip", "-4", "route", "get", &probe.to_string()]);
        let route = String::from_utf8_lossy(&out.stdout);
        let dev = route
            .split_whitespace()
            .skip_while(|w| *w != "dev")
            .nth(1)
            .unwrap_or("no route");
        let segment = if self.host().segment() == other.host().segment() {
            "same segment"
        } else {
            "via router"
        };
        format!("{segment}, {dev}")
    }

    /// `ip -4 route` of the host, for diagnostics.
    pub fn routes_text(&self) -> String {
        String::from_utf8_lossy(&self.host().netns().exec(&["ip", "-4", "route"]).stdout)
            .into_owned()
    }
}

/// Host number `n` of `seg` (192.168.1.n on segment A).
pub fn segment_address(seg: Segment, n: u8) -> Ipv4Addr {
    let [a, b, c, _] = seg.subnet().network().octets();
    Ipv4Addr::new(a, b, c, n)
}

/// A pod namespace with `eth0` from the CNI chain.
pub struct Pod {
    pub name: String,
    pub container_id: String,
    pub netns: Netns,
    pub ip: Ipv4Addr,
    attached: bool,
}

impl Pod {
    /// Whether no DEL has run yet (its namespace deletion still cleans up).
    pub fn attached(&self) -> bool {
        self.attached
    }
}

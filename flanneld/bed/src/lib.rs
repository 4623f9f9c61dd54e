//! Test bed for the backend tests: two "hosts" (network namespaces) joined by a veth pair as
//! the underlay, each running a backend on a thread that has entered its namespace. A library
//! of its own (dev-only) so that each test binary uses what it needs of it.

pub mod udp;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use flanneld::backend::{self, Backend, ExternalInterface};
use flanneld::subnet::{Event, Lease, LeaseAttrs, StoredMacs};
use ipnet::Ipv4Net;
use netconf::flannel::NetworkConfig;
use netops::netlink::Handle;
use netops::netns::{open_netns, NetnsGuard};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace deleted on drop, even when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates a namespace in the kernel: not something a `Default` should do.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("fr-be-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace; panics unless it succeeds.
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    /// Like [`Netns::exec`], but returns whether the command succeeded.
    pub fn try_exec(&self, cmd: &[&str]) -> bool {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        Command::new("ip")
            .args(&args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut cmd = vec!["ip"];
        cmd.extend_from_slice(args);
        self.exec(&cmd)
    }

    pub fn ping(&self, from: Ipv4Addr, to: Ipv4Addr) -> bool {
        self.try_exec(&[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-I",
            &from.to_string(),
            &to.to_string(),
        ])
    }

    /// Runs `f` on a thread that has entered this namespace (sysctls are per thread).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = open_netns(self.path()).expect("open netns");
                let _guard = NetnsGuard::enter(&file).expect("enter netns");
                f()
            })
            .join()
            .expect("thread in netns panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// One node: its namespace, underlay address, backend and lease.
pub struct Node {
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub backend: Option<Box<dyn Backend>>,
    pub lease: Option<Lease>,
    /// WireGuard's node settings (key file, implementation) for backends built here.
    pub wireguard: backend::WireguardNode,
}

impl Node {
    pub fn ext(&self) -> ExternalInterface {
        let link = self.ns.run(|| {
            let mut nl = Handle::new().unwrap();
            nl.link_by_name("eth0").unwrap().expect("eth0")
        });
        ExternalInterface {
            name: "eth0".into(),
            index: link.index,
            mtu: link.mtu,
            iface_addr: self.addr,
            ext_addr: self.addr,
            iface_v6_addr: None,
            ext_v6_addr: None,
        }
    }

    /// Builds the backend from a net-conf.json text.
    pub fn start(&mut self, net_conf: &str) -> Result<(), backend::BackendError> {
        self.start_with(net_conf, self.ext(), StoredMacs::default())
    }

    pub fn start_with(
        &mut self,
        net_conf: &str,
        ext: ExternalInterface,
        macs: StoredMacs,
    ) -> Result<(), backend::BackendError> {
        let config = NetworkConfig::parse(net_conf.as_bytes()).expect("net-conf");
        let cfg = config.backend_config().expect("backend config");
        let nl = Handle::in_netns(self.ns.path()).expect("handle");
        let node = backend::NodeOptions {
            vtep_macs: macs,
            wireguard: self.wireguard.clone(),
        };
        self.backend = Some(backend::new_backend_with(&cfg, &ext, &config, nl, node)?);
        Ok(())
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_deref_mut().expect("backend started")
    }

    /// prepare() + activate() with a lease for this node's subnet.
    pub fn join(&mut self) -> Lease {
        let (addr, subnet) = (self.addr, self.subnet);
        let ns = &self.ns;
        let backend = self.backend.as_deref_mut().expect("backend started");
        let lease = ns.run(|| {
            let data = backend.prepare().expect("prepare");
            let lease = lease(subnet, addr, backend.backend_type(), data);
            backend.activate(&lease).expect("activate");
            lease
        });
        self.lease = Some(lease.clone());
        lease
    }

    /// Runs `f` with the backend on a thread inside the node's namespace, as the daemon runs
    /// it on its dedicated thread.
    pub fn with_backend<R: Send>(&mut self, f: impl FnOnce(&mut dyn Backend) -> R + Send) -> R {
        let backend = self.backend.as_deref_mut().expect("backend started");
        self.ns.run(|| f(backend))
    }

    pub fn handle(&mut self, events: &[Event]) -> backend::ApplyReport {
        self.with_backend(|b| b.handle(events).expect("handle"))
    }

    pub fn reconcile(&mut self, peers: &[Lease]) -> backend::ApplyReport {
        let peers: Vec<_> = peers.iter().cloned().map(std::sync::Arc::new).collect();
        self.with_backend(|b| b.reconcile(&peers).expect("reconcile"))
    }
}

pub fn lease(
    subnet: Ipv4Net,
    public_ip: Ipv4Addr,
    backend_type: &str,
    data: Option<serde_json::Value>,
) -> Lease {
    Lease {
        enable_ipv4: true,
        enable_ipv6: false,
        subnet,
        ipv6_subnet: None,
        attrs: LeaseAttrs {
            public_ip,
            public_ipv6: None::<Ipv6Addr>,
            backend_type: backend_type.into(),
            backend_data: data.map(Into::into),
            backend_v6_data: None,
        },
        expiration: Some(SystemTime::now() + Duration::from_secs(86400)),
        created: 0,
    }
}

/// Two hosts on one segment (192.168.77.0/24, veth `eth0` on each side), leases
/// 10.244.1.0/24 and 10.244.2.0/24.
pub fn two_hosts() -> (Node, Node) {
    let a = Netns::new();
    let b = Netns::new();
    run(
        "ip",
        &[
            "link", "add", "eth0", "netns", &a.name, "type", "veth", "peer", "name", "eth0",
            "netns", &b.name,
        ],
    );
    let node = |ns: Netns, addr: Ipv4Addr, subnet: &str| {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        Node {
            ns,
            addr,
            subnet: subnet.parse().unwrap(),
            backend: None,
            lease: None,
            wireguard: backend::WireguardNode::default(),
        }
    };
    (
        node(a, Ipv4Addr::new(192, 168, 77, 1), "10.244.1.0/24"),
        node(b, Ipv4Addr::new(192, 168, 77, 2), "10.244.2.0/24"),
    )
}

/// Puts the node's pod gateway address (`10.244.N.1/24`) on a bridge, as the bridge plugin
/// would, so traffic between subnets has real endpoints. Returns that address.
pub fn add_pod_gateway(node: &Node) -> Ipv4Addr {
    let gw = Ipv4Addr::from(u32::from(node.subnet.network()) + 1);
    node.ns.ip(&["link", "add", "cni0", "type", "bridge"]);
    node.ns.ip(&[
        "addr",
        "add",
        &format!("{gw}/{}", node.subnet.prefix_len()),
        "dev",
        "cni0",
    ]);
    node.ns.ip(&["link", "set", "cni0", "up"]);
    gw
}

/// Puts node `n`'s IPv6 pod gateway (`fc00:244:0:n::1/64`) on cni0, making the bridge if it
/// is not there yet.
pub fn add_pod_gateway_v6(node: &Node, n: u16) {
    if !node.ns.try_exec(&["ip", "link", "show", "cni0"]) {
        node.ns.ip(&["link", "add", "cni0", "type", "bridge"]);
    }
    let gw = format!("fc00:244:0:{n}::1/64");
    node.ns.ip(&["addr", "add", &gw, "dev", "cni0", "nodad"]);
    node.ns.ip(&["link", "set", "cni0", "up"]);
}

/// Lines of `ip`/`bridge` output with runs of spaces collapsed.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Node `n`'s IPv6 underlay address, `fd77::n`.
pub fn underlay_v6(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, n)
}

/// Starts a dual-stack backend of `backend_type` on `node` from `net_conf` (underlay
/// `fd77::n`, subnet `fc00:244:0:n::/64` next to the node's IPv4 one) and returns its lease.
pub fn join_dual(node: &mut Node, n: u16, net_conf: &str, backend_type: &str) -> Lease {
    node.ns.ip(&[
        "addr",
        "add",
        &format!("{}/64", underlay_v6(n)),
        "dev",
        "eth0",
        "nodad",
    ]);
    let mut ext = node.ext();
    ext.iface_v6_addr = Some(underlay_v6(n));
    ext.ext_v6_addr = Some(underlay_v6(n));
    node.start_with(net_conf, ext, StoredMacs::default())
        .unwrap();
    let subnet = node.subnet;
    let addr = node.addr;
    let backend_type = backend_type.to_owned();
    node.with_backend(move |b| {
        let data = b.prepare().expect("prepare");
        let mut own = lease(subnet, addr, &backend_type, data);
        own.enable_ipv6 = true;
        own.ipv6_subnet = Some(format!("fc00:244:0:{n}::/64").parse().unwrap());
        own.attrs.public_ipv6 = Some(underlay_v6(n));
        own.attrs.backend_v6_data = b.backend_v6_data().map(Into::into);
        b.activate(&own).expect("activate");
        own
    })
}

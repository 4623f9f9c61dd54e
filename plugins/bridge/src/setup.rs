//! ADD: bridge, veth pair, IPAM, addresses and routes, gateway, masquerade, in upstream's
//! order and with upstream's result.
//!
//! Deliberate improvement over upstream: when ADD fails after partial work, everything this
//! ADD created is rolled back (the veth pair, the IPAM allocation via IPAM DEL, masquerade and
//! spoof-check rules). Upstream only releases IPAM and spoof-check rules and leaves the veth,
//! so the runtime's retry fails with "already exists" until a DEL (cni.md §7.13). The bridge,
//! its addresses and forwarding stay: they are shared with other containers.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use netconf::{CniResult, CniVersion, Interface};
use netops::firewall::iptables::PendingRestore;
use netops::netlink::{Family, Handle, LinkInfo, OperState};
use netops::netns::{open_netns, NetnsGuard};
use skel::Request;

use crate::bridge::{self, PortSettings};
use crate::config::BridgeConf;
use crate::error::BridgeError;
use crate::gateway::{self, CONTAINER_IFACE_INDEX};
use crate::masq::{MasqError, Owner};
use crate::spoofchk::SpoofCheck;
use crate::{iface, masq_backend, veth};

/// Upstream's polling schedule for the host veth to become operationally up.
const PORT_UP_WAITS_MS: [u64; 5] = [0, 50, 500, 1000, 1000];

/// Something this ADD created that a failure must undo.
enum Undo {
    /// The container end; deleting it removes the pair.
    Veth {
        index: u32,
    },
    Ipam,
    SpoofCheck(SpoofCheck),
    Masq(netops::firewall::Backend, Owner),
}

/// One ADD in progress: its sockets, namespaces and what it has created so far.
struct Attach<'r> {
    req: &'r Request,
    conf: BridgeConf,
    host: Handle,
    cont_ns: Option<File>,
    cont: Option<Handle>,
    undo: Vec<Undo>,
}

pub fn add(req: &Request) -> Result<CniResult, BridgeError> {
    let conf = BridgeConf::load(&req.conf, &req.env.args)?;
    conf.validate_for_add()?;
    // A CNI_NETNS that is not a namespace is refused before anything is created; upstream
    // builds the bridge and runs IPAM first and leaves the bridge behind.
    let path = netns_path(req);
    let cont_ns =
        open_netns(Path::new(&path)).map_err(|source| BridgeError::OpenNetns { path, source })?;
    let host = Handle::new().map_err(BridgeError::netlink("failed to open netlink socket"))?;
    let mut attach = Attach {
        req,
        conf,
        host,
        cont_ns: Some(cont_ns),
        cont: None,
        undo: Vec::new(),
    };
    match attach.run() {
        Ok(result) => Ok(result),
        Err(e) => {
            attach.roll_back();
            Err(e)
        }
    }
}

fn netns_path(req: &Request) -> String {
    req.env
        .netns
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn iface(link: &LinkInfo) -> Interface {
    Interface {
        name: link.name.clone(),
        mac: link.mac.map(|m| m.to_string()),
        ..Interface::default()
    }
}

/// ipMasq's backend, chosen once the links are built so that an iptables restore can be
/// started while IPAM still runs; a choice that failed is reported where upstream reports it.
struct MasqStart {
    backend: Result<netops::firewall::Backend, MasqError>,
    restore: Option<PendingRestore>,
}

/// The links an ADD made before addressing: the bridge, the veth pair, the host namespace.
struct Plumbing {
    br: LinkInfo,
    pair: veth::VethPair,
    host_ns: File,
    path: String,
}

impl<'r> Attach<'r> {
    /// IPAM runs in its own process while this one builds the bridge and the veth pair:
    /// neither depends on the other, and the host-local exec is a large share of an ADD.
    /// The masquerade rules likewise go in while the container side is addressed, through
    /// an iptables-restore started while IPAM was still running. Errors are reported in
    /// upstream's order (links, then IPAM, then masquerade), and whatever succeeded is on
    /// the undo list either way.
    fn run(&mut self) -> Result<CniResult, BridgeError> {
        let req = self.req;
        std::thread::scope(|scope| {
            let ipam = self.conf.ipam_type.clone().map(|plugin| {
                scope.spawn(move || {
                    skel::delegate::add(&plugin, &req.stdin, &req.env, req.conf.cni_version)
                })
            });
            let plumbing = self.plumb();
            let masq = plumbing.is_ok().then(|| self.start_masq()).flatten();
            let ipam_result = ipam.map(|thread| {
                thread.join().unwrap_or_else(|_| {
                    Err(netconf::CniError::new(
                        netconf::codes::INTERNAL,
                        "IPAM delegate thread panicked",
                    ))
                })
            });
            if let Some(Ok(_)) = ipam_result {
                self.undo.push(Undo::Ipam);
            }
            let plumbing = plumbing?;
            let ipam_result = ipam_result.transpose().map_err(BridgeError::Ipam)?;
            self.address(scope, plumbing, ipam_result, masq)
        })
    }

    /// Chooses the ipMasq backend and starts the iptables restore. Called once the links
    /// are built, when this thread would otherwise just wait for IPAM: any earlier, the
    /// tool's start-up competes with IPAM's own process start for the CPU.
    fn start_masq(&self) -> Option<MasqStart> {
        if !self.conf.ip_masq || self.conf.ipam_type.is_none() {
            return None;
        }
        let backend = masq_backend::choose(self.conf.ip_masq_backend.as_deref());
        let restore = backend
            .as_ref()
            .ok()
            .and_then(|b| masq_backend::prestart(*b));
        Some(MasqStart { backend, restore })
    }

    fn plumb(&mut self) -> Result<Plumbing, BridgeError> {
        let req = self.req;
        let ifname = req.env.ifname.as_str();
        let br = bridge::ensure(&mut self.host, &self.conf)?;

        let path = netns_path(req);
        let cont_ns = match self.cont_ns.take() {
            Some(ns) => ns,
            None => open_netns(Path::new(&path)).map_err(|source| BridgeError::OpenNetns {
                path: path.clone(),
                source,
            })?,
        };
        // One socket per namespace, created once; the thread enters the container only
        // for the instant the socket is created.
        let cont = {
            let _in = NetnsGuard::enter(&cont_ns)?;
            Handle::new().map_err(BridgeError::netlink("failed to open netlink socket"))?
        };
        let cont = self.cont.insert(cont);
        self.cont_ns = Some(cont_ns);
        let host_ns = File::open("/proc/thread-self/ns/net")
            .map_err(|e| BridgeError::Failed(format!("failed to open host netns: {e}")))?;

        let pair = veth::create(
            &mut self.host,
            cont,
            &host_ns,
            ifname,
            self.conf.mtu,
            self.conf.mac.as_deref(),
        )?;
        self.undo.push(Undo::Veth {
            index: pair.container.index,
        });
        let settings = PortSettings {
            hairpin: self.conf.hairpin_mode,
            isolated: self.conf.port_isolation,
            vlan: self.conf.vlan,
            trunk: &self.conf.trunk,
            preserve_default_vlan: self.conf.preserve_default_vlan,
        };
        bridge::attach_port(&mut self.host, &br, &pair.host, settings)?;
        Ok(Plumbing {
            br,
            pair,
            host_ns,
            path,
        })
    }

    fn address<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        plumbing: Plumbing,
        ipam_result: Option<CniResult>,
        masq_start: Option<MasqStart>,
    ) -> Result<CniResult, BridgeError>
    where
        'r: 'scope,
    {
        let req = self.req;
        let ifname = req.env.ifname.as_str();
        let Plumbing {
            mut br,
            pair,
            host_ns,
            path,
        } = plumbing;

        let mut result = CniResult::new(CniVersion::V1_1_0);
        result.interfaces = vec![
            iface(&br),
            iface(&pair.host),
            Interface {
                sandbox: Some(path.clone()),
                ..iface(&pair.container)
            },
        ];
        let container_mac = result.interfaces[CONTAINER_IFACE_INDEX]
            .mac
            .clone()
            .unwrap_or_default();

        if self.conf.mac_spoof_check {
            let sc = SpoofCheck::new(&req.env.container_id, ifname);
            self.undo.push(Undo::SpoofCheck(sc.clone()));
            sc.setup(&pair.host.name, &container_mac)?;
        }

        let mut masq = None;
        if let Some(ipam_result) = ipam_result {
            result.ips = ipam_result.ips;
            result.routes = ipam_result.routes;
            result.dns = ipam_result.dns;
            if result.ips.is_empty() {
                return Err(BridgeError::MissingIpConfig);
            }
            let gws = gateway::calc(
                &mut result,
                self.conf.is_gateway,
                self.conf.is_default_gateway,
            );

            if let Some(MasqStart { backend, restore }) = masq_start {
                let backend = backend?;
                let owner = Owner::new(&self.conf.network, &req.env.container_id);
                self.undo.push(Undo::Masq(backend, owner.clone()));
                let ips: Vec<_> = result.ips.iter().map(|ip| ip.address).collect();
                // Spawned while this thread is in the host namespace, so the rule tools
                // run there too.
                masq = Some(scope.spawn(move || {
                    let cid = &req.env.container_id;
                    masq_backend::setup(backend, &owner, &ips, ifname, cid, restore)
                }));
            }

            let cont = self.cont.as_mut().expect("opened above");
            let cont_ns = self.cont_ns.as_ref().expect("opened above");
            iface::container_sysctls(cont_ns, ifname, self.conf.enable_dad)?;
            iface::configure(cont, cont_ns, ifname, pair.container.index, &result)?;

            if self.conf.is_gateway {
                let mut vlan_gateway = None;
                for (family, nets) in [Family::V4, Family::V6].into_iter().zip(gws.families()) {
                    for gw in nets {
                        let target = if self.conf.vlan != 0 {
                            let port = bridge::ensure_vlan_gateway(
                                &mut self.host,
                                &host_ns,
                                &br,
                                self.conf.vlan,
                                self.conf.preserve_default_vlan,
                            )?;
                            vlan_gateway = Some(port.clone());
                            port
                        } else {
                            br.clone()
                        };
                        bridge::ensure_addr(&mut self.host, &target, *gw, self.conf.force_address)?;
                    }
                    if !nets.is_empty() {
                        bridge::enable_forwarding(family)?;
                    }
                }
                if let Some(port) = vlan_gateway {
                    let port = self.relookup(&port.name)?;
                    result.interfaces.push(iface(&port));
                }
            }
        } else if !self.conf.disable_container_interface {
            let cont = self.cont.as_mut().expect("opened above");
            iface::link_up(cont, pair.container.index, ifname)?;
        }

        if !self.conf.disable_container_interface {
            self.wait_port_up(&pair.host.name)?;
        }
        if let Some(thread) = masq {
            thread.join().unwrap_or(Err(MasqError::Panicked))?;
        }

        // MACs can change after creation: the bridge takes the lowest port MAC until an
        // address pins it, and the kernel may rewrite a veth's on enslavement.
        result.interfaces[1].mac = self.relookup(&pair.host.name)?.mac.map(|m| m.to_string());
        br = bridge::lookup_bridge(&mut self.host, &self.conf.bridge)
            .map_err(BridgeError::Failed)?;
        result.interfaces[0].mac = br.mac.map(|m| m.to_string());
        if !self.conf.dns.is_empty() {
            result.dns = self.conf.dns.clone();
        }
        self.undo.clear();
        Ok(result)
    }

    fn relookup(&mut self, name: &str) -> Result<LinkInfo, BridgeError> {
        self.host
            .link_by_name(name)
            .map_err(BridgeError::netlink(format!("failed to lookup {name:?}")))?
            .ok_or_else(|| {
                BridgeError::Failed(format!("failed to lookup {name:?}: Link not found"))
            })
    }

    fn wait_port_up(&mut self, name: &str) -> Result<(), BridgeError> {
        let mut state = OperState::Unknown;
        for wait in PORT_UP_WAITS_MS {
            std::thread::sleep(Duration::from_millis(wait));
            state = self.relookup(name)?.oper_state;
            if state == OperState::Up {
                return Ok(());
            }
        }
        Err(BridgeError::PortState(state))
    }

    /// Undoes what this ADD created, newest first. Failures are logged, not returned: the
    /// runtime needs the original error, and a later DEL cleans up whatever is left.
    fn roll_back(&mut self) {
        let req = self.req;
        while let Some(step) = self.undo.pop() {
            let outcome: Result<(), BridgeError> = match step {
                Undo::Veth { index } => match self.cont.as_mut() {
                    Some(cont) => cont
                        .delete_link(index)
                        .map(drop)
                        .map_err(BridgeError::netlink("failed to delete veth")),
                    None => Ok(()),
                },
                Undo::Ipam => match &self.conf.ipam_type {
                    Some(ipam) => {
                        skel::delegate::del(ipam, &req.stdin, &req.env).map_err(BridgeError::Ipam)
                    }
                    None => Ok(()),
                },
                Undo::SpoofCheck(sc) => sc.teardown().map_err(BridgeError::from),
                Undo::Masq(backend, owner) => {
                    masq_backend::teardown(backend, &owner, &req.env.ifname)
                        .map_err(BridgeError::from)
                }
            };
            if let Err(e) = outcome {
                eprintln!("bridge: rollback after failed ADD: {e}");
            }
        }
    }
}

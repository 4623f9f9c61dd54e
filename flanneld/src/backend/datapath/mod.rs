//! The userspace datapath shared by the udp and wireguard backends: a multi-queue TUN device
//! with the kernel's TCP segmentation offload, UDP sockets with `UDP_SEGMENT` / `UDP_GRO`,
//! batched syscalls, and a pair of threads per queue.
//!
//! Upstream's udp proxy makes one syscall per packet each way on one thread. Here a worker per
//! core reads TCP super-packets of up to 64 KiB from its TUN queue, cuts them into wire-sized
//! packets once in userspace (`gso`), hands them to the backend's [`Transform`] (udp sends the
//! inner IPv4 packet as it is, WireGuard encrypts it) and sends the result as UDP trains with
//! one `sendmmsg`. Received trains are split, transformed back, and runs of one TCP flow are
//! merged into super-packets again for the TUN device. The wire sees one inner packet per
//! datagram, which is what upstream's udp peers and every WireGuard implementation expect.

pub mod checksum;
pub mod gso;
pub mod packet;
mod published;
mod socket;
mod tun;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) use self::published::{Published, Reader};
pub(crate) use self::socket::{Outbox, Port};
pub(crate) use self::worker::{Inbound, Space, Transform, TunMode, TunSink};

/// Upper bound on workers, whatever the core count: beyond it the TUN queues contend.
pub const MAX_WORKERS: usize = 8;
/// Outbox sizes for datagrams sent outside the forwarding threads (handshakes, keepalives).
const CONTROL_OUTBOX_BYTES: usize = 64 << 10;
const CONTROL_OUTBOX_MESSAGES: usize = 64;
/// A forwarding thread's outbox: a batch of super-packets cut into segments, with room for
/// per-datagram overhead; it sends itself early if a batch needs more.
const OUTBOX_BYTES: usize = 1 << 20;
const OUTBOX_MESSAGES: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("failed to open TUN device {name}: {source}{}", if advice.is_empty() { String::new() } else { format!(" ({advice})") })]
    Tun {
        name: String,
        source: io::Error,
        advice: &'static str,
    },
    #[error("failed to bind UDP socket to {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("failed to start forwarding thread: {0}")]
    Thread(io::Error),
}

/// How the datapath came up: what the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatapathInfo {
    pub workers: usize,
    pub vnet_hdr: bool,
    pub tso: bool,
    pub udp_gso: bool,
    pub udp_gro: bool,
}

/// What to open.
#[derive(Debug, Clone)]
pub(crate) struct DatapathConfig<'a> {
    pub device: &'a str,
    pub workers: usize,
    /// One address per family to listen on, all with the same port or each its own.
    pub listen: Vec<SocketAddr>,
    /// Thread name prefix, e.g. `udp` or `wg`.
    pub name: &'static str,
}

/// A running datapath. Dropping it stops the threads and closes the TUN device (which
/// removes it: it is not persistent, as upstream's is not).
pub(crate) struct Datapath {
    pub info: DatapathInfo,
    stop: Arc<AtomicBool>,
    sockets: Vec<Arc<OwnedFd>>,
    threads: Vec<JoinHandle<()>>,
    control: Port,
}

impl Datapath {
    /// Opens the TUN device and the sockets and starts the threads.
    pub fn start<T: Transform>(
        cfg: &DatapathConfig<'_>,
        transform: Arc<T>,
    ) -> Result<Datapath, DatapathError> {
        let tun = tun::open(cfg.device, cfg.workers.clamp(1, MAX_WORKERS))?;
        let queues = tun.queues.len();
        let socks = cfg
            .listen
            .iter()
            .map(|a| socket::bind(*a, queues))
            .collect::<Result<Vec<_>, _>>()?;
        let mode = worker::TunMode {
            vnet_hdr: tun.vnet_hdr,
            tso: tun.tso,
        };
        let info = DatapathInfo {
            workers: queues,
            vnet_hdr: tun.vnet_hdr,
            tso: tun.tso,
            udp_gso: socks.iter().all(|s| s.gso.load(Ordering::Relaxed)),
            udp_gro: socks.iter().all(|s| s.gro),
        };
        let port_of = |i: usize| {
            let mut port = Port::default();
            for s in &socks {
                let entry = Some((s.fds[i].clone(), s.gso.clone()));
                match s.addr {
                    SocketAddr::V4(_) => port.v4 = entry,
                    SocketAddr::V6(_) => port.v6 = entry,
                }
            }
            port
        };
        let mut dp = Datapath {
            info,
            stop: Arc::new(AtomicBool::new(false)),
            sockets: socks.iter().flat_map(|s| s.fds.iter().cloned()).collect(),
            threads: Vec::new(),
            control: port_of(0),
        };
        for (i, q) in tun.queues.into_iter().enumerate() {
            let tun = Arc::new(q);
            let egress = worker::Egress {
                transform: transform.clone(),
                stop: dp.stop.clone(),
                tun: tun.clone(),
                mode,
                out: Outbox::new(port_of(i), OUTBOX_BYTES, OUTBOX_MESSAGES),
            };
            dp.spawn(format!("{}-out-{i}", cfg.name), move || egress.run())?;
            for s in &socks {
                let ingress = worker::Ingress {
                    transform: transform.clone(),
                    stop: dp.stop.clone(),
                    tun: tun.clone(),
                    sock: s.fds[i].clone(),
                    mode,
                    replies: Outbox::new(port_of(i), CONTROL_OUTBOX_BYTES, CONTROL_OUTBOX_MESSAGES),
                };
                let family = if s.addr.is_ipv4() { "" } else { "6" };
                dp.spawn(format!("{}-in{family}-{i}", cfg.name), move || {
                    ingress.run()
                })?;
            }
        }
        Ok(dp)
    }

    fn spawn(
        &mut self,
        name: String,
        job: impl FnOnce() + Send + 'static,
    ) -> Result<(), DatapathError> {
        match std::thread::Builder::new().name(name).spawn(job) {
            Ok(t) => {
                self.threads.push(t);
                Ok(())
            }
            Err(e) => {
                self.shut_down();
                Err(DatapathError::Thread(e))
            }
        }
    }

    /// An outbox on the first worker's sockets, for datagrams a backend sends on its own
    /// (WireGuard's handshakes and keepalives from its timer thread).
    pub fn control_outbox(&self) -> Outbox {
        Outbox::new(
            self.control.clone(),
            CONTROL_OUTBOX_BYTES,
            CONTROL_OUTBOX_MESSAGES,
        )
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in &self.sockets {
            socket::shutdown(s);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shut_down();
    }
}

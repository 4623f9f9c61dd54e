//! Reachability between namespaces, by real connections.
//!
//! [`Servers`] listen on TCP and UDP ports inside a pod's namespace: the sockets are created
//! in that namespace by a short-lived thread and then served from one thread of the test
//! process (a socket keeps the namespace it was made in), so no program is started per pod.
//! [`probe_all`] tries every (source, target) pair at once, each from a thread that entered
//! the source's namespace, each with a fresh connection: a TCP handshake, or a UDP datagram
//! answered by the server. UDP probes use a source port never used before in this process,
//! so a conntrack entry of an earlier, allowed probe can never carry a later one.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::Netns;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// Runs `f` on a new thread inside the namespace at `path`; threads `f` spawns start there
/// too. The thread ends with `f`, so no thread ever leaves a namespace it entered.
pub fn in_netns<R: Send>(path: &Path, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(path)?;
            // SAFETY: setns on this thread only, with a valid namespace fd; the thread ends
            // when `f` returns.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
    })
}

/// TCP and UDP servers on some ports of one namespace, on every address (IPv4 and IPv6).
/// Stopped on drop.
pub struct Servers {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn any_addr(port: u16) -> [SocketAddr; 2] {
    [
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
    ]
}

impl Servers {
    /// Listens on TCP and UDP `ports` in `netns` (a dual-stack `[::]` socket, or `0.0.0.0`
    /// where IPv6 is off).
    pub fn start(netns: &Netns, ports: &[u16]) -> io::Result<Servers> {
        let ports = ports.to_vec();
        let (tcp, udp) = in_netns(netns.path(), move || -> io::Result<_> {
            let mut tcp = Vec::new();
            let mut udp = Vec::new();
            for &p in &ports {
                tcp.push(TcpListener::bind(&any_addr(p)[..])?);
                udp.push(UdpSocket::bind(&any_addr(p)[..])?);
            }
            Ok((tcp, udp))
        })??;
        for l in &tcp {
            l.set_nonblocking(true)?;
        }
        for u in &udp {
            u.set_nonblocking(true)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("serve-{}", netns.name()))
            .spawn(move || serve(&tcp, &udp, &flag))?;
        Ok(Servers {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(tcp: &[TcpListener], udp: &[UdpSocket], stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = tcp
        .iter()
        .map(|l| l.as_raw_fd())
        .chain(udp.iter().map(|u| u.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n <= 0 {
            continue;
        }
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            if let Some(l) = tcp.get(i) {
                // The handshake is the answer; the connection is closed at once.
                while l.accept().is_ok() {}
            } else if let Some(u) = udp.get(i - tcp.len()) {
                while let Ok((len, from)) = u.recv_from(&mut buf) {
                    let _ = u.send_to(&buf[..len], from);
                }
            }
        }
    }
}

/// A UDP source port not used before by this process (20000-59999, cycling).
fn fresh_udp_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    20000 + NEXT.fetch_add(1, Ordering::Relaxed) % 40000
}

/// One connection attempt from the calling thread's namespace.
pub fn probe(to: IpAddr, proto: Proto, port: u16, timeout: Duration) -> bool {
    let dst = SocketAddr::new(to, port);
    match proto {
        Proto::Tcp => TcpStream::connect_timeout(&dst, timeout).is_ok(),
        Proto::Udp => {
            let unspecified = match to {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let sock = (0..64)
                .find_map(|_| UdpSocket::bind(SocketAddr::new(unspecified, fresh_udp_port())).ok());
            let Some(sock) = sock else {
                return false;
            };
            let deadline = Instant::now() + timeout;
            if sock.send_to(b"probe", dst).is_err() {
                return false;
            }
            let mut buf = [0u8; 64];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
                    return false;
                }
                match sock.recv_from(&mut buf) {
                    Ok((_, from)) if from.ip() == to && from.port() == port => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        }
    }
}

/// Tries every `sources[i]` → `targets[j]` pair at once; `None` where `skip(i, j)`.
pub fn probe_all(
    sources: &[&Netns],
    targets: &[IpAddr],
    proto: Proto,
    port: u16,
    timeout: Duration,
    skip: impl Fn(usize, usize) -> bool + Sync,
) -> Vec<Vec<Option<bool>>> {
    std::thread::scope(|s| {
        let rows: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let skip = &skip;
                s.spawn(move || {
                    in_netns(ns.path(), || {
                        std::thread::scope(|inner| {
                            let cells: Vec<_> = targets
                                .iter()
                                .enumerate()
                                .map(|(j, to)| {
                                    inner.spawn(move || {
                                        (!skip(i, j)).then(|| probe(*to, proto, port, timeout))
                                    })
                                })
                                .collect();
                            cells
                                .into_iter()
                                .map(|c| c.join().expect("probe thread"))
                                .collect::<Vec<_>>()
                        })
                    })
                    .expect("enter source namespace")
                })
            })
            .collect();
        rows.into_iter()
            .map(|r| r.join().expect("source thread"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_udp_ports_do_not_repeat_soon() {
        let a: Vec<u16> = (0..1000).map(|_| fresh_udp_port()).collect();
        let mut b = a.clone();
        b.sort();
        b.dedup();
        assert_eq!(a.len(), b.len());
        assert!(a.iter().all(|p| (20000..60000).contains(p)));
    }
}

//! What WireGuard's data messages cost in the implementation flanneld's userspace engine is
//! built on (boringtun's `Tunn`, ring's ChaCha20-Poly1305 inside), measured in this process:
//! two state machines complete a handshake in memory, then one seals full-size IP packets
//! and the other opens them, on one thread, timed by that thread's CPU clock (so other load
//! on the machine does not count).
//!
//! Every byte a userspace WireGuard node forwards is sealed once on one node and opened once
//! on the other, so this is CPU time per GB that no datapath on this crate avoids; with the
//! cost of the same TUN + UDP machinery without encryption (the udp backend, same run) it
//! bounds what WireGuard can reach when both nodes share this machine's cores.

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

type BoxError = Box<dyn std::error::Error>;

/// Bytes each timed round moves; about half a CPU second at ring's speed here.
const ROUND_BYTES: usize = 512 << 20;
/// Rounds timed; the fastest is reported (a floor: anything else running only adds).
const ROUNDS: usize = 3;

/// CPU seconds per GB of IP packets of `size` bytes to seal them on one node and open them
/// on the other (one core's time for both, the fastest of [`ROUNDS`]).
pub fn seal_open_cpu_secs_per_gb(size: usize) -> Result<f64, BoxError> {
    if size < 20 {
        return Err(format!("{size}-byte packets cannot hold an IPv4 header").into());
    }
    let (mut a, mut b) = handshake()?;
    let pkt = ipv4_packet(size);
    let mut wire = vec![0u8; size + 64];
    let mut plain = vec![0u8; size + 64];
    let count = ROUND_BYTES / size;
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let t0 = thread_cpu_secs();
        for _ in 0..count {
            let msg = match a.encapsulate(&pkt, &mut wire) {
                TunnResult::WriteToNetwork(m) => m,
                other => return Err(unexpected("sealing", &other).into()),
            };
            match b.decapsulate(None, msg, &mut plain) {
                TunnResult::WriteToTunnelV4(p, _) if p.len() == size => {}
                other => return Err(unexpected("opening", &other).into()),
            }
        }
        let secs = thread_cpu_secs() - t0;
        best = best.min(secs / ((count * size) as f64 / 1e9));
    }
    Ok(best)
}

/// Two peers with a completed handshake: `a` initiated, `b` answered, `a` confirmed.
fn handshake() -> Result<(Tunn, Tunn), BoxError> {
    let (ka, kb) = (StaticSecret::from([1u8; 32]), StaticSecret::from([2u8; 32]));
    let (pa, pb) = (PublicKey::from(&ka), PublicKey::from(&kb));
    let mut a = Tunn::new(ka, pb, None, None, 1, None);
    let mut b = Tunn::new(kb, pa, None, None, 2, None);
    let mut buf = vec![0u8; 256];
    let mut out = vec![0u8; 256];
    let init = match a.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(m) => m.to_vec(),
        other => return Err(unexpected("initiating", &other).into()),
    };
    let resp = match b.decapsulate(None, &init, &mut out) {
        TunnResult::WriteToNetwork(m) => m.to_vec(),
        other => return Err(unexpected("answering", &other).into()),
    };
    // The initiator confirms with a keepalive, which gives the responder its session.
    let confirm = match a.decapsulate(None, &resp, &mut out) {
        TunnResult::WriteToNetwork(m) => m.to_vec(),
        other => return Err(unexpected("completing", &other).into()),
    };
    match b.decapsulate(None, &confirm, &mut out) {
        TunnResult::Done => Ok((a, b)),
        other => Err(unexpected("confirming", &other).into()),
    }
}

/// An IPv4 packet of `size` bytes (boringtun checks the header of what it decrypts).
fn ipv4_packet(size: usize) -> Vec<u8> {
    let mut p = vec![0xa5u8; size];
    p[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 1, 2, 10, 1, 2, 2,
    ]);
    p[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    p
}

fn unexpected(step: &str, r: &TunnResult<'_>) -> String {
    let what = match r {
        TunnResult::Done => "nothing".to_owned(),
        TunnResult::Err(e) => format!("error {e:?}"),
        TunnResult::WriteToNetwork(m) => format!("a {}-byte message for the network", m.len()),
        TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
            format!("a {}-byte packet for the tunnel", p.len())
        }
    };
    format!("boringtun in memory: {step} gave {what}")
}

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_sealed_by_one_peer_open_at_the_other() {
        let (mut a, mut b) = handshake().unwrap();
        let pkt = ipv4_packet(100);
        let (mut wire, mut plain) = (vec![0u8; 200], vec![0u8; 200]);
        let TunnResult::WriteToNetwork(msg) = a.encapsulate(&pkt, &mut wire) else {
            panic!("no data message")
        };
        assert_eq!(msg.len(), 100 + 32, "header 16 + tag 16");
        let TunnResult::WriteToTunnelV4(got, src) = b.decapsulate(None, msg, &mut plain) else {
            panic!("not opened")
        };
        assert_eq!((&got[..], src.octets()), (&pkt[..], [10, 1, 1, 2]));
        assert!(seal_open_cpu_secs_per_gb(10).is_err());
    }
}

//! WireGuard's datagram path: whatever anyone sends to the listen port reaches the userspace
//! engine exactly as here (flanneld's `ProbeNode` is the engine without sockets). A node with
//! one established peer receives the mutated datagram; garbage, truncated, replayed,
//! oversized and forged messages must be dropped and counted, never panic, and nothing that
//! the peer did not encrypt may ever come out towards the TUN device.

use std::cell::RefCell;
use std::collections::HashSet;

use flanneld::backend::wireguard::probe::{connected_pair, Outcome, ProbeNode};
use flanneld::metrics::DropReason;

use super::Target;

pub fn targets() -> Vec<Target> {
    vec![Target {
        name: "flanneld_wireguard_datagram",
        seeds,
        dict: &[
            b"\x01\x00\x00\x00",
            b"\x02\x00\x00\x00",
            b"\x03\x00\x00\x00",
            b"\x04\x00\x00\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x00",
        ],
        exec: datagram,
    }]
}

/// An established pair and every plaintext the sending side encrypted.
struct Harness {
    a: ProbeNode,
    b: ProbeNode,
    sent: HashSet<Vec<u8>>,
    datagrams: Vec<Vec<u8>>,
}

/// A UDP packet inside the flannel network, from a's subnet to b's.
fn packet(payload: usize, mark: u8) -> Vec<u8> {
    let total = 28 + payload;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 244, 1, 5]);
    p[16..20].copy_from_slice(&[10, 244, 2, 7]);
    p[28..].fill(mark);
    p
}

impl Harness {
    fn new() -> Harness {
        let first = packet(40, 0);
        let (mut a, b, mut datagrams) = connected_pair(None, &first);
        let mut sent = HashSet::from([first]);
        for (i, size) in [0usize, 1, 100, 1372].into_iter().enumerate() {
            let p = packet(size, i as u8 + 1);
            datagrams.extend(a.send(&p).sent.into_iter().map(|(_, d)| d));
            sent.insert(p);
        }
        Harness {
            a,
            b,
            sent,
            datagrams,
        }
    }
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut Harness) -> R) -> R {
    HARNESS.with(|h| f(h.borrow_mut().get_or_insert_with(Harness::new)))
}

fn seeds() -> Vec<Vec<u8>> {
    with(|h| h.datagrams.clone())
}

fn reason(o: &Outcome) -> &'static str {
    DropReason::ALL
        .iter()
        .find(|r| o.counters.dropped(**r) > 0)
        .map_or("none", |r| r.as_str())
}

fn datagram(b: &[u8]) -> Result<String, String> {
    with(|h| {
        let from = h.a.addr;
        let o = h.b.receive(from, b);
        if let Some(p) = &o.delivered {
            if !h.sent.contains(p) {
                return Err(format!("delivered {} bytes nobody encrypted", p.len()));
            }
        }
        for (_, d) in &o.sent {
            if !(1..=4).contains(&d[0]) || d[1..4] != [0, 0, 0] {
                return Err(format!("sent a message of type {:?}", &d[..4.min(d.len())]));
            }
        }
        Ok(format!(
            "{}|{}|{}",
            reason(&o),
            o.delivered.is_some(),
            o.sent.len().min(3)
        ))
    })
}

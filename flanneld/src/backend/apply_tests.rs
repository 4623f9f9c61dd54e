use std::net::IpAddr;

use netops::netlink::fake::{FakeClient, Reply};
use netops::netlink::{Handle, MacAddr, NetlinkError};

use super::*;
use crate::backend::objects::PeerRoute;

/// A kernel rejection with `code`, as the fake transport takes it (the errno type belongs
/// to netops' dependencies, so it is obtained rather than named).
macro_rules! rejected {
    ($code:expr) => {
        Reply::Errno(
            NetlinkError::Io {
                op: String::new(),
                source: std::io::Error::from_raw_os_error($code),
            }
            .errno()
            .unwrap(),
        )
    };
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The three objects of one vxlan peer `n` on link 5.
fn peer(n: u8) -> [Object; 3] {
    let mac = MacAddr([2, 0, 0, 0, 0, n]);
    let vtep = ip(&format!("10.244.{n}.0"));
    [
        Object::Neigh {
            ifindex: 5,
            ip: vtep,
            mac,
        },
        Object::Fdb {
            ifindex: 5,
            mac,
            dst: ip(&format!("192.168.1.{n}")),
        },
        Object::Route(PeerRoute {
            dst: format!("10.244.{n}.0/24").parse().unwrap(),
            gw: Some(vtep),
            oif: 5,
            onlink: true,
        }),
    ]
}

fn jobs(peer_index: usize, objects: &[Object]) -> Vec<Job> {
    objects
        .iter()
        .map(|&object| Job {
            peer: peer_index,
            object,
        })
        .collect()
}

fn labels() -> Vec<String> {
    vec!["peer one".into(), "peer two".into()]
}

#[test]
fn removals_then_installs_in_dependency_order_in_one_datagram() {
    let mut nl = Handle::with_client(FakeClient::new());
    // Given in an order that would make the kernel ARP (route first) if sent as is.
    let mut installs = jobs(1, &peer(2));
    installs.reverse();
    let out = apply(
        &mut nl,
        &|i| labels()[i].clone(),
        jobs(0, &peer(1)),
        installs,
        None,
    );
    assert_eq!((out.installed, out.removed), (3, 3));
    assert!(out.errors.is_empty() && out.failed_peers.is_empty());

    let [n1, f1, r1] = peer(1);
    let [n2, f2, r2] = peer(2);
    let expected = [
        r1.remove(),
        f1.remove(),
        n1.remove(),
        n2.install(),
        f2.install(),
        r2.install(),
    ];
    let sent = nl.client().sent_messages();
    assert_eq!(
        sent,
        expected.iter().map(|r| r.message()).collect::<Vec<_>>()
    );
    assert_eq!(nl.client().datagrams(), 1, "one batch, one datagram");
}

#[test]
fn a_half_installed_peer_is_rolled_back_and_named() {
    let mut installs = jobs(0, &peer(1));
    installs.extend(jobs(1, &peer(2)));
    // Stage order interleaves the peers: n1 n2 f1 f2 r1 r2; f1 is rejected.
    let mut client = FakeClient::new();
    client
        .reply(Reply::Ack)
        .reply(Reply::Ack)
        .reply(rejected!(libc::EINVAL));
    let mut nl = Handle::with_client(client);
    let out = apply(
        &mut nl,
        &|i| labels()[i].clone(),
        Vec::new(),
        installs,
        None,
    );

    assert_eq!(out.failed_peers.into_iter().collect::<Vec<_>>(), [0]);
    assert_eq!(
        out.installed, 3,
        "peer two is complete; peer one was undone"
    );
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0].starts_with("peer one: failed to set fdb entry"),
        "{:?}",
        out.errors
    );
    assert!(
        out.errors[0].ends_with("invalid argument"),
        "{:?}",
        out.errors
    );

    let [n1, _, r1] = peer(1);
    let sent = nl.client().sent_messages();
    let rollback: Vec<_> = sent[6..].to_vec();
    assert_eq!(rollback, [r1.remove().message(), n1.remove().message()]);
    assert_eq!(nl.client().datagrams(), 2);
}

#[test]
fn removing_what_is_already_gone_is_not_an_error_but_other_failures_are() {
    let mut client = FakeClient::new();
    client
        .reply(rejected!(libc::ESRCH))
        .reply(rejected!(libc::ENOENT))
        .reply(rejected!(libc::EPERM));
    let mut nl = Handle::with_client(client);
    let out = apply(
        &mut nl,
        &|i| labels()[i].clone(),
        jobs(1, &peer(3)),
        Vec::new(),
        None,
    );
    assert_eq!(out.removed, 0);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(out.errors[0].starts_with("peer two: failed to delete neighbour 10.244.3.0"));
    assert!(out.errors[0].ends_with("operation not permitted"));
}

#[test]
fn a_hint_is_appended_to_the_failures_it_recognises() {
    fn hint(object: &Object, _: &NetlinkError) -> Option<&'static str> {
        matches!(object, Object::Route(_)).then_some("explained")
    }
    let mut client = FakeClient::new();
    client
        .reply(Reply::Ack)
        .reply(Reply::Ack)
        .reply(rejected!(libc::ENETUNREACH));
    let mut nl = Handle::with_client(client);
    let out = apply(
        &mut nl,
        &|i| labels()[i].clone(),
        Vec::new(),
        jobs(0, &peer(4)),
        Some(hint),
    );
    assert_eq!(out.errors.len(), 1);
    assert!(
        out.errors[0].ends_with("network is unreachable: explained"),
        "{:?}",
        out.errors
    );
}

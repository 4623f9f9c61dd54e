use ipnet::IpNet;
use nix::errno::Errno;

use crate::netlink::fake::{FakeClient, Reply};
use crate::netlink::{Family, Handle, NetlinkError, Request, RouteSpec};

fn routes(n: usize) -> Vec<Request> {
    (0..n)
        .map(|i| {
            let dst: IpNet = format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap();
            Request::route_replace(&RouteSpec::new(dst).dev(3))
        })
        .collect()
}

#[test]
fn batch_is_sent_in_windows_with_one_result_per_request() {
    let mut h = Handle::with_client(FakeClient::new().with_limits(4, 1 << 20));
    for i in 0..10 {
        h.client_mut().reply(if i == 5 {
            Reply::Errno(Errno::ENETUNREACH)
        } else {
            Reply::Ack
        });
    }
    let results = h.batch(&routes(10));
    assert_eq!(results.len(), 10);
    assert_eq!(h.client().datagrams(), 3, "10 requests in windows of 4");
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (
                5,
                Err(NetlinkError::Kernel {
                    errno: Errno::ENETUNREACH,
                    op,
                }),
            ) => {
                assert_eq!(op, "failed to replace route '10.0.5.0/24 dev 3'")
            }
            (5, other) => panic!("request 5: {other:?}"),
            (_, r) => assert!(r.is_ok(), "request {i}: {r:?}"),
        }
    }
    let seqs: Vec<u32> = h
        .client()
        .sent()
        .iter()
        .map(|m| m.header.sequence_number)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] != 0,
        "{seqs:?}"
    );
}

#[test]
fn datagram_limit_splits_windows() {
    let one = {
        let mut buf = Vec::new();
        routes(1)[0].emit(1, true, &mut buf);
        buf.len()
    };
    let mut h = Handle::with_client(FakeClient::new().with_limits(100, one * 2));
    assert!(h.batch(&routes(5)).iter().all(Result::is_ok));
    assert_eq!(h.client().datagrams(), 3, "two messages fit per datagram");
}

#[test]
fn lost_acknowledgements_are_reported_not_guessed() {
    let mut h = Handle::with_client(FakeClient::new().with_limits(8, 1 << 20));
    h.client_mut()
        .reply(Reply::Ack)
        .reply(Reply::Lost)
        .reply(Reply::Ack);
    let results = h.batch(&routes(3));
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(
        matches!(results[1], Err(NetlinkError::AckLost { .. })),
        "{:?}",
        results[1]
    );
}

#[test]
fn interrupted_dump_is_restarted() {
    let mut h = Handle::with_client(FakeClient::new());
    h.client_mut()
        .reply(Reply::InterruptedDump(vec![]))
        .reply(Reply::Objects(vec![]));
    assert!(h.route_list(Family::V4, None).unwrap().is_empty());
    assert_eq!(h.client().datagrams(), 2);

    for _ in 0..5 {
        h.client_mut().reply(Reply::InterruptedDump(vec![]));
    }
    let err = h.route_list(Family::V4, None).unwrap_err();
    assert!(matches!(err, NetlinkError::DumpInterrupted { .. }), "{err}");
}

#[test]
fn dump_errors_carry_the_operation() {
    let mut h = Handle::with_client(FakeClient::new());
    h.client_mut().reply(Reply::Errno(Errno::EOPNOTSUPP));
    let err = h.link_list().unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to list links: operation not supported"
    );
}

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::ip::Cidr;
use crate::range::RangeSpec;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(subnets: &[&str]) -> RangeSet {
    let specs: Vec<RangeSpec> = subnets
        .iter()
        .map(|s| RangeSpec {
            subnet: Some(Cidr::parse(s).unwrap()),
            ..RangeSpec::default()
        })
        .collect();
    RangeSet::canonicalize(&specs).unwrap()
}

fn store(dir: &Path) -> Store {
    Store::open(dir, "net").unwrap()
}

fn alloc(store: &Store, set: &RangeSet, id: &str) -> Result<Allocated, AllocError> {
    allocate(store, set, 0, id, "eth0", None)
}

#[test]
fn slash_29_hands_out_2_to_6_then_is_exhausted_then_reuses_freed_in_round_robin() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, set) = (store(tmp.path()), set(&["10.9.0.0/29"]));
    let got: Vec<String> = (0..5)
        .map(|i| {
            alloc(&store, &set, &format!("c{i}"))
                .unwrap()
                .ip
                .to_string()
        })
        .collect();
    assert_eq!(
        got,
        ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
    );
    let e = alloc(&store, &set, "c5").unwrap_err();
    assert_eq!(
        e.to_string(),
        "no IP addresses available in range set: 10.9.0.1-10.9.0.6"
    );

    store.lock().unwrap().release("c1", "eth0").unwrap();
    assert_eq!(alloc(&store, &set, "c6").unwrap().ip, ip("10.9.0.3"));
}

#[test]
fn round_robin_does_not_reuse_a_freed_address_before_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, set) = (store(tmp.path()), set(&["10.9.0.0/29"]));
    alloc(&store, &set, "a").unwrap();
    store.lock().unwrap().release("a", "eth0").unwrap();
    assert_eq!(alloc(&store, &set, "b").unwrap().ip, ip("10.9.0.3"));
}

#[test]
fn result_carries_prefix_and_gateway_of_the_range() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = RangeSpec {
        subnet: Cidr::parse("10.9.0.0/24"),
        ..RangeSpec::default()
    };
    spec.gateway = Some(ip("10.9.0.2"));
    let set = RangeSet::canonicalize(&[spec]).unwrap();
    let store = store(tmp.path());
    let got: Vec<Allocated> = (0..2)
        .map(|i| alloc(&store, &set, &format!("c{i}")).unwrap())
        .collect();
    assert_eq!(
        got[0],
        Allocated {
            ip: ip("10.9.0.1"),
            prefix: 24,
            gateway: ip("10.9.0.2")
        }
    );
    assert_eq!(got[1].ip, ip("10.9.0.3"), "gateway skipped");
}

#[test]
fn ipv6_range_includes_last_address() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, set) = (store(tmp.path()), set(&["fd00::/126"]));
    let got: Vec<IpAddr> = (0..2)
        .map(|i| alloc(&store, &set, &format!("c{i}")).unwrap().ip)
        .collect();
    assert_eq!(got, [ip("fd00::2"), ip("fd00::3")]);
    assert_eq!(
        alloc(&store, &set, "c2").unwrap_err().to_string(),
        "no IP addresses available in range set: fd00::1-fd00::3"
    );
}

#[test]
fn requested_address() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, set) = (store(tmp.path()), set(&["10.9.0.0/29"]));
    let a = allocate(&store, &set, 0, "a", "eth0", Some(ip("10.9.0.5"))).unwrap();
    assert_eq!(a.ip, ip("10.9.0.5"));
    let e = allocate(&store, &set, 0, "b", "eth0", Some(ip("10.9.0.5"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "requested IP address 10.9.0.5 is not available in range set 10.9.0.1-10.9.0.6"
    );
    let e = allocate(&store, &set, 0, "b", "eth0", Some(ip("10.9.0.1"))).unwrap_err();
    assert_eq!(e.to_string(), "requested ip 10.9.0.1 is subnet's gateway");
    let e = allocate(&store, &set, 0, "b", "eth0", Some(ip("10.9.0.7"))).unwrap_err();
    assert_eq!(e.to_string(), "10.9.0.7 not in range set 10.9.0.1-10.9.0.6");
    // The round-robin position follows requested addresses too.
    assert_eq!(alloc(&store, &set, "c").unwrap().ip, ip("10.9.0.6"));
}

#[test]
fn duplicate_attachment_is_refused_per_set() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let (v4, v6) = (set(&["10.9.0.0/29"]), set(&["fd00::/120"]));
    alloc(&store, &v4, "a").unwrap();
    let e = alloc(&store, &v4, "a").unwrap_err();
    assert_eq!(
        e.to_string(),
        "10.9.0.2 has been allocated to a, duplicate allocation is not allowed"
    );
    assert!(
        allocate(&store, &v4, 0, "a", "eth1", None).is_ok(),
        "another interface is another attachment"
    );
    assert!(
        allocate(&store, &v6, 1, "a", "eth0", None).is_ok(),
        "other set"
    );
}

#[test]
fn garbage_last_reserved_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, set) = (store(tmp.path()), set(&["10.9.0.0/29"]));
    fs::write(store.dir().join("last_reserved_ip.0"), "not an ip").unwrap();
    assert_eq!(alloc(&store, &set, "a").unwrap().ip, ip("10.9.0.2"));
    assert_eq!(
        fs::read_to_string(store.dir().join("last_reserved_ip.0")).unwrap(),
        "10.9.0.2"
    );
}

#[test]
fn concurrent_threads_never_share_an_address() {
    let tmp = tempfile::tempdir().unwrap();
    let set = set(&["10.9.0.0/26"]); // 61 usable addresses
    let per_thread = 8;
    let threads = 8;
    let results: Vec<Vec<Result<Allocated, String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (dir, set) = (tmp.path(), &set);
                s.spawn(move || {
                    let store = store(dir); // own descriptor, like a separate plugin process
                    (0..per_thread)
                        .map(|i| {
                            alloc(&store, set, &format!("t{t}-{i}")).map_err(|e| e.to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<_> = results.into_iter().flatten().collect();
    let ok: Vec<IpAddr> = all
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|a| a.ip))
        .collect();
    assert_eq!(ok.len(), 61);
    assert_eq!(ok.iter().collect::<HashSet<_>>().len(), 61, "no duplicates");
    assert!(all
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| e.starts_with("no IP addresses available")));
}

const CHILD_ENV: &str = "HOST_LOCAL_ALLOC_CHILD_DIR";

/// Body of the child processes of `concurrent_processes_never_share_an_address`; a no-op when
/// run as an ordinary test.
#[test]
fn child_process_allocator() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let tag = std::process::id();
    let store = store(Path::new(&dir));
    let set = set(&["10.9.0.0/26"]);
    for i in 0..12 {
        match alloc(&store, &set, &format!("p{tag}-{i}")) {
            Ok(a) => println!("GOT {}", a.ip),
            Err(e) => println!("ERR {e}"),
        }
    }
}

#[test]
fn concurrent_processes_never_share_an_address() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "allocator::tests::child_process_allocator",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, tmp.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut got = Vec::new();
    let mut errors = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        // The harness prints the test name without a newline before the child's first line.
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            if let Some(ip) = line.split_once("GOT ").map(|(_, ip)| ip) {
                got.push(ip.to_string());
            } else if let Some(e) = line.split_once("ERR ").map(|(_, e)| e) {
                assert!(e.starts_with("no IP addresses available"), "{e}");
                errors += 1;
            }
        }
    }
    assert_eq!(got.len(), 61);
    assert_eq!(errors, 72 - 61);
    assert_eq!(
        got.iter().collect::<HashSet<_>>().len(),
        61,
        "no duplicates across processes"
    );
    let files = fs::read_dir(tmp.path().join("net")).unwrap().count();
    assert_eq!(files, 61 + 2, "61 addresses + last_reserved_ip.0 + lock");
}

//! Proof that the test bed works, using only reference plugins and etcd:
//! if these pass, a failing conformance test points at our code, not the bed.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use conformance::{
    Attachment, Driver, Etcd, EtcdOptions, Netns, PluginDir, Segment, Underlay, Verb,
};
use ipnet::Ipv4Net;
use serde_json::{json, Value};

const SUBNET: &str = "10.88.0.0/24";
const GATEWAY: &str = "10.88.0.1";

/// bridge + host-local, as a runtime's /etc/cni/net.d would hold it, with the
/// IPAM store in a temp dir instead of /var/lib/cni.
fn bridge_conflist(version: &str, name: &str, data_dir: &Path) -> String {
    json!({
        "cniVersion": version,
        "name": name,
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir,
                "ranges": [[{"subnet": SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]
    })
    .to_string()
}

fn reference_driver() -> Driver {
    Driver::new(PluginDir::reference().expect("reference plugins"))
}

fn host_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    ns.set_loopback_up().unwrap();
    ns
}

fn first_ip(result: &Value) -> Ipv4Net {
    result["ips"][0]["address"]
        .as_str()
        .expect("result has ips[0].address")
        .parse()
        .expect("IPv4 CIDR")
}

fn ping(from: &Netns, to: impl ToString) -> std::process::Output {
    from.exec(&["ping", "-c", "1", "-W", "5", &to.to_string()])
}

fn assert_pings(from: &Netns, to: impl ToString) -> String {
    let to = to.to_string();
    let out = ping(from, &to);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} cannot ping {to}:\n{stdout}{}",
        from.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Files host-local names after the IPs it handed out.
fn reserved_ips(data_dir: &Path, network: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(network)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<IpAddr>().is_ok())
        .collect()
}

fn pod_gets_an_ip(version: &str) {
    let data = tempfile::tempdir().unwrap();
    let conf = bridge_conflist(version, "bednet", data.path());
    let driver = reference_driver();
    let host = host_ns("host");
    let pod = Netns::new("pod").unwrap();

    let result = driver
        .add(&conf, &host, &pod, "eth0", "ctr-a", None)
        .unwrap();

    assert_eq!(result["cniVersion"], version, "{result:#}");
    let ip = first_ip(&result);
    assert!(
        SUBNET.parse::<Ipv4Net>().unwrap().contains(&ip.addr()),
        "{ip} not in {SUBNET}"
    );
    assert_eq!(result["ips"][0]["gateway"], GATEWAY);
    if version.starts_with("0.") {
        assert_eq!(
            result["ips"][0]["version"], "4",
            "pre-1.0 results carry ips[].version"
        );
    }
    assert_eq!(pod.addresses_of("eth0").unwrap(), vec![ip.to_string()]);
    let default = pod
        .routes()
        .unwrap()
        .into_iter()
        .find(|r| r["dst"] == "default")
        .expect("default route in pod");
    assert_eq!(default["gateway"], GATEWAY);
    assert!(host
        .addresses_of("cni0")
        .unwrap()
        .contains(&format!("{GATEWAY}/24")));
    assert_eq!(
        reserved_ips(data.path(), "bednet"),
        vec![ip.addr().to_string()]
    );

    driver
        .del(&conf, &host, &pod, "eth0", "ctr-a", None)
        .unwrap();
}

#[test]
fn reference_bridge_gives_pod_an_ip_v0_3_1() {
    pod_gets_an_ip("0.3.1");
}

#[test]
fn reference_bridge_gives_pod_an_ip_v1_0_0() {
    pod_gets_an_ip("1.0.0");
}

#[test]
fn check_follows_libcni_version_rules() {
    let data = tempfile::tempdir().unwrap();
    let driver = reference_driver();
    let host = host_ns("host");
    let pod = Netns::new("pod").unwrap();

    let new = bridge_conflist("1.0.0", "chknew", data.path());
    driver
        .add(&new, &host, &pod, "eth0", "ctr-new", None)
        .unwrap();
    driver
        .check(&new, &host, &pod, "eth0", "ctr-new", None)
        .unwrap();
    // CHECK must notice the pod's interface going missing.
    pod.exec_ok(&["ip", "link", "del", "eth0"]).unwrap();
    let broken = driver
        .check(&new, &host, &pod, "eth0", "ctr-new", None)
        .unwrap_err();
    assert!(
        broken.code.is_some(),
        "a plugin's CHECK error carries a code: {broken:?}"
    );
    driver
        .del(&new, &host, &pod, "eth0", "ctr-new", None)
        .unwrap();

    let old = bridge_conflist("0.3.1", "chkold", data.path());
    let pod2 = Netns::new("pod").unwrap();
    driver
        .add(&old, &host, &pod2, "eth0", "ctr-old", None)
        .unwrap();
    let refused = driver
        .check(&old, &host, &pod2, "eth0", "ctr-old", None)
        .unwrap_err();
    assert_eq!(refused.code, None, "libcni refuses by itself: {refused:?}");
    assert!(
        refused.msg.contains("does not support the CHECK command"),
        "{refused:?}"
    );
    driver
        .del(&old, &host, &pod2, "eth0", "ctr-old", None)
        .unwrap();
}

#[test]
fn plugin_and_libcni_error_codes_reach_the_test() {
    let data = tempfile::tempdir().unwrap();
    let conf = bridge_conflist("1.0.0", "errnet", data.path());
    let driver = reference_driver();
    let host = host_ns("host");
    let pod = Netns::new("pod").unwrap();

    let bad_id = driver
        .add(&conf, &host, &pod, "eth0", "bad id", None)
        .unwrap_err();
    assert_eq!(bad_id.code, Some(4), "{bad_id:?}");
    assert_eq!(bad_id.msg, "invalid characters in containerID");
    assert_eq!(bad_id.details.as_deref(), Some("bad id"));

    driver
        .add(&conf, &host, &pod, "eth0", "ctr-a", None)
        .unwrap();
    let twice = driver
        .add(&conf, &host, &pod, "eth0", "ctr-a", None)
        .unwrap_err();
    assert_eq!(twice.code, Some(999), "{twice:?}");
    assert!(twice.msg.contains("already exists"), "{twice:?}");
    assert!(
        twice
            .error
            .starts_with("plugin type=\"bridge\" failed (add): "),
        "{twice:?}"
    );

    let mut att = Attachment::new(&host, &pod, "eth0", "ctr-a");
    att.cni_args = vec![("NoSuchArg".into(), "1".into())];
    let unknown_arg = driver.run(Verb::Del, &conf, &att).unwrap_err();
    assert!(
        unknown_arg.msg.contains("ARGS: unknown args"),
        "CNI_ARGS reach the plugin: {unknown_arg:?}"
    );

    driver
        .del(&conf, &host, &pod, "eth0", "ctr-a", None)
        .unwrap();
}

#[test]
fn version_reports_the_plugins_supported_versions() {
    let driver = reference_driver();
    let host = host_ns("host");
    let info = driver.version(&host, "bridge").unwrap();
    let versions: Vec<&str> = info["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        versions.contains(&"0.3.1") && versions.contains(&"1.0.0"),
        "{info}"
    );
    let missing = driver.version(&host, "no-such-plugin").unwrap_err();
    assert!(missing.msg.contains("failed to find plugin"), "{missing:?}");
}

#[test]
fn two_pods_on_one_host_ping_each_other() {
    let data = tempfile::tempdir().unwrap();
    let conf = bridge_conflist("1.0.0", "pingnet", data.path());
    let driver = reference_driver();
    let host = host_ns("host");
    let pods = [Netns::new("pod").unwrap(), Netns::new("pod").unwrap()];

    let ips: Vec<Ipv4Net> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            first_ip(
                &driver
                    .add(&conf, &host, pod, "eth0", &format!("ctr-{i}"), None)
                    .unwrap(),
            )
        })
        .collect();

    assert_ne!(ips[0], ips[1]);
    assert_pings(&pods[0], ips[1].addr());
    assert_pings(&pods[1], ips[0].addr());
    assert_pings(&pods[0], GATEWAY);

    for (i, pod) in pods.iter().enumerate() {
        driver
            .del(&conf, &host, pod, "eth0", &format!("ctr-{i}"), None)
            .unwrap();
    }
    assert!(
        !ping(&pods[0], ips[1].addr()).status.success(),
        "pods still connected after DEL"
    );
}

#[test]
fn underlay_hosts_ping_within_and_across_segments() {
    let underlay = Underlay::new().unwrap();
    let a1 = underlay.add_host(Segment::A, "a").unwrap();
    let a2 = underlay.add_host(Segment::A, "a").unwrap();
    let b1 = underlay.add_host(Segment::B, "b").unwrap();

    assert_eq!(a1.ip(), Ipv4Addr::new(192, 168, 1, 1));
    assert_eq!(b1.cidr().to_string(), "192.168.2.1/24");
    assert_eq!(
        underlay.router().sysctl("net.ipv4.ip_forward").unwrap(),
        "1"
    );

    // TTL tells the paths apart: 64 from an L2 neighbour, 63 through the router.
    let same = assert_pings(a1.netns(), a2.ip());
    assert!(same.contains("ttl=64"), "{same}");
    let across = assert_pings(a1.netns(), b1.ip());
    assert!(across.contains("ttl=63"), "{across}");
    let back = assert_pings(b1.netns(), a2.ip());
    assert!(back.contains("ttl=63"), "{back}");

    let route = a1
        .netns()
        .exec_ok(&["ip", "route", "get", &b1.ip().to_string()])
        .unwrap();
    assert!(route.contains("via 192.168.1.254"), "{route}");
    let direct = a1
        .netns()
        .exec_ok(&["ip", "route", "get", &a2.ip().to_string()])
        .unwrap();
    assert!(!direct.contains("via"), "{direct}");
}

/// The overlay benchmark builds each round's hosts with the previous round's addresses. A
/// host on the far segment that never speaks first (wireguard-go before any handshake) must
/// still be reached through the router at once, not after the router's neighbour entry for
/// the removed host's MAC ages out.
#[test]
fn a_host_reusing_a_removed_hosts_address_is_reached_through_the_router() {
    let underlay = Underlay::new().unwrap();
    let a = underlay.add_host(Segment::A, "a").unwrap();
    let ip = Ipv4Addr::new(192, 168, 2, 7);
    let mac = |h: &conformance::Host| {
        h.netns()
            .exec_ok(&["cat", "/sys/class/net/eth0/address"])
            .unwrap()
            .trim()
            .to_owned()
    };
    let old = underlay.add_host_with_ip(Segment::B, "b", ip).unwrap();
    assert_pings(a.netns(), ip);
    let old_mac = mac(&old);
    let learned = underlay
        .router()
        .exec_ok(&["ip", "neigh", "show", "to", &ip.to_string()])
        .unwrap();
    assert!(
        learned.contains(&old_mac),
        "router never learned {old_mac}: {learned}"
    );
    drop(old);

    let new = underlay.add_host_with_ip(Segment::B, "b", ip).unwrap();
    assert_ne!(mac(&new), old_mac);
    let now = underlay
        .router()
        .exec_ok(&["ip", "neigh", "show", "to", &ip.to_string()])
        .unwrap();
    assert!(
        !now.contains(&old_mac),
        "router still sends {ip} to the removed host: {now}"
    );
    // The new host has sent nothing yet; the first packet towards it gets through.
    assert_pings(a.netns(), ip);
}

#[test]
fn del_leaves_no_veth_and_no_ip_file() {
    let data = tempfile::tempdir().unwrap();
    let conf = bridge_conflist("1.0.0", "delnet", data.path());
    let driver = reference_driver();
    let host = host_ns("host");
    let pod = Netns::new("pod").unwrap();

    driver
        .add(&conf, &host, &pod, "eth0", "ctr-d", None)
        .unwrap();
    assert_eq!(host.links_of_kind("veth").unwrap().len(), 1);
    assert_eq!(reserved_ips(data.path(), "delnet").len(), 1);
    let cached = driver.cache_dir().join("results/delnet-ctr-d-eth0");
    assert!(
        cached.exists(),
        "libcni caches the ADD result in the test's cache dir"
    );

    driver
        .del(&conf, &host, &pod, "eth0", "ctr-d", None)
        .unwrap();

    assert_eq!(host.links_of_kind("veth").unwrap(), Vec::<String>::new());
    assert_eq!(pod.link("eth0").unwrap(), None);
    assert_eq!(reserved_ips(data.path(), "delnet"), Vec::<String>::new());
    assert!(!cached.exists());
    // DEL is idempotent, also once the namespace is gone.
    driver
        .del(&conf, &host, &pod, "eth0", "ctr-d", None)
        .unwrap();
    let mut gone = Attachment::new(&host, &pod, "eth0", "ctr-d");
    gone.netns = "/run/netns/fr-does-not-exist".into();
    driver.run(Verb::Del, &conf, &gone).unwrap();
}

#[test]
fn etcd_in_a_namespace_answers_put_get() {
    let underlay = Underlay::new().unwrap();
    let server = underlay.add_host(Segment::A, "etcd").unwrap();
    let client = underlay.add_host(Segment::B, "cli").unwrap();
    let etcd = Etcd::start(EtcdOptions::in_netns(server.netns(), server.ip().into())).unwrap();

    assert_eq!(etcd.endpoint(), format!("http://{}:2379", server.ip()));
    etcd.put(
        "/coreos.com/network/config",
        r#"{"Network":"10.244.0.0/16"}"#,
    )
    .unwrap();
    assert_eq!(
        etcd.get("/coreos.com/network/config").unwrap().as_deref(),
        Some(r#"{"Network":"10.244.0.0/16"}"#)
    );
    assert_eq!(etcd.get("/missing").unwrap(), None);

    // Reachable from another host across the router, as flanneld will use it.
    let remote = client
        .netns()
        .command("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint(),
            "get",
            "--print-value-only",
            "/coreos.com/network/config",
        ])
        .output()
        .unwrap();
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&remote.stdout).trim(),
        r#"{"Network":"10.244.0.0/16"}"#
    );
}

/// Status line of a plain HTTP GET against a loopback etcd.
fn http_get_status(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = endpoint
        .strip_prefix("http://")
        .expect("plain HTTP endpoint");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    reply.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn etcd_v2_api_is_served_only_when_enabled() {
    let v3_only = Etcd::start(EtcdOptions::loopback()).unwrap();
    let with_v2 = Etcd::start(EtcdOptions::loopback().enable_v2(true)).unwrap();
    assert_ne!(v3_only.endpoint(), with_v2.endpoint());
    assert!(http_get_status(&v3_only.endpoint(), "/v2/keys/").contains(" 404 "));
    assert!(http_get_status(&with_v2.endpoint(), "/v2/keys/").contains(" 200 "));
}

#[test]
fn etcd_on_loopback_survives_restart_and_dies_on_kill() {
    let mut etcd = Etcd::start(EtcdOptions::loopback()).unwrap();
    assert!(
        etcd.endpoint().starts_with("http://127.0.0.1:"),
        "{}",
        etcd.endpoint()
    );
    assert_ne!(
        etcd.endpoint(),
        "http://127.0.0.1:2379",
        "never the default port a system etcd would use"
    );

    etcd.put("/k", "-starts-with-dash\nand spans lines")
        .unwrap();
    etcd.restart().unwrap();
    assert_eq!(
        etcd.get("/k").unwrap().as_deref(),
        Some("-starts-with-dash\nand spans lines")
    );
    etcd.delete("/k").unwrap();
    assert_eq!(etcd.get("/k").unwrap(), None);

    etcd.kill().unwrap();
    assert!(!etcd.is_running());
    let down = etcd.put("/k", "v");
    assert!(down.is_err(), "a killed etcd must not answer");
}

#[test]
fn dropping_a_netns_kills_its_processes_and_deletes_it_even_on_panic() {
    let leaked = std::panic::catch_unwind(|| {
        let ns = Netns::new("drop").unwrap();
        let child = ns.command("sleep").arg("600").spawn().unwrap();
        let info = (ns.path().to_owned(), child.id());
        std::mem::forget(child);
        // `ip netns exec` enters the namespace just after it starts: wait for the sleeper to
        // show up there rather than racing it.
        let seen = Instant::now() + Duration::from_secs(5);
        while Netns::pids(&ns) != vec![info.1 as i32] && Instant::now() < seen {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(Netns::pids(&ns), vec![info.1 as i32]);
        std::panic::panic_any(info);
    })
    .unwrap_err();
    let (path, pid) = *leaked.downcast::<(std::path::PathBuf, u32)>().unwrap();

    assert!(!path.exists(), "{} survived the panic", path.display());
    let deadline = Instant::now() + Duration::from_secs(5);
    // The sleeper is our (unreaped) child: once killed it is a zombie, so
    // look at its state rather than its existence.
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie_or_gone = state.is_empty() || state.split_whitespace().nth(2) == Some("Z");
        if zombie_or_gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} still running: {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Our flanneld with `"EnableNFTables": true` on the three-host underlay: pods reach each
//! other, pod traffic leaving the flannel network is masqueraded to the node, host traffic to
//! other nodes' pods is masqueraded too (upstream's nftables rule 4 skips it), nft lists
//! upstream's table shape, `nft flush ruleset` is repaired by the periodic check, a node
//! switches iptables → nftables → iptables leaving nothing of the other mode, and a node
//! without nft or nf_tables says what is missing.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use conformance::flanneld::flanneld_bin;
use conformance::support::flanneld::*;
use conformance::{Netns, Segment};
use serde_json::{json, Value};

const NETWORK: &str = "10.244.0.0/16";
const ECHO_PORT: &str = "7777";

fn config(nftables: bool) -> Value {
    json!({"Network": NETWORK, "EnableNFTables": nftables, "Backend": {"Type": "vxlan"}})
}

/// nft's listing of our IPv4 table for a node holding `subnet`: upstream's shape, with the
/// masked mark test and rule 4 as in iptables mode.
fn golden_v4(subnet: &str) -> String {
    format!(
        "table ip flannel-ipv4 {{
\tcomment \"rules for flannel-ipv4\"
\tchain forward {{
\t\tcomment \"chain to accept flannel traffic\"
\t\ttype filter hook forward priority filter; policy accept;
\t\tip saddr {NETWORK} accept
\t\tip daddr {NETWORK} accept
\t}}

\tchain postrtg {{
\t\tcomment \"chain to manage traffic masquerading by flannel\"
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x00004000 == 0x00004000 return
\t\tip saddr {subnet} ip daddr {NETWORK} return
\t\tip saddr {NETWORK} ip daddr {subnet} return
\t\tip saddr != {NETWORK} ip daddr {subnet} return
\t\tip saddr {NETWORK} ip daddr != 224.0.0.0/4 masquerade fully-random
\t\tip saddr != {NETWORK} ip daddr {NETWORK} masquerade fully-random
\t}}
}}
"
    )
}

/// Upstream always creates the IPv6 table; without an IPv6 network it stays empty.
const GOLDEN_V6_EMPTY: &str = "table ip6 flannel-ipv6 {\n\tcomment \"rules for flannel-ipv6\"\n}\n";

fn nft_table(ns: &Netns, family: &str, name: &str) -> Option<String> {
    let out = ns.exec(&["nft", "list", "table", family, name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every iptables line (v4 and v6, nat and filter) that mentions a FLANNEL chain.
fn flannel_iptables(ns: &Netns) -> Vec<String> {
    let mut lines = Vec::new();
    for save in ["iptables-save", "ip6tables-save"] {
        for table in ["nat", "filter"] {
            let text = ns.exec_ok(&[save, "-t", table]).unwrap();
            lines.extend(
                text.lines()
                    .filter(|l| l.contains("FLANNEL"))
                    .map(|l| format!("{save} {table}: {l}")),
            );
        }
    }
    lines
}

/// A TCP server that answers each connection with the peer address it saw, and goes away
/// with the test.
struct PeerEcho(Child);

impl PeerEcho {
    fn start(ns: &Netns) -> PeerEcho {
        let child = ns
            .command("socat")
            .args([
                &format!("TCP-LISTEN:{ECHO_PORT},reuseaddr,fork"),
                "SYSTEM:echo $SOCAT_PEERADDR",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        PeerEcho(child)
    }
}

impl Drop for PeerEcho {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The source address `server` saw for a connection from `client` (bound to `source`, if
/// given), retried while the server starts and routes settle.
fn seen_by(client: &Netns, server: &str, source: Option<Ipv4Addr>) -> String {
    let mut target = format!("TCP:{server}:{ECHO_PORT},connect-timeout=2");
    if let Some(src) = source {
        target.push_str(&format!(",bind={src}"));
    }
    let mut last = String::new();
    let found = eventually(Duration::from_secs(20), || {
        let out = client.exec(&["socat", "-u", &target, "STDOUT"]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success() && !out.stdout.is_empty()
    });
    assert!(found, "no answer from {server}: {last}");
    last.trim().to_owned()
}

fn start_nodes(cluster: &Cluster, args: &[&str]) -> Vec<Flanneld> {
    cluster.start_nodes(
        &[(Segment::A, "h1"), (Segment::A, "h2"), (Segment::B, "h3")],
        args,
        None,
    )
}

#[test]
fn nftables_overlay_masquerades_and_repairs_a_flushed_ruleset() {
    let cluster = Cluster::new(&config(true));
    let nodes = start_nodes(&cluster, &["--ip-masq", "--iptables-resync=1"]);
    let driver = our_driver();
    let pods = pods_in_full_mesh(&driver, &nodes, "ctr");

    let (h1, h3) = (&nodes[0], &nodes[2]);
    let h1_ns = h1.host.netns();
    let golden = golden_v4(&h1.subnet().unwrap().to_string());
    assert_eq!(nft_table(h1_ns, "ip", "flannel-ipv4").unwrap(), golden);
    assert_eq!(
        nft_table(h1_ns, "ip6", "flannel-ipv6").unwrap(),
        GOLDEN_V6_EMPTY
    );
    assert_eq!(flannel_iptables(h1_ns), Vec::<String>::new());

    // A pod talking to a host outside the flannel network appears as its node.
    let _h3_echo = PeerEcho::start(h3.host.netns());
    assert_eq!(
        seen_by(&pods[0].netns, &h3.host.ip().to_string(), None),
        h1.host.ip().to_string()
    );
    // Pod to pod keeps the pod's address.
    let _pod2_echo = PeerEcho::start(&pods[2].netns);
    assert_eq!(seen_by(&pods[0].netns, &pods[2].ip, None), pods[0].ip);
    // The node's own address towards another node's pod is masqueraded (to flannel.1's
    // address, inside the network), so the reply comes back through the overlay. Upstream's
    // nftables rule 4 lets it out unchanged.
    let h1_vtep = h1.subnet().unwrap().network().to_string();
    assert_eq!(seen_by(h1_ns, &pods[2].ip, Some(h1.host.ip())), h1_vtep);
    // Into this node's own pods the client address is kept (rule 4).
    let _pod0_echo = PeerEcho::start(&pods[0].netns);
    assert_eq!(
        seen_by(h1_ns, &pods[0].ip, Some(h1.host.ip())),
        h1.host.ip().to_string()
    );

    // A firewalld reload: everything gone, and back within a few resync periods.
    h1_ns.exec_ok(&["nft", "flush", "ruleset"]).unwrap();
    assert!(nft_table(h1_ns, "ip", "flannel-ipv4").is_none());
    let restored = eventually(Duration::from_secs(10), || {
        nft_table(h1_ns, "ip", "flannel-ipv4").as_deref() == Some(golden.as_str())
    });
    assert!(restored, "tables not restored:\n{}", h1.log());
    // The line is written just after the transaction that put the tables back.
    assert!(
        eventually(Duration::from_secs(5), || h1.log().contains(
            "nftables rule set(s) were missing or altered and have been restored"
        )),
        "{}",
        h1.log()
    );
    assert_eq!(
        seen_by(&pods[0].netns, &h3.host.ip().to_string(), None),
        h1.host.ip().to_string()
    );
}

#[test]
fn a_node_switches_iptables_nftables_iptables_leaving_nothing_of_the_other() {
    let cluster = Cluster::new(&config(false));
    let mut node = start_flanneld(
        cluster.host(Segment::A, "h1"),
        &cluster.etcd,
        &["--ip-masq"],
        None,
    );
    node.wait_ready(START).unwrap();
    let subnet = node.subnet().unwrap();
    let before = flannel_iptables(node.host.netns());
    // nat: chain, jump, six rules; filter: chain, jump, two rules.
    assert_eq!(before.len(), 12, "{before:?}");
    assert!(nft_table(node.host.netns(), "ip", "flannel-ipv4").is_none());

    let config_key = format!("{PREFIX}/config");
    for (nftables, round) in [(true, "to nftables"), (false, "back to iptables")] {
        node.stop().unwrap();
        cluster
            .etcd
            .put(&config_key, &config(nftables).to_string())
            .unwrap();
        node.restart().unwrap();
        node.wait_ready(START).unwrap();
        assert_eq!(node.subnet().unwrap(), subnet, "{round}: same lease");
        let ns = node.host.netns();
        let v4 = nft_table(ns, "ip", "flannel-ipv4");
        let v6 = nft_table(ns, "ip6", "flannel-ipv6");
        let iptables = flannel_iptables(ns);
        if nftables {
            assert_eq!(iptables, Vec::<String>::new(), "{round}");
            assert_eq!(v4.as_deref(), Some(golden_v4(&subnet.to_string()).as_str()));
            assert_eq!(v6.as_deref(), Some(GOLDEN_V6_EMPTY));
        } else {
            assert_eq!(iptables.len(), 12, "{round}: {iptables:?}");
            assert_eq!((v4, v6), (None, None), "{round}");
        }
    }
}

/// Runs flanneld in nftables mode with only `path_dir` on PATH; returns its exit status and
/// output once it exits (it must, promptly).
fn run_with_path(cluster: &Cluster, ns: &Netns, path_dir: &std::path::Path) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child: Child = ns
        .command("env")
        .arg(format!("PATH={}", path_dir.display()))
        .arg(flanneld_bin())
        .args([
            format!("--etcd-endpoints={}", cluster.etcd.endpoint()),
            "--iface=eth0".to_owned(),
            format!("--subnet-file={}", dir.path().join("subnet.env").display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("flanneld kept running without a usable nft");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn missing_nft_or_kernel_support_is_explained() {
    let cluster = Cluster::new(&config(true));
    let host = cluster.host(Segment::A, "h1");
    let bin = tempfile::tempdir().unwrap();

    let (code, out) = run_with_path(&cluster, host.netns(), bin.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "EnableNFTables is set in net-conf.json, but the nft command is not installed"
        ) && out.contains("install the nftables package"),
        "{out}"
    );

    // An nft that cannot talk to nf_tables, as on a kernel built without it.
    let fake = bin.path().join("nft");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'Error: Could not process rule: Operation not supported' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out) = run_with_path(&cluster, host.netns(), bin.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("this kernel's nf_tables cannot be used (Error: Could not process rule: Operation not supported)")
            && out.contains("modprobe nf_tables"),
        "{out}"
    );
    assert!(
        cluster.lease_keys().is_empty(),
        "no lease is taken before the check"
    );
}

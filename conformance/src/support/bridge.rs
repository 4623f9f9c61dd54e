//! Shared helpers of the `bridge_*` conformance tests: conflists, plugin sets, running one
//! scenario side by side with the reference plugins, and kernel-state snapshots normalised
//! for what legitimately differs between two runs (random MACs and veth names, namespace
//! paths).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::{CniFailure, Driver, Impl, Netns, PluginDir};
use serde_json::{json, Map, Value};
use tempfile::TempDir;

pub const SUBNET: &str = "10.88.0.0/24";
pub const SUBNET6: &str = "fd00:88::/64";

/// Which bridge + host-local pair a side runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pair {
    Reference,
    Ours,
    /// Our bridge delegating to the reference host-local.
    OurBridge,
    /// The reference bridge delegating to our host-local.
    OurIpam,
}

impl Pair {
    pub fn plugins(self) -> PluginDir {
        let (bridge, ipam) = match self {
            Pair::Reference => (Impl::Reference, Impl::Reference),
            Pair::Ours => (Impl::Ours, Impl::Ours),
            Pair::OurBridge => (Impl::Ours, Impl::Reference),
            Pair::OurIpam => (Impl::Reference, Impl::Ours),
        };
        PluginDir::mixed(&[("bridge", bridge), ("host-local", ipam)])
            .expect("plugins built (cargo build --release -p bridge -p host-local)")
    }
}

/// One runtime: a host namespace, a libcni driver and a private IPAM store.
pub struct Side {
    pub pair: Pair,
    pub host: Netns,
    pub driver: Driver,
    pub data: TempDir,
}

impl Side {
    pub fn new(pair: Pair) -> Side {
        let host = Netns::new("brhost").expect("host netns");
        host.set_loopback_up().expect("lo up");
        Side {
            pair,
            host,
            driver: Driver::new(pair.plugins()),
            data: tempfile::tempdir().expect("ipam dir"),
        }
    }

    /// `plugin` (a bridge plugin object) in a one-plugin conflist; a host-local `ipam`
    /// gets this side's private `dataDir`.
    pub fn conflist(&self, version: &str, name: &str, plugin: &Value) -> String {
        conflist(version, name, plugin, self.data.path())
    }

    pub fn pod(&self) -> Netns {
        Netns::new("brpod").expect("pod netns")
    }

    pub fn add(&self, conf: &str, pod: &Netns, cid: &str) -> Result<Value, CniFailure> {
        self.driver.add(conf, &self.host, pod, "eth0", cid, None)
    }

    pub fn del(&self, conf: &str, pod: &Netns, cid: &str) -> Result<(), CniFailure> {
        self.driver.del(conf, &self.host, pod, "eth0", cid, None)
    }

    pub fn check(&self, conf: &str, pod: &Netns, cid: &str) -> Result<(), CniFailure> {
        self.driver.check(conf, &self.host, pod, "eth0", cid, None)
    }

    /// IP files host-local keeps for `network`.
    pub fn reserved(&self, network: &str) -> Vec<String> {
        reserved_ips(self.data.path(), network)
    }
}

pub fn conflist(version: &str, name: &str, plugin: &Value, data_dir: &Path) -> String {
    let mut plugin = plugin.clone();
    if let Some(ipam) = plugin.get_mut("ipam").and_then(Value::as_object_mut) {
        if ipam.get("type") == Some(&json!("host-local")) {
            ipam.insert("dataDir".into(), json!(data_dir));
        }
    }
    json!({"cniVersion": version, "name": name, "plugins": [plugin]}).to_string()
}

/// host-local over [`SUBNET`] with a default route without gateway (the flannel shape).
pub fn ipam_v4() -> Value {
    json!({"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "10.77.0.0/16"}]})
}

pub fn reserved_ips(data_dir: &Path, network: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(network)) else {
        return Vec::new();
    };
    let mut ips: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    ips.sort();
    ips
}

fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':')
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_host_veth(s: &str) -> bool {
    s.len() == 12 && s.starts_with("veth") && s[4..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Replaces what differs between two correct runs: MACs, random veth names, sandbox paths.
pub fn normalise(v: &Value) -> Value {
    match v {
        Value::String(s) if is_mac(s) => json!("<mac>"),
        Value::String(s) if is_host_veth(s) => json!("<veth>"),
        Value::String(s) if s.starts_with("/run/netns/") || s.starts_with("/var/run/netns/") => {
            json!("<netns>")
        }
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        other => other.clone(),
    }
}

fn name_of(v: &Value) -> String {
    normalise(&v["ifname"])
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn flag(link: &Value, f: &str) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|fl| fl.iter().any(|x| x == f))
}

/// What matters about the links of a namespace, keyed by normalised name.
pub fn links(ns: &Netns) -> Value {
    let links = ns.links().expect("ip link");
    let mut out = Map::new();
    for l in &links {
        let slave = &l["linkinfo"]["info_slave_data"];
        let mut entry = json!({
            "kind": l["linkinfo"]["info_kind"],
            "mtu": l["mtu"],
            "txqlen": l["txqlen"],
            "up": flag(l, "UP"),
            "promisc": flag(l, "PROMISC"),
            "operstate": l["operstate"],
            "master": l["master"].as_str().map(|m| normalise(&json!(m))),
        });
        if !slave.is_null() {
            entry["hairpin"] = slave["hairpin"].clone();
            entry["isolated"] = slave["isolated"].clone();
        }
        if l["linkinfo"]["info_kind"] == "bridge" {
            // A bridge's carrier follows its ports through the kernel's deferred link
            // watch (up to a second late), so its operstate is not a stable observation.
            entry["operstate"] = Value::Null;
            entry["vlan_filtering"] = l["linkinfo"]["info_data"]["vlan_filtering"].clone();
        }
        let mut key = name_of(l);
        // Several host veths normalise to one name; keep them apart by their order.
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = format!("{}#{n}", name_of(l));
        }
        out.insert(key, entry);
    }
    Value::Object(out)
}

/// Addresses per link (kernel link-local IPv6 excluded: it derives from the random MAC).
pub fn addresses(ns: &Netns) -> Value {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in ns.addrs().expect("ip addr") {
        let mut list: Vec<String> = l["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| !(a["family"] == "inet6" && a["scope"] == "link"))
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
            .collect();
        list.sort();
        out.entry(name_of(&l)).or_default().extend(list);
    }
    json!(out)
}

/// Main-table routes of both families, link-local and multicast excluded.
pub fn routes(ns: &Netns) -> Value {
    let mut all = ns.routes().expect("ip route");
    all.extend(ns.routes6().expect("ip -6 route"));
    let mut out: Vec<Value> = all
        .iter()
        .filter(|r| {
            let dst = r["dst"].as_str().unwrap_or("");
            !dst.starts_with("fe80") && !dst.starts_with("ff00") && !dst.starts_with("multicast")
        })
        .map(|r| {
            normalise(&json!({
                "dst": r["dst"], "gateway": r["gateway"], "dev": r["dev"],
                "scope": r["scope"], "protocol": r["protocol"], "metric": r["metric"],
            }))
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    Value::Array(out)
}

/// The nat table of both families without counters and comment lines.
pub fn nat_rules(ns: &Netns) -> Value {
    let clean = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.find(" [") {
                Some(i) if l.starts_with(':') => l[..i].to_string(),
                _ => l.to_string(),
            })
            .collect()
    };
    json!({
        "v4": clean(ns.iptables_save("nat").expect("iptables-save")),
        "v6": clean(ns.ip6tables_save("nat").expect("ip6tables-save")),
    })
}

pub fn sysctl_or_absent(ns: &Netns, key: &str) -> Value {
    let out = ns.exec(&["sysctl", "-n", key]);
    if out.status.success() {
        json!(String::from_utf8_lossy(&out.stdout).trim())
    } else {
        json!(null)
    }
}

/// Host state that ADD/DEL may touch.
pub fn host_state(host: &Netns) -> Value {
    let mut sysctls = Map::new();
    for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
        sysctls.insert(key.into(), sysctl_or_absent(host, key));
    }
    for l in host.links().expect("ip link") {
        let name = l["ifname"].as_str().unwrap_or_default().to_string();
        if name != "lo" {
            let value = sysctl_or_absent(host, &format!("net.ipv6.conf.{name}.accept_ra"));
            sysctls.insert(format!("net.ipv6.conf.{}.accept_ra", name_of(&l)), value);
        }
    }
    json!({
        "links": links(host), "addresses": addresses(host), "routes": routes(host),
        "nat": nat_rules(host), "sysctls": sysctls,
    })
}

/// Pod state that ADD may touch.
pub fn pod_state(pod: &Netns) -> Value {
    let mut sysctls = Map::new();
    for key in [
        "net.ipv4.conf.eth0.arp_notify",
        "net.ipv6.conf.eth0.accept_dad",
        "net.ipv6.conf.eth0.enhanced_dad",
        "net.ipv6.conf.eth0.disable_ipv6",
        "net.ipv6.conf.lo.disable_ipv6",
    ] {
        sysctls.insert(key.into(), sysctl_or_absent(pod, key));
    }
    json!({
        "links": links(pod), "addresses": addresses(pod), "routes": routes(pod), "sysctls": sysctls,
    })
}

/// Asserts two values are equal, printing both in full on failure.
#[track_caller]
pub fn assert_same(what: &str, reference: &Value, ours: &Value) {
    assert!(
        reference == ours,
        "{what} differs\nreference: {reference:#}\nours:      {ours:#}"
    );
}

/// Runs one plugin binary directly (no libcni), in `host`, for environment-level cases
/// libcni would refuse to produce. Returns (exit code, stdout).
pub fn exec_plugin(
    host: &Netns,
    plugins: &PluginDir,
    env: &[(&str, &str)],
    stdin: &str,
) -> (i32, String) {
    let mut cmd: Command = host.command(plugins.path().join("bridge"));
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied());
    let out = crate::cmd::output_with_stdin(&mut cmd, stdin.as_bytes()).expect("plugin output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Nothing of an attachment is left on `host`: no veth, no masquerade chain or jump.
#[track_caller]
pub fn assert_no_leftovers(side: &Side, network: &str) {
    let veths = side.host.links_of_kind("veth").expect("links");
    assert!(veths.is_empty(), "{:?}: veths left: {veths:?}", side.pair);
    let nat = side.host.iptables_save("nat").expect("nat");
    assert!(
        !nat.contains("CNI-"),
        "{:?}: nat rules left:\n{nat}",
        side.pair
    );
    let nat6 = side.host.ip6tables_save("nat").expect("nat6");
    assert!(
        !nat6.contains("CNI-"),
        "{:?}: ip6 nat rules left:\n{nat6}",
        side.pair
    );
    let ips = side.reserved(network);
    assert!(
        ips.is_empty(),
        "{:?}: IPs still reserved: {ips:?}",
        side.pair
    );
}

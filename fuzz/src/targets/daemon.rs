//! flanneld: command line + `FLANNELD_*` env, lease attributes (etcd values), subnet keys,
//! kube node annotations and the udp backend's packet handling.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use flanneld::backend::datapath::packet;
use flanneld::subnet::kube::Annotations;
use flanneld::subnet::{parse_subnet_key, subnet_key, LeaseAttrs};

use super::{label, nested, Target};

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "flanneld_options",
            seeds: options_seeds,
            dict: OPTIONS_DICT,
            exec: options,
        },
        Target {
            name: "flanneld_lease",
            seeds: lease_seeds,
            dict: LEASE_DICT,
            exec: lease,
        },
        Target {
            name: "flanneld_kube_annotations",
            seeds: annotation_seeds,
            dict: ANNOTATION_DICT,
            exec: annotations,
        },
        Target {
            name: "flanneld_udp_packet",
            seeds: packet_seeds,
            dict: &[b"\x45\x00", b"\x40\x00", b"\x0a\xf4"],
            exec: udp_packet,
        },
    ]
}

const OPTIONS_DICT: &[&[u8]] = &[
    b"--etcd-endpoints=",
    b"-etcd-prefix",
    b"--iface=",
    b"--iface-regex=",
    b"--subnet-file=",
    b"--subnet-lease-renew-margin=",
    b"--public-ip=",
    b"--ip-masq",
    b"--ip-masq=false",
    b"--kube-subnet-mgr",
    b"--etcd-username=",
    b"--etcd-password=",
    b"--healthz-port=",
    b"--v=",
    b"-h",
    b"--",
    b"FLANNELD_IFACE=",
    b"FLANNELD_IP_MASQ=",
    b"FLANNELD_SUBNET_LEASE_RENEW_MARGIN=",
    b"\n",
    b"=",
];

fn options_seeds() -> Vec<Vec<u8>> {
    [
        "--etcd-endpoints=http://127.0.0.1:2379\n--etcd-prefix=/coreos.com/network\n--iface=eth0\n--ip-masq\n--subnet-file=/run/flannel/subnet.env\n--subnet-lease-renew-margin=60",
        "-iface\neth0\n-iface\neth1\n--public-ip\n10.0.0.1\nFLANNELD_IP_MASQ=true\nFLANNELD_IFACE_REGEX=^e",
        "--kube-subnet-mgr\n--kube-annotation-prefix=example.com/x-\n--healthz-port=0\n--v=10",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// Lines are arguments, except `FLANNELD_*=…` lines, which form the environment.
fn options(b: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(b);
    let mut args = Vec::new();
    let mut env = Vec::new();
    for line in text.split('\n') {
        match line.split_once('=') {
            Some((k, v)) if k.starts_with("FLANNELD_") => env.push((k.to_string(), v.to_string())),
            _ => args.push(line.to_string()),
        }
    }
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let parsed = flanneld::options::parse("flanneld", &args, get);
    Ok(label("ok", &parsed))
}

const LEASE_DICT: &[&[u8]] = &[
    b"\"PublicIP\":",
    b"\"PublicIPv6\":",
    b"\"BackendType\":",
    b"\"BackendData\":",
    b"\"BackendV6Data\":",
    b"\"VNI\":",
    b"\"VtepMAC\":",
    b"\"vxlan\"",
    b"\"host-gw\"",
    b"\"10.0.0.1\"",
    b"\"fd00::1\"",
    b"10.244.1.0-24",
    b"&fd00::-64",
];

fn lease_seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}"#,
        r#"{"publicip":"10.0.0.2","PublicIPv6":"fd00::2","BackendType":"host-gw","BackendV6Data":{"VtepMAC":"aa:bb:cc:dd:ee:fe"}}"#,
        "10.244.1.0-24",
        "10.244.1.0-24&fc00::-64",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.extend(nested(100_000));
    v
}

/// Lease values come from etcd, written by any node: they must decode or be refused, and what
/// this node publishes must decode back to itself. Keys name subnets: a parsed key must
/// print as a key that parses to the same subnets.
fn lease(b: &[u8]) -> Result<String, String> {
    let attrs = LeaseAttrs::from_json(b);
    if let Ok(a) = &attrs {
        let json = a.to_json();
        let again = LeaseAttrs::from_json(json.as_bytes())
            .map_err(|e| format!("published lease attrs do not decode: {e}: {json}"))?;
        if &again != a {
            return Err(format!("lease attrs round trip changed them: {json}"));
        }
    }
    let key = String::from_utf8_lossy(b);
    let parsed_key = parse_subnet_key(&key);
    if let Some((v4, v6)) = parsed_key {
        let printed = subnet_key(v4, v6);
        if parse_subnet_key(&printed) != Some((v4, v6)) {
            return Err(format!(
                "subnet key round trip failed: {key:?} -> {printed:?}"
            ));
        }
    }
    Ok(format!("{}|{}", label("ok", &attrs), parsed_key.is_some()))
}

const ANNOTATION_DICT: &[&[u8]] = &[
    b"flannel.alpha.coreos.com/",
    b"backend-data=",
    b"backend-v6-data=",
    b"backend-type=",
    b"public-ip=",
    b"public-ipv6=",
    b"kube-subnet-manager=true",
    b"node-public-ip=",
    b"node-public-ipv6=",
    b"{\"VNI\":1,\"VtepMAC\":\"aa:bb:cc:dd:ee:ff\"}",
];

fn annotation_seeds() -> Vec<Vec<u8>> {
    [
        "flannel.alpha.coreos.com\nflannel.alpha.coreos.com/backend-data={\"VNI\":1,\"VtepMAC\":\"aa:bb:cc:dd:ee:ff\"}\nflannel.alpha.coreos.com/kube-subnet-manager=true\nflannel.alpha.coreos.com/node-public-ip=10.0.0.9\nflannel.alpha.coreos.com/node-public-ipv6=fd00::9",
        "example.com/x-\nexample.com/x-backend-v6-data={\"VtepMAC\":\"aa:bb:cc:dd:ee:fe\"}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// First line: the annotation prefix; the rest: `key=value` annotations of a Node object
/// (written by anyone with node-patch rights).
fn annotations(b: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(b);
    let mut lines = text.split('\n');
    let prefix = lines.next().unwrap_or_default();
    let map: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let made = Annotations::new(prefix);
    let ann = match &made {
        Ok(a) => a.clone(),
        Err(_) => Annotations::new("flannel.alpha.coreos.com").expect("default prefix is valid"),
    };
    let managed = ann.is_managed(&map);
    let ips = ann.stored_public_ips(&map);
    let macs = ann.stored_macs(&map);
    Ok(format!(
        "{}|{managed}|{}{}|{}{}",
        label("ok", &made),
        ips.0.is_some(),
        ips.1.is_some(),
        macs.v4.is_some(),
        macs.v6.is_some()
    ))
}

fn packet_seeds() -> Vec<Vec<u8>> {
    let mut udp = vec![
        0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 244, 1, 2, 10, 244, 2, 3, 0x9c, 0x40, 0,
        53, 0, 8, 0, 0,
    ];
    let sum = flanneld::backend::datapath::checksum::of(&udp[..20]);
    flanneld::backend::datapath::checksum::store(&mut udp, 10, sum);
    let mut frag = udp.clone();
    frag[6] = 0x20;
    vec![udp, frag, vec![0x46; 24]]
}

/// Wire bytes from any peer (or spoofer) on the flannel UDP port.
fn udp_packet(b: &[u8]) -> Result<String, String> {
    let network = "10.244.0.0/16".parse().expect("fixed network");
    let header = packet::parse(b);
    let mut buf = b.to_vec();
    let inbound = packet::accept_inbound(&mut buf, network);
    if let Ok(n) = inbound {
        if n > b.len() {
            return Err(format!(
                "accepted length {n} beyond the {} bytes read",
                b.len()
            ));
        }
    }
    let mut out = [0u8; packet::ICMP_ERROR_MAX];
    let icmp = packet::net_unreachable(b, Ipv4Addr::new(10, 244, 1, 0), &mut out);
    if let Some(n) = icmp {
        if !packet::header_checksum_ok(&out[..n]) {
            return Err("ICMP error built with a bad header checksum".into());
        }
    }
    Ok(format!(
        "{:?}|{:?}|{}",
        header.map(|h| (h.protocol, h.more_fragments)),
        inbound.map(|_| ()),
        icmp.is_some()
    ))
}

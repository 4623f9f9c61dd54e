//! netconf: network config, conflist, results, `CNI_*` env, `CNI_ARGS`, Go JSON decoding,
//! `subnet.env` and flannel's `net-conf.json`.

use netconf::args::{load_known_args, parse_cni_args};
use netconf::flannel::NetworkConfig;
use netconf::subnet_env::SubnetEnv;
use netconf::{gojson, CniEnv, CniResult, CniVersion, NetConf, NetConfList};
use serde::Deserialize;

use super::{label, nested, Target, JSON_DICT};

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "netconf_conf",
            seeds: conf_seeds,
            dict: JSON_DICT,
            exec: conf,
        },
        Target {
            name: "netconf_conflist",
            seeds: conf_seeds,
            dict: JSON_DICT,
            exec: conflist,
        },
        Target {
            name: "netconf_result",
            seeds: result_seeds,
            dict: JSON_DICT,
            exec: result,
        },
        Target {
            name: "netconf_env",
            seeds: env_seeds,
            dict: ENV_DICT,
            exec: env,
        },
        Target {
            name: "netconf_cni_args",
            seeds: args_seeds,
            dict: ARGS_DICT,
            exec: cni_args,
        },
        Target {
            name: "netconf_gojson",
            seeds: gojson_seeds,
            dict: GOJSON_DICT,
            exec: go_json,
        },
        Target {
            name: "netconf_subnet_env",
            seeds: subnet_env_seeds,
            dict: SUBNET_ENV_DICT,
            exec: subnet_env,
        },
        Target {
            name: "netconf_flannel_config",
            seeds: flannel_config_seeds,
            dict: JSON_DICT,
            exec: flannel_config,
        },
    ]
}

pub fn conf_seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","ipam":{"type":"host-local","subnet":"10.1.0.0/24"}}"#,
        r#"{"cniVersion":"0.3.1","name":"cbr0","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}}"#,
        r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"flannel"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        r#"{"cniVersion":"0.4.0","name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},"prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"version":"4","address":"10.1.0.2/24","interface":0}]}}"#,
        r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","disableCheck":true,"cniVersions":["1.0.0"]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.extend(nested(100_000));
    v
}

fn conf(b: &[u8]) -> Result<String, String> {
    Ok(label("ok", &NetConf::parse(b)))
}

fn conflist(b: &[u8]) -> Result<String, String> {
    let parsed = NetConfList::parse(b);
    if let Ok(list) = &parsed {
        let _ = list.version();
    }
    Ok(label("ok", &parsed))
}

fn result_seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/var/run/netns/x","mtu":1450}],"ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1","interface":1},{"address":"fd00::2/64"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1","mtu":1400,"advmss":1360,"priority":5,"table":100,"scope":0}],"dns":{"nameservers":["8.8.8.8"],"domain":"x","search":["a"],"options":["ndots:5"]}}"#,
        r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.0.2/24","gateway":"10.1.0.1","routes":[{"dst":"0.0.0.0/0"}]},"ip6":{"ip":"fd00::2/64"},"dns":{}}"#,
        r#"{"cniVersion":"0.3.1","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","address":"10.1.0.2/24","interface":0}]}"#,
        r#"{"ips":[{"address":"10.1.0.2/24"}]}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.extend(nested(100_000));
    v
}

/// Whatever a result parses to must print in its own version, and printing must be a
/// projection: what was printed parses and prints back to the same text. (Parse-print is
/// lossy by design for some inputs, as in libcni: an `ip4` section holding an IPv6 address
/// in 0.2.0 is kept as an IP, and printing 0.2.0 takes the first of each family.) Plugins
/// print what they parsed (prevResult pass-through), so a printout that changed on every
/// pass would corrupt chains.
fn result(b: &[u8]) -> Result<String, String> {
    let fallback = CniVersion::ALL[b.len() % CniVersion::ALL.len()];
    let parsed = CniResult::parse(b, fallback);
    if let Ok(r) = &parsed {
        let text = r
            .to_json(r.cni_version)
            .map_err(|e| format!("parsed result does not print in its own version: {e}"))?;
        let again = CniResult::parse(text.as_bytes(), fallback)
            .map_err(|e| format!("printed result does not parse: {e}: {text}"))?;
        let text2 = again
            .to_json(again.cni_version)
            .map_err(|e| format!("reparsed result does not print: {e}: {text}"))?;
        if text2 != text {
            return Err(format!("printing is not stable: {text} then {text2}"));
        }
        for v in CniVersion::ALL {
            let _ = r.to_json(v);
        }
    }
    Ok(label("ok", &parsed))
}

const ENV_DICT: &[&[u8]] = &[
    b"CNI_COMMAND=",
    b"CNI_CONTAINERID=",
    b"CNI_NETNS=",
    b"CNI_IFNAME=",
    b"CNI_ARGS=",
    b"CNI_PATH=",
    b"CNI_NETNS_OVERRIDE=",
    b"ADD",
    b"DEL",
    b"CHECK",
    b"GC",
    b"STATUS",
    b"VERSION",
    b"\n",
    b"=",
    b"0123456789abcdef",
    b"eth0",
];

/// Lines of `KEY=VALUE`; values may hold anything, including NUL.
pub fn env_lookup(b: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(b)
        .split('\n')
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn env_seeds() -> Vec<Vec<u8>> {
    [
        "CNI_COMMAND=ADD\nCNI_CONTAINERID=abc123\nCNI_NETNS=/var/run/netns/x\nCNI_IFNAME=eth0\nCNI_PATH=/opt/cni/bin:/usr/lib/cni\nCNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=p",
        "CNI_COMMAND=DEL\nCNI_CONTAINERID=../../etc\nCNI_IFNAME=eth0\nCNI_PATH=",
        "CNI_COMMAND=GC\nCNI_PATH=/bin\nCNI_NETNS_OVERRIDE=true",
        "CNI_COMMAND=VERSION",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn env(b: &[u8]) -> Result<String, String> {
    let vars = env_lookup(b);
    let get = |k: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let parsed = CniEnv::from_lookup(get);
    if let Ok(e) = &parsed {
        let must_be_valid = matches!(
            e.command,
            netconf::Command::Add | netconf::Command::Del | netconf::Command::Check
        );
        // The container ID and ifname become file names and link names: anything skel lets
        // through for these commands must be safe as one path component.
        if must_be_valid
            && (e.container_id.contains('/')
                || e.container_id.starts_with('.')
                || e.container_id.contains('\0')
                || e.ifname.len() > 15
                || e.ifname.contains('/')
                || e.ifname.contains('\0'))
        {
            return Err(format!("unsafe id or ifname accepted: {e:?}"));
        }
        let _ = e.path_string();
    }
    Ok(label("ok", &parsed))
}

const ARGS_DICT: &[&[u8]] = &[
    b"IgnoreUnknown=1",
    b"IgnoreUnknown=true",
    b"K8S_POD_NAME=",
    b"IP=10.1.0.5",
    b"MAC=aa:bb:cc:dd:ee:ff",
    b";",
    b"=",
];

fn args_seeds() -> Vec<Vec<u8>> {
    [
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;IP=10.1.0.9",
        "IP=10.1.0.9,fd00::9",
        "a=b=c;;",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn cni_args(b: &[u8]) -> Result<String, String> {
    let s = String::from_utf8_lossy(b);
    let parsed = parse_cni_args(&s);
    let known = load_known_args(&s, &["IP", "MAC", "K8S_POD_NAME"]);
    let _ = netconf::args::parse_go_bool(&s);
    Ok(format!("{}|{}", label("ok", &parsed), label("ok", &known)))
}

/// A struct shaped like the ones the crates decode with Go semantics: nested, optional,
/// numeric, renamed and defaulted fields.
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Shape {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: String,
    mtu: Option<u32>,
    vlan: Option<i64>,
    #[serde(default)]
    flags: Vec<bool>,
    inner: Option<Inner>,
    #[serde(rename = "Ratio")]
    ratio: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Inner {
    #[serde(rename = "Port")]
    port: u16,
    tags: Option<std::collections::BTreeMap<String, String>>,
    net: Option<ipnet::IpNet>,
}

const GOJSON_DICT: &[&[u8]] = &[
    b"\"cniVersion\":",
    b"\"CNIVERSION\":",
    b"\"name\":",
    b"\"NAME\":",
    b"\"mtu\":",
    b"\"vlan\":",
    b"\"flags\":",
    b"\"inner\":",
    b"\"Port\":",
    b"\"port\":",
    b"\"tags\":",
    b"\"net\":",
    b"\"ratio\":",
    b"\"\\u212a\"",
    b"\"\\u017f\"",
];

fn gojson_seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"cniVersion":"1.0.0","name":"x","mtu":1500,"vlan":-3,"flags":[true,false],"inner":{"Port":80,"tags":{"a":"b"},"net":"10.0.0.0/8"},"Ratio":0.5}"#,
        r#"{"NAME":"y","Name":"z","INNER":{"port":65535}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.extend(nested(100_000));
    v
}

fn go_json(b: &[u8]) -> Result<String, String> {
    let typed = gojson::from_slice::<Shape>(b);
    let untyped = gojson::from_slice::<serde_json::Value>(b);
    if let Ok(v) = &untyped {
        let _ = gojson::encode::to_string_pretty(v, true);
        let _ = gojson::from_value::<Shape>(v.clone());
    }
    Ok(format!("{}|{}", label("ok", &typed), label("ok", &untyped)))
}

const SUBNET_ENV_DICT: &[&[u8]] = &[
    b"FLANNEL_NETWORK=",
    b"FLANNEL_SUBNET=",
    b"FLANNEL_IPV6_NETWORK=",
    b"FLANNEL_IPV6_SUBNET=",
    b"FLANNEL_MTU=",
    b"FLANNEL_IPMASQ=",
    b"10.244.0.0/16",
    b"10.244.1.1/24",
    b"fd00::/56",
    b"\n",
    b",",
    b"#",
];

fn subnet_env_seeds() -> Vec<Vec<u8>> {
    [
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16\nFLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:1::1/64\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// The plugin reads what flanneld renders: a parsed file must render and parse back equal.
fn subnet_env(b: &[u8]) -> Result<String, String> {
    let parsed = SubnetEnv::parse(&String::from_utf8_lossy(b));
    if let Ok(env) = &parsed {
        let text = env.render();
        let again = SubnetEnv::parse(&text)
            .map_err(|e| format!("rendered subnet.env does not parse: {e}: {text:?}"))?;
        if &again != env {
            return Err(format!("subnet.env round trip changed it: {text:?}"));
        }
        let _ = env.ensure_complete("subnet.env");
    }
    Ok(label("ok", &parsed))
}

fn flannel_config_seeds() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Port":8472,"DirectRouting":true}}"#,
        r#"{"EnableIPv6":true,"EnableIPv4":true,"Network":"10.244.0.0/16","IPv6Network":"fd00::/48","SubnetLen":26,"IPv6SubnetLen":64,"Backend":{"Type":"host-gw"}}"#,
        r#"{"Network":"10.0.0.0/8","SubnetMin":"10.10.0.0","SubnetMax":"10.99.0.0","Backend":{"Type":"udp","Port":8285}}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.extend(nested(100_000));
    v
}

fn flannel_config(b: &[u8]) -> Result<String, String> {
    let parsed = NetworkConfig::parse(b);
    let checked = parsed.as_ref().ok().map(|c| {
        let mut c = c.clone();
        label("checked", &c.check())
    });
    Ok(format!("{}|{:?}", label("ok", &parsed), checked))
}

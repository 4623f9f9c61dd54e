//! The plugins' own config decoders: host-local (ranges, CNI_ARGS, GC attachments), bridge,
//! flannel (config, delegate building, saved delegate, GC ids) and portmap.

use flannel_cni::{delegate_conf, gc, FlannelConf};
use netconf::subnet_env::SubnetEnv;
use netconf::NetConf;
use portmap_cni::PortMapConf;

use super::netconf_parsers::conf_seeds;
use super::{label, nested, Target, JSON_DICT};
use bridge_cni::config::BridgeConf;

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "host_local_config",
            seeds: host_local_seeds,
            dict: JSON_DICT,
            exec: host_local,
        },
        Target {
            name: "bridge_config",
            seeds: bridge_seeds,
            dict: JSON_DICT,
            exec: bridge,
        },
        Target {
            name: "flannel_config",
            seeds: flannel_seeds,
            dict: JSON_DICT,
            exec: flannel,
        },
        Target {
            name: "portmap_config",
            seeds: portmap_seeds,
            dict: JSON_DICT,
            exec: portmap,
        },
    ]
}

fn seeds_of(list: &[&str]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = list.iter().map(|s| s.as_bytes().to_vec()).collect();
    v.extend(conf_seeds());
    v.extend(nested(100_000));
    v
}

fn host_local_seeds() -> Vec<Vec<u8>> {
    seeds_of(&[
        r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.10","rangeEnd":"10.1.0.20","gateway":"10.1.0.1"}],[{"subnet":"fd00::/120"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"/tmp/x","resolvConf":"/etc/resolv.conf"},"args":{"cni":{"ips":["10.1.0.15"]}},"runtimeConfig":{"ips":["10.1.0.16/24"]}}"#,
        r#"{"cniVersion":"1.1.0","name":"n","type":"host-local","subnet":"10.1.0.0/16","cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}]}"#,
    ])
}

fn host_local(b: &[u8]) -> Result<String, String> {
    let args = if b.len() % 3 == 0 { "IP=10.1.0.15" } else { "" };
    let conf = host_local::config::load(b, args);
    let attachments = host_local::config::valid_attachments(b);
    Ok(format!(
        "{}|{}",
        label("ok", &conf),
        label("ok", &attachments)
    ))
}

fn bridge_seeds() -> Vec<Vec<u8>> {
    seeds_of(&[
        r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"cni0","isGateway":true,"isDefaultGateway":true,"forceAddress":false,"ipMasq":true,"ipMasqBackend":"nftables","mtu":1450,"hairpinMode":true,"vlan":0,"vlanTrunk":[{"minID":10,"maxID":20},{"id":30}],"preserveDefaultVlan":true,"macspoofchk":true,"enabledad":false,"portIsolation":false,"ipam":{"type":"host-local"},"dns":{"nameservers":["1.1.1.1"]},"runtimeConfig":{"mac":"aa:bb:cc:dd:ee:ff"},"args":{"cni":{"mac":"aa:bb:cc:dd:ee:01"}}}"#,
    ])
}

fn bridge(b: &[u8]) -> Result<String, String> {
    let Ok(conf) = NetConf::parse(b) else {
        return Ok("netconf-rejected".into());
    };
    let args = if b.len() % 2 == 0 {
        "MAC=aa:bb:cc:dd:ee:02"
    } else {
        ""
    };
    let loaded = BridgeConf::load(&conf, args);
    let valid = loaded
        .as_ref()
        .ok()
        .map(|c| label("valid", &c.validate_for_add()));
    Ok(format!("{}|{valid:?}", label("ok", &loaded)))
}

fn flannel_seeds() -> Vec<Vec<u8>> {
    seeds_of(&[
        r#"{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","subnetFile":"/run/flannel/subnet.env","dataDir":"/var/lib/cni/flannel","delegate":{"type":"bridge","hairpinMode":true,"ipam":{"routes":[{"dst":"10.0.0.0/8"}]}},"runtimeConfig":{"portMappings":[]},"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
    ])
}

fn flannel(b: &[u8]) -> Result<String, String> {
    let conf = FlannelConf::parse(b);
    let built = conf.as_ref().ok().map(|c| {
        let env = SubnetEnv::parse(
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        )
        .expect("fixed subnet.env parses");
        let d = delegate_conf::build(c, &env);
        if let Ok(d) = &d {
            let _ = d.ipam_type();
            let _ = d.with_keys(&[("cniVersion", serde_json::json!("1.0.0"))]);
        }
        label("built", &d)
    });
    let saved = delegate_conf::Delegate::from_saved(b.to_vec());
    let ids = serde_json::from_slice::<serde_json::Value>(b)
        .ok()
        .map(|v| label("ids", &gc::valid_container_ids(&v)));
    Ok(format!(
        "{}|{built:?}|{}|{ids:?}",
        label("ok", &conf),
        label("saved", &saved)
    ))
}

fn portmap_seeds() -> Vec<Vec<u8>> {
    seeds_of(&[
        r#"{"cniVersion":"1.0.0","name":"n","type":"portmap","snat":true,"markMasqBit":13,"externalSetMarkChain":null,"conditionsV4":["-s","1.2.3.4"],"backend":"iptables","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"},{"hostPort":53,"containerPort":53,"protocol":"udp"}]},"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.1.0.2/24","interface":0},{"address":"fd00::2/64","interface":0}]}}"#,
    ])
}

fn portmap(b: &[u8]) -> Result<String, String> {
    let Ok(conf) = NetConf::parse(b) else {
        return Ok("netconf-rejected".into());
    };
    let parsed = PortMapConf::parse(&conf, "eth0");
    if let Ok(p) = &parsed {
        for family in netops::Family::ALL {
            let _ = p.conditions(family);
        }
        let _ = p.mark();
    }
    Ok(label("ok", &parsed))
}

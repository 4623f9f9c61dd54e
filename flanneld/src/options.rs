//! flanneld's flags (upstream's names, defaults and env fallback) and the typed options the
//! daemon runs with.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::WireguardImpl;
use crate::goflag::{Flag, FlagError, FlagSet, Kind};
use crate::subnet::etcd::v3::SUBNET_TTL;
use crate::subnet::etcd::EtcdApi;
use crate::subnet::store::EtcdConfig;

/// Env prefix of the flag fallback (`FLANNELD_IP_MASQ`, ...).
pub const ENV_PREFIX: &str = "FLANNELD";

/// Test hook, deliberately not a flag: the lifetime of our lease record in whole seconds
/// instead of 24 h, so tests can watch leases expire. Never set it in production: peers would
/// lose routes to this node whenever a renewal is late by more than this.
pub const LEASE_TTL_ENV: &str = "FLANNEL_RS_TEST_LEASE_TTL";

const FLAGS: &[Flag] = &[
    Flag::new(
        "etcd-endpoints",
        Kind::String,
        "http://127.0.0.1:4001,http://127.0.0.1:2379",
        "comma-separated etcd client URLs",
    ),
    Flag::new(
        "etcd-prefix",
        Kind::String,
        "/coreos.com/network",
        "etcd key prefix holding config and subnets",
    ),
    Flag::new(
        "etcd-keyfile",
        Kind::String,
        "",
        "client key for etcd TLS (TLS is used only with -etcd-certfile too)",
    ),
    Flag::new(
        "etcd-certfile",
        Kind::String,
        "",
        "client certificate for etcd TLS",
    ),
    Flag::new(
        "etcd-cafile",
        Kind::String,
        "",
        "CA bundle that verifies the etcd server (with key and cert only)",
    ),
    Flag::new(
        "etcd-api",
        Kind::String,
        "auto",
        "etcd keyspace holding config and leases: v3, v2 (flannel <= v0.17 clusters), or auto (v3 if its config key exists, else v2 if the v2 API has a config)",
    ),
    Flag::new("etcd-username", Kind::String, "", "etcd v3 auth user name"),
    Flag::new("etcd-password", Kind::String, "", "etcd v3 auth password"),
    Flag::new(
        "kube-subnet-mgr",
        Kind::Bool,
        "false",
        "take the subnet from the Kubernetes node's podCIDR instead of etcd",
    ),
    Flag::new(
        "kube-api-url",
        Kind::String,
        "",
        "Kubernetes API server URL (kube mode)",
    ),
    Flag::new(
        "kubeconfig-file",
        Kind::String,
        "",
        "kubeconfig path (kube mode)",
    ),
    Flag::new(
        "kube-annotation-prefix",
        Kind::String,
        "flannel.alpha.coreos.com",
        "prefix of the node annotations flannel writes (kube mode)",
    ),
    Flag::new(
        "net-config-path",
        Kind::String,
        "/etc/kube-flannel/net-conf.json",
        "network config file (kube mode)",
    ),
    Flag::new(
        "set-node-network-unavailable",
        Kind::Bool,
        "true",
        "clear the NodeNetworkUnavailable condition once running (kube mode)",
    ),
    Flag::new(
        "network-policy",
        Kind::Bool,
        "false",
        "enforce Kubernetes NetworkPolicy for this node's pods in the nftables table inet flannel-netpol (kube subnet manager only)",
    ),
    Flag::new(
        "iface",
        Kind::List,
        "",
        "interface (name or IP) for traffic between nodes; repeat to try several in order",
    ),
    Flag::new(
        "iface-regex",
        Kind::List,
        "",
        "regex matched against interface IPs, then names; repeatable, tried after -iface",
    ),
    Flag::new(
        "iface-can-reach",
        Kind::String,
        "",
        "use the interface (and source address) the kernel routes this IP through",
    ),
    Flag::new(
        "public-ip",
        Kind::String,
        "",
        "IPv4 address other nodes reach this node at",
    ),
    Flag::new(
        "public-ipv6",
        Kind::String,
        "",
        "IPv6 address other nodes reach this node at",
    ),
    Flag::new(
        "subnet-file",
        Kind::String,
        "/run/flannel/subnet.env",
        "where the subnet, MTU and masquerade settings are written for the CNI plugin",
    ),
    Flag::new(
        "subnet-lease-renew-margin",
        Kind::Int,
        "60",
        "renew the subnet lease this many minutes before it expires (1-1439)",
    ),
    Flag::new(
        "ip-masq",
        Kind::Bool,
        "false",
        "masquerade traffic from pods to destinations outside the flannel network",
    ),
    Flag::new(
        "ip-masq-fully-random-disable",
        Kind::Bool,
        "false",
        "do not use --random-fully in the masquerade rules",
    ),
    Flag::new(
        "iptables-resync",
        Kind::Int,
        "5",
        "seconds between checks that the iptables rules are still in place",
    ),
    Flag::new(
        "iptables-forward-rules",
        Kind::Bool,
        "true",
        "accept traffic to and from the flannel network in the FORWARD chain",
    ),
    Flag::new(
        "ip-blackhole-route",
        Kind::Bool,
        "false",
        "keep a blackhole route for this node's subnet",
    ),
    Flag::new(
        "healthz-ip",
        Kind::String,
        "0.0.0.0",
        "address of the /healthz and /readyz endpoints",
    ),
    Flag::new(
        "healthz-port",
        Kind::Int,
        "0",
        "port of the /healthz and /readyz endpoints (0 disables them)",
    ),
    Flag::new(
        "wireguard-impl",
        Kind::String,
        "auto",
        "wireguard backend: kernel (the wireguard module), userspace (flanneld's own, on a TUN device), or auto (kernel where it exists)",
    ),
    Flag::new("version", Kind::Bool, "false", "print the version and exit"),
    Flag::new(
        "v",
        Kind::Int,
        "0",
        "log verbosity: 0 info, 1 debug, 3 trace",
    ),
    Flag::new(
        "vmodule",
        Kind::String,
        "",
        "accepted for compatibility with klog; ignored",
    ),
    Flag::new(
        "log_backtrace_at",
        Kind::String,
        "",
        "accepted for compatibility with klog; ignored",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Flag(#[from] FlagError),
    #[error("Invalid subnet-lease-renew-margin option, out of acceptable range")]
    RenewMargin,
    #[error("invalid -{flag} {value:?}: not an {family} address")]
    BadIp {
        flag: &'static str,
        value: String,
        family: &'static str,
    },
    #[error("invalid -healthz-port {0}: not a TCP port")]
    HealthzPort(i64),
    #[error("invalid -healthz-ip {0:?}")]
    HealthzIp(String),
    #[error("invalid -iptables-resync {0}: must be a positive number of seconds")]
    Resync(i64),
    #[error("invalid {LEASE_TTL_ENV} {0:?}: must be a positive number of seconds")]
    LeaseTtl(String),
    #[error("invalid -etcd-api {0:?}: must be auto, v2 or v3")]
    EtcdApi(String),
    #[error("invalid -wireguard-impl {0:?}: must be auto, kernel or userspace")]
    WireguardImpl(String),
    #[error("unexpected argument {0:?}: flanneld takes no positional arguments")]
    Positional(String),
    #[error("--network-policy needs --kube-subnet-mgr: NetworkPolicies, Pods and Namespaces are read from the Kubernetes API server, which the etcd subnet manager does not use")]
    NetworkPolicyWithoutKube,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<Options>),
    Version,
    Help,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub etcd: EtcdConfig,
    pub etcd_api: EtcdApi,
    pub kube_subnet_mgr: bool,
    pub kube_api_url: String,
    pub kubeconfig_file: String,
    pub kube_annotation_prefix: String,
    pub net_config_path: PathBuf,
    pub set_node_network_unavailable: bool,
    pub network_policy: bool,
    pub ifaces: Vec<String>,
    pub iface_regexes: Vec<String>,
    pub iface_can_reach: Option<IpAddr>,
    pub public_ip: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    pub subnet_file: PathBuf,
    pub renew_margin: Duration,
    pub ip_masq: bool,
    pub random_fully_disabled: bool,
    pub iptables_resync: Duration,
    pub forward_rules: bool,
    pub blackhole_route: bool,
    pub healthz: Option<std::net::SocketAddr>,
    pub verbosity: i64,
    pub lease_ttl: Duration,
    pub wireguard_impl: WireguardImpl,
}

pub fn flag_set(program: &str) -> FlagSet {
    FlagSet::new(program, FLAGS.to_vec())
}

fn ip_flag<T: std::str::FromStr>(
    flag: &'static str,
    value: String,
    family: &'static str,
) -> Result<Option<T>, OptionsError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| OptionsError::BadIp {
        flag,
        value,
        family,
    })
}

/// Parses `args` (without the program name), then the `FLANNELD_*` environment via `env`.
pub fn parse(
    program: &str,
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Invocation, OptionsError> {
    let set = flag_set(program);
    let mut parsed = match set.parse(args) {
        Err(FlagError::Help) => return Ok(Invocation::Help),
        other => other?,
    };
    set.apply_env(&mut parsed, ENV_PREFIX, &env)?;
    if let Some(extra) = parsed.args.first() {
        return Err(OptionsError::Positional(extra.clone()));
    }
    let v = set.values(&parsed);
    if v.bool("version") {
        return Ok(Invocation::Version);
    }
    let margin = v.int("subnet-lease-renew-margin");
    if !(1..=1439).contains(&margin) {
        return Err(OptionsError::RenewMargin);
    }
    let resync = v.int("iptables-resync");
    if resync < 1 {
        return Err(OptionsError::Resync(resync));
    }
    let port = v.int("healthz-port");
    let healthz = match port {
        0 => None,
        p => {
            let port = u16::try_from(p).map_err(|_| OptionsError::HealthzPort(p))?;
            let ip_text = v.string("healthz-ip");
            let ip: IpAddr = ip_text
                .parse()
                .map_err(|_| OptionsError::HealthzIp(ip_text))?;
            Some(std::net::SocketAddr::new(ip, port))
        }
    };
    let lease_ttl = match env(LEASE_TTL_ENV).filter(|s| !s.is_empty()) {
        None => SUBNET_TTL,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if n > 0 => Duration::from_secs(n),
            _ => return Err(OptionsError::LeaseTtl(s)),
        },
    };
    if v.bool("network-policy") && !v.bool("kube-subnet-mgr") {
        return Err(OptionsError::NetworkPolicyWithoutKube);
    }
    let etcd_api = v
        .string("etcd-api")
        .parse()
        .map_err(OptionsError::EtcdApi)?;
    let wg_impl = v.string("wireguard-impl");
    let wireguard_impl =
        WireguardImpl::parse(&wg_impl).ok_or(OptionsError::WireguardImpl(wg_impl))?;
    let endpoints = v
        .string("etcd-endpoints")
        .split(',')
        .map(str::to_owned)
        .collect();
    Ok(Invocation::Run(Box::new(Options {
        etcd: EtcdConfig {
            endpoints,
            prefix: v.string("etcd-prefix"),
            keyfile: v.string("etcd-keyfile"),
            certfile: v.string("etcd-certfile"),
            cafile: v.string("etcd-cafile"),
            username: v.string("etcd-username"),
            password: v.string("etcd-password"),
        },
        etcd_api,
        kube_subnet_mgr: v.bool("kube-subnet-mgr"),
        kube_api_url: v.string("kube-api-url"),
        kubeconfig_file: v.string("kubeconfig-file"),
        kube_annotation_prefix: v.string("kube-annotation-prefix"),
        net_config_path: PathBuf::from(v.string("net-config-path")),
        set_node_network_unavailable: v.bool("set-node-network-unavailable"),
        network_policy: v.bool("network-policy"),
        ifaces: v.list("iface"),
        iface_regexes: v.list("iface-regex"),
        iface_can_reach: ip_flag("iface-can-reach", v.string("iface-can-reach"), "IP")?,
        public_ip: ip_flag("public-ip", v.string("public-ip"), "IPv4")?,
        public_ipv6: ip_flag("public-ipv6", v.string("public-ipv6"), "IPv6")?,
        subnet_file: PathBuf::from(v.string("subnet-file")),
        renew_margin: Duration::from_secs(margin as u64 * 60),
        ip_masq: v.bool("ip-masq"),
        random_fully_disabled: v.bool("ip-masq-fully-random-disable"),
        iptables_resync: Duration::from_secs(resync as u64),
        forward_rules: v.bool("iptables-forward-rules"),
        blackhole_route: v.bool("ip-blackhole-route"),
        healthz,
        verbosity: v.int("v"),
        lease_ttl,
        wireguard_impl,
    })))
}

/// When to renew a lease expiring at `expiration`: `margin` before it, or — if a test TTL
/// makes the lease shorter than the margin — half-way through the remaining time.
pub fn renew_delay(remaining: Duration, margin: Duration, ttl: Duration) -> Duration {
    let margin = if margin >= ttl { ttl / 2 } else { margin };
    remaining.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Options, OptionsError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse("flanneld", &args, |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Invocation::Run(o) => Ok(*o),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_upstreams() {
        let o = run(&[], &[]).unwrap();
        assert_eq!(
            o.etcd.endpoints,
            ["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
        );
        assert_eq!(o.etcd.prefix, "/coreos.com/network");
        assert_eq!(o.subnet_file, PathBuf::from("/run/flannel/subnet.env"));
        assert_eq!(o.renew_margin, Duration::from_secs(3600));
        assert_eq!(o.iptables_resync, Duration::from_secs(5));
        assert!(o.forward_rules && !o.ip_masq && !o.blackhole_route && !o.kube_subnet_mgr);
        assert_eq!(o.healthz, None);
        assert_eq!(o.lease_ttl, SUBNET_TTL);
        assert_eq!(o.kube_annotation_prefix, "flannel.alpha.coreos.com");
        assert_eq!(
            o.net_config_path,
            PathBuf::from("/etc/kube-flannel/net-conf.json")
        );
        assert!(o.set_node_network_unavailable);
        assert!(o.kube_api_url.is_empty() && o.kubeconfig_file.is_empty());
    }

    #[test]
    fn kube_flags_and_their_env_forms() {
        let o = run(
            &["--kube-subnet-mgr", "--set-node-network-unavailable=false"],
            &[
                ("FLANNELD_KUBECONFIG_FILE", "/etc/kubeconfig"),
                ("FLANNELD_KUBE_API_URL", "http://10.0.0.1:6443"),
                ("FLANNELD_NET_CONFIG_PATH", "/tmp/net-conf.json"),
                ("FLANNELD_KUBE_ANNOTATION_PREFIX", "example.com/x"),
            ],
        )
        .unwrap();
        assert!(o.kube_subnet_mgr && !o.set_node_network_unavailable);
        assert_eq!(o.kubeconfig_file, "/etc/kubeconfig");
        assert_eq!(o.kube_api_url, "http://10.0.0.1:6443");
        assert_eq!(o.net_config_path, PathBuf::from("/tmp/net-conf.json"));
        assert_eq!(o.kube_annotation_prefix, "example.com/x");
    }

    #[test]
    fn network_policy_is_opt_in_and_kube_only() {
        assert!(!run(&[], &[]).unwrap().network_policy);
        assert!(
            run(&["--kube-subnet-mgr", "--network-policy"], &[])
                .unwrap()
                .network_policy
        );
        let o = run(
            &["--kube-subnet-mgr"],
            &[("FLANNELD_NETWORK_POLICY", "true")],
        )
        .unwrap();
        assert!(o.network_policy);
        let err = run(&["--network-policy"], &[]).unwrap_err();
        assert!(matches!(err, OptionsError::NetworkPolicyWithoutKube));
        assert!(err
            .to_string()
            .starts_with("--network-policy needs --kube-subnet-mgr"));
    }

    #[test]
    fn renew_margin_range_is_enforced_with_upstreams_message() {
        for bad in ["0", "1440", "-1"] {
            let err = run(&["-subnet-lease-renew-margin", bad], &[]).unwrap_err();
            assert_eq!(
                err.to_string(),
                "Invalid subnet-lease-renew-margin option, out of acceptable range"
            );
        }
        assert_eq!(
            run(&["--subnet-lease-renew-margin=1439"], &[])
                .unwrap()
                .renew_margin,
            Duration::from_secs(1439 * 60)
        );
    }

    #[test]
    fn env_and_cli_combine() {
        let o = run(
            &["--iface", "eth1", "--healthz-port=8081"],
            &[
                ("FLANNELD_IFACE", "eth9"),
                ("FLANNELD_IP_MASQ", "true"),
                ("FLANNELD_PUBLIC_IP", "10.1.2.3"),
                (LEASE_TTL_ENV, "30"),
            ],
        )
        .unwrap();
        assert_eq!(o.ifaces, ["eth1"]);
        assert!(o.ip_masq);
        assert_eq!(o.public_ip, Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(o.healthz, Some("0.0.0.0:8081".parse().unwrap()));
        assert_eq!(o.lease_ttl, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_are_reported() {
        assert!(matches!(
            run(&["-public-ip=fc00::1"], &[]),
            Err(OptionsError::BadIp { .. })
        ));
        assert!(matches!(
            run(&["-healthz-port=70000"], &[]),
            Err(OptionsError::HealthzPort(70000))
        ));
        assert!(matches!(
            run(&["-iptables-resync=0"], &[]),
            Err(OptionsError::Resync(0))
        ));
        assert!(matches!(
            run(&["extra"], &[]),
            Err(OptionsError::Positional(_))
        ));
        assert!(matches!(
            run(&[], &[(LEASE_TTL_ENV, "0")]),
            Err(OptionsError::LeaseTtl(_))
        ));
        let args = vec!["-version".to_owned()];
        assert!(matches!(
            parse("f", &args, |_| None),
            Ok(Invocation::Version)
        ));
        assert!(matches!(
            parse("f", &["-h".to_owned()], |_| None),
            Ok(Invocation::Help)
        ));
    }

    #[test]
    fn etcd_api_flag_env_and_default() {
        assert_eq!(run(&[], &[]).unwrap().etcd_api, EtcdApi::Auto);
        assert_eq!(run(&["-etcd-api=v2"], &[]).unwrap().etcd_api, EtcdApi::V2);
        assert_eq!(
            run(&["--etcd-api", "v3"], &[]).unwrap().etcd_api,
            EtcdApi::V3
        );
        assert_eq!(
            run(&[], &[("FLANNELD_ETCD_API", "v2")]).unwrap().etcd_api,
            EtcdApi::V2
        );
        let err = run(&["-etcd-api=v4"], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid -etcd-api \"v4\": must be auto, v2 or v3"
        );
        assert!(flag_set("flanneld")
            .usage_text()
            .contains("-etcd-api string"));
    }

    #[test]
    fn renewal_happens_margin_before_expiry() {
        let h = Duration::from_secs(3600);
        assert_eq!(renew_delay(24 * h, h, SUBNET_TTL), 23 * h);
        assert_eq!(
            renew_delay(Duration::from_secs(30), h, Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            renew_delay(Duration::from_secs(10), h, SUBNET_TTL),
            Duration::ZERO
        );
    }
}

//! Node-local state that other programs can remove and flanneld puts back: iptables rules or
//! nftables tables, subnet.env and the blackhole route. [`Upkeep::apply`] is both the initial setup and the
//! periodic check (`--iptables-resync`); every step is idempotent and cheap when all is well.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;
use netconf::subnet_env::SubnetEnv;
use netops::file::{write_atomic, AtomicWrite};
use netops::netlink::{Handle, RouteSpec};

use crate::masq::{self, Rules, Wanted};
use crate::subnet::Lease;

/// subnet.env as flanneld writes it: 0644 whatever the umask, its directory created if
/// missing, synced, since plugins on this node read it after a reboot.
const SUBNET_FILE: AtomicWrite = AtomicWrite::new(0o644).create_dirs(0o755).durable();

/// What this node must look like for its current lease.
#[derive(Debug, Clone)]
pub struct Upkeep {
    pub rules: Rules,
    pub subnet_file: PathBuf,
    pub subnet_env: String,
    pub blackholes: Vec<IpNet>,
}

/// Switches that come from flags.
#[derive(Debug, Clone, Copy)]
pub struct UpkeepFlags {
    pub ip_masq: bool,
    pub random_fully_disabled: bool,
    pub forward_rules: bool,
    pub blackhole_route: bool,
}

/// The gateway form CNI expects in subnet.env: the subnet's first address with its prefix.
pub fn gateway_v4(subnet: Ipv4Net) -> Ipv4Net {
    let gw = Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1));
    Ipv4Net::new(gw, subnet.prefix_len()).expect("prefix taken from a valid network")
}

pub fn gateway_v6(subnet: Ipv6Net) -> Ipv6Net {
    let gw = Ipv6Addr::from(u128::from(subnet.network()).wrapping_add(1));
    Ipv6Net::new(gw, subnet.prefix_len()).expect("prefix taken from a valid network")
}

/// subnet.env for `lease` under `config`, lines only for enabled families.
pub fn subnet_env(config: &NetworkConfig, lease: &Lease, mtu: u32, ip_masq: bool) -> SubnetEnv {
    let v4 = config.enable_ipv4;
    let v6 = config.enable_ipv6;
    SubnetEnv {
        networks: config.network.filter(|_| v4).into_iter().collect(),
        subnet: v4.then(|| gateway_v4(lease.subnet)),
        ipv6_networks: config.ipv6_network.filter(|_| v6).into_iter().collect(),
        ipv6_subnet: lease.ipv6_subnet.filter(|_| v6).map(gateway_v6),
        mtu: Some(mtu),
        ipmasq: Some(ip_masq),
    }
}

impl Upkeep {
    /// Probes iptables or nft (blocking) and builds the target state.
    pub fn new(
        flags: UpkeepFlags,
        config: &NetworkConfig,
        lease: &Lease,
        mtu: u32,
        subnet_file: &Path,
    ) -> Upkeep {
        let mut pairs: Vec<(IpNet, IpNet)> = Vec::new();
        if let (true, Some(net)) = (config.enable_ipv4, config.network) {
            pairs.push((IpNet::V4(net), IpNet::V4(lease.subnet)));
        }
        if let (true, Some(net), Some(sub)) =
            (config.enable_ipv6, config.ipv6_network, lease.ipv6_subnet)
        {
            pairs.push((IpNet::V6(net), IpNet::V6(sub)));
        }
        let wanted = Wanted {
            networks: pairs.clone(),
            ip_masq: flags.ip_masq,
            forward: flags.forward_rules,
            random_fully_disabled: flags.random_fully_disabled,
        };
        let rules = Rules::build(masq::backend_for(config.enable_nftables), &wanted);
        let blackholes = if flags.blackhole_route {
            pairs.iter().map(|(_, s)| *s).collect()
        } else {
            Vec::new()
        };
        Upkeep {
            rules,
            subnet_file: subnet_file.to_owned(),
            subnet_env: subnet_env(config, lease, mtu, flags.ip_masq).render(),
            blackholes,
        }
    }

    /// Puts the rules in place; returns how many rule sets had to be (re)written.
    pub fn ensure_rules(&self) -> Result<usize, masq::RulesError> {
        self.rules.ensure()
    }

    /// Startup: our rules first, then the other mode's leftovers go, so a node switching
    /// between iptables and nftables is never without masquerading.
    pub fn install_rules(&self) -> Result<usize, masq::RulesError> {
        let written = self.rules.ensure()?;
        let removed = self.rules.remove_other_mode()?;
        if !removed.is_empty() {
            log::info!(
                "{} mode: removed what the other mode left: {}",
                self.rules.mode(),
                removed.join(", ")
            );
        }
        Ok(written)
    }

    /// Writes subnet.env unless it already has exactly the right content.
    pub fn ensure_subnet_file(&self) -> std::io::Result<bool> {
        match std::fs::read_to_string(&self.subnet_file) {
            Ok(text) if text == self.subnet_env => Ok(false),
            _ => write_atomic(&self.subnet_file, self.subnet_env.as_bytes(), SUBNET_FILE)
                .map(|()| true)
                .map_err(|e| e.source),
        }
    }

    /// Whether subnet.env holds exactly what this node writes.
    pub fn subnet_file_in_place(&self) -> bool {
        std::fs::read_to_string(&self.subnet_file).is_ok_and(|text| text == self.subnet_env)
    }

    pub fn ensure_blackholes(&self) -> Result<usize, netops::netlink::NetlinkError> {
        if self.blackholes.is_empty() {
            return Ok(0);
        }
        let mut h = Handle::new()?;
        let mut added = 0;
        for net in &self.blackholes {
            match h.add_route(&RouteSpec::new(*net).blackhole()) {
                Ok(()) => added += 1,
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(added)
    }

    /// The periodic check: repairs what is missing and logs what it did. Never fails: a
    /// failure now may pass on the next tick, and the data plane must keep running.
    pub fn check(&self) -> Vec<String> {
        self.check_report().errors
    }

    /// [`Upkeep::check`], also saying what was repaired.
    pub fn check_report(&self) -> CheckReport {
        let mut report = CheckReport::default();
        match self.ensure_rules() {
            Ok(0) => {}
            Ok(n) => {
                report.rule_sets = n;
                log::warn!(
                    "{n} {} rule set(s) were missing or altered and have been restored",
                    self.rules.mode()
                )
            }
            Err(e) => report.errors.push(e.to_string()),
        }
        match self.ensure_subnet_file() {
            Ok(false) => {}
            Ok(true) => {
                report.subnet_file = true;
                log::warn!(
                    "{} was missing or altered and has been rewritten",
                    self.subnet_file.display()
                )
            }
            Err(e) => report.errors.push(format!(
                "failed to write {}: {e}",
                self.subnet_file.display()
            )),
        }
        match self.ensure_blackholes() {
            Ok(0) => {}
            Ok(n) => {
                report.blackholes = n;
                log::info!("added {n} blackhole route(s) for this node's subnet")
            }
            Err(e) => report.errors.push(format!("blackhole route: {e}")),
        }
        for e in &report.errors {
            log::error!("{e}");
        }
        report
    }
}

/// What one [`Upkeep::check_report`] put back, and what failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub rule_sets: usize,
    pub subnet_file: bool,
    pub blackholes: usize,
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subnet::LeaseAttrs;
    use netops::Family;

    fn lease(v6: Option<&str>) -> Lease {
        Lease {
            enable_ipv4: true,
            enable_ipv6: v6.is_some(),
            subnet: "10.244.2.0/24".parse().unwrap(),
            ipv6_subnet: v6.map(|s| s.parse().unwrap()),
            attrs: LeaseAttrs {
                public_ip: Ipv4Addr::new(192, 168, 1, 1),
                public_ipv6: None,
                backend_type: "vxlan".into(),
                backend_data: None,
                backend_v6_data: None,
            },
            expiration: Some(std::time::UNIX_EPOCH),
            created: 0,
        }
    }

    fn config(json: &str) -> NetworkConfig {
        let mut c = NetworkConfig::parse(json.as_bytes()).unwrap();
        c.check().unwrap();
        c
    }

    #[test]
    fn subnet_env_has_the_gateway_address() {
        let env = subnet_env(
            &config(r#"{"Network":"10.244.0.0/16"}"#),
            &lease(None),
            1450,
            true,
        );
        assert_eq!(
            env.render(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
        let dual = config(
            r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:cafe:42::/56"}"#,
        );
        let env = subnet_env(&dual, &lease(Some("2001:cafe:42::/64")), 1430, false);
        assert_eq!(
            env.render(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\n\
             FLANNEL_IPV6_SUBNET=2001:cafe:42::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n"
        );
    }

    #[test]
    fn subnet_file_is_rewritten_only_when_it_differs() {
        let dir = tempfile::tempdir().unwrap();
        let flags = UpkeepFlags {
            ip_masq: false,
            random_fully_disabled: true,
            forward_rules: false,
            blackhole_route: false,
        };
        let path = dir.path().join("run/flannel/subnet.env");
        let up = Upkeep::new(
            flags,
            &config(r#"{"Network":"10.244.0.0/16"}"#),
            &lease(None),
            1450,
            &path,
        );
        assert!(matches!(&up.rules, Rules::Iptables(sets) if sets.is_empty()));
        assert!(up.blackholes.is_empty());
        assert!(up.ensure_subnet_file().unwrap());
        assert!(!up.ensure_subnet_file().unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(up.check().is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), up.subnet_env);
        std::fs::write(&path, "FLANNEL_SUBNET=10.9.9.1/24\n").unwrap();
        assert!(up.ensure_subnet_file().unwrap());
    }

    #[test]
    fn rule_sets_follow_flags_and_families() {
        let flags = UpkeepFlags {
            ip_masq: true,
            random_fully_disabled: true,
            forward_rules: true,
            blackhole_route: true,
        };
        let dual =
            config(r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}"#);
        let up = Upkeep::new(
            flags,
            &dual,
            &lease(Some("fc00:0:0:5::/64")),
            1450,
            Path::new("/nonexistent/x"),
        );
        let Rules::Iptables(sets) = &up.rules else {
            panic!("iptables mode without EnableNFTables: {:?}", up.rules)
        };
        let chains: Vec<(Family, &str)> = sets.iter().map(|r| (r.family, r.chain)).collect();
        assert_eq!(
            chains,
            [
                (Family::V4, "FLANNEL-POSTRTG"),
                (Family::V4, "FLANNEL-FWD"),
                (Family::V6, "FLANNEL-POSTRTG"),
                (Family::V6, "FLANNEL-FWD")
            ]
        );
        assert_eq!(up.blackholes.len(), 2);
    }
}

//! `subnet.env`: written by flanneld, read by the flannel CNI plugin.

use ipnet::{Ipv4Net, Ipv6Net};

/// The contents of a `subnet.env` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubnetEnv {
    /// `FLANNEL_NETWORK`: network addresses (host bits masked), duplicates dropped.
    pub networks: Vec<Ipv4Net>,
    /// `FLANNEL_SUBNET` as written, e.g. `10.244.2.1/24` (see [`SubnetEnv::subnet_network`]).
    pub subnet: Option<Ipv4Net>,
    pub ipv6_networks: Vec<Ipv6Net>,
    pub ipv6_subnet: Option<Ipv6Net>,
    pub mtu: Option<u32>,
    pub ipmasq: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetEnvError {
    #[error("line {line}: {key} has no '=' and no value")]
    MissingValue { line: usize, key: &'static str },
    #[error("line {line}: {key}: {value:?} is not a CIDR ({reason})")]
    InvalidCidr {
        line: usize,
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("line {line}: FLANNEL_MTU: {value:?} is not a decimal number in 0..=4294967295")]
    InvalidMtu { line: usize, value: String },
    #[error("{file} is missing {}", keys.join(", "))]
    Missing {
        file: String,
        keys: Vec<&'static str>,
    },
}

const KEYS: [&str; 6] = [
    "FLANNEL_NETWORK",
    "FLANNEL_SUBNET",
    "FLANNEL_IPV6_NETWORK",
    "FLANNEL_IPV6_SUBNET",
    "FLANNEL_MTU",
    "FLANNEL_IPMASQ",
];

fn cidr<T: std::str::FromStr>(
    line: usize,
    key: &'static str,
    value: &str,
    family: &'static str,
) -> Result<T, SubnetEnvError> {
    value.parse::<T>().map_err(|_| {
        let other_family = if family == "IPv4" {
            value.contains(':')
        } else {
            value.contains('.') && !value.contains(':')
        };
        let reason = match () {
            _ if value.is_empty() => "empty",
            _ if value.contains(',') => "a single CIDR is expected, not a list",
            _ if other_family && family == "IPv4" => "expected an IPv4 CIDR",
            _ if other_family => "expected an IPv6 CIDR",
            _ => "malformed address or prefix",
        };
        SubnetEnvError::InvalidCidr {
            line,
            key,
            value: value.to_owned(),
            reason,
        }
    })
}

fn cidr_list<N>(
    line: usize,
    key: &'static str,
    value: &str,
    family: &'static str,
    trunc: fn(&N) -> N,
) -> Result<Vec<N>, SubnetEnvError>
where
    N: std::str::FromStr + PartialEq,
{
    let mut out: Vec<N> = Vec::new();
    for item in value.split(',') {
        let net = trunc(&cidr::<N>(line, key, item, family)?);
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

impl SubnetEnv {
    /// Parses like the flannel CNI plugin: one `KEY=VALUE` per line, split at the first `=`,
    /// no quoting, no trimming; unknown keys and blank lines are ignored; a later duplicate key
    /// overwrites. A known key without `=` is an error (upstream would crash).
    pub fn parse(text: &str) -> Result<SubnetEnv, SubnetEnvError> {
        let mut env = SubnetEnv::default();
        for (idx, raw_line) in text.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (line, None),
            };
            let Some(key) = KEYS.iter().copied().find(|k| *k == key) else {
                continue;
            };
            let value = value.ok_or(SubnetEnvError::MissingValue { line: line_no, key })?;
            match key {
                "FLANNEL_NETWORK" => {
                    env.networks = cidr_list(line_no, key, value, "IPv4", Ipv4Net::trunc)?
                }
                "FLANNEL_IPV6_NETWORK" => {
                    env.ipv6_networks = cidr_list(line_no, key, value, "IPv6", Ipv6Net::trunc)?
                }
                "FLANNEL_SUBNET" => env.subnet = Some(cidr(line_no, key, value, "IPv4")?),
                "FLANNEL_IPV6_SUBNET" => env.ipv6_subnet = Some(cidr(line_no, key, value, "IPv6")?),
                "FLANNEL_MTU" => {
                    let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                    let mtu = valid.then(|| value.parse::<u32>().ok()).flatten();
                    env.mtu = Some(mtu.ok_or_else(|| SubnetEnvError::InvalidMtu {
                        line: line_no,
                        value: value.to_owned(),
                    })?);
                }
                "FLANNEL_IPMASQ" => env.ipmasq = Some(value == "true"),
                _ => unreachable!("every key in KEYS is handled"),
            }
        }
        Ok(env)
    }

    /// `FLANNEL_SUBNET` with host bits masked, as the CNI plugin uses it.
    pub fn subnet_network(&self) -> Option<Ipv4Net> {
        self.subnet.map(|s| s.trunc())
    }

    pub fn ipv6_subnet_network(&self) -> Option<Ipv6Net> {
        self.ipv6_subnet.map(|s| s.trunc())
    }

    /// Keys the CNI plugin requires but did not find, in upstream's order: a network and a
    /// subnet of either family, the MTU and IPMASQ.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.networks.is_empty() && self.ipv6_networks.is_empty() {
            m.extend(["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]);
        }
        if self.subnet.is_none() && self.ipv6_subnet.is_none() {
            m.extend(["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]);
        }
        if self.mtu.is_none() {
            m.push("FLANNEL_MTU");
        }
        if self.ipmasq.is_none() {
            m.push("FLANNEL_IPMASQ");
        }
        m
    }

    /// [`SubnetEnv::missing`] as upstream's error: `<file> is missing A, B`.
    pub fn ensure_complete(&self, file: &str) -> Result<(), SubnetEnvError> {
        let keys = self.missing();
        if keys.is_empty() {
            Ok(())
        } else {
            Err(SubnetEnvError::Missing {
                file: file.to_owned(),
                keys,
            })
        }
    }

    /// The file as flanneld's `WriteSubnetFile` writes it: NETWORK, SUBNET, IPV6_NETWORK,
    /// IPV6_SUBNET, MTU, IPMASQ, each line only when the value is present.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let join = |v: Vec<String>| v.join(",");
        if !self.networks.is_empty() {
            out.push_str(&format!(
                "FLANNEL_NETWORK={}\n",
                join(self.networks.iter().map(|n| n.to_string()).collect())
            ));
        }
        if let Some(s) = self.subnet {
            out.push_str(&format!("FLANNEL_SUBNET={s}\n"));
        }
        if !self.ipv6_networks.is_empty() {
            out.push_str(&format!(
                "FLANNEL_IPV6_NETWORK={}\n",
                join(self.ipv6_networks.iter().map(|n| n.to_string()).collect())
            ));
        }
        if let Some(s) = self.ipv6_subnet {
            out.push_str(&format!("FLANNEL_IPV6_SUBNET={s}\n"));
        }
        if let Some(mtu) = self.mtu {
            out.push_str(&format!("FLANNEL_MTU={mtu}\n"));
        }
        if let Some(masq) = self.ipmasq {
            out.push_str(&format!("FLANNEL_IPMASQ={masq}\n"));
        }
        out
    }
}

#[cfg(test)]
#[path = "subnet_env_tests.rs"]
mod tests;

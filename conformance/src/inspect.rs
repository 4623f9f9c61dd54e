//! Kernel state inside a namespace, read with the same tools an operator
//! would use, so assertions compare against what `ip`/`iptables` report.

use serde_json::Value;

use crate::cmd::{self, CmdError};
use crate::netns::Netns;

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        // `ip -j` prints nothing at all for an empty table on some versions.
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

impl Netns {
    fn ip_json(&self, args: &[&str]) -> Result<Vec<Value>, CmdError> {
        let out = cmd::run_stdout(self.command("ip").args(["-j", "-d"]).args(args))?;
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&out)
            .map(as_array)
            .map_err(|source| CmdError::Json {
                cmd: format!("ip -j -d {} (netns {})", args.join(" "), self.name()),
                stdout: out,
                source,
            })
    }

    /// `ip -j -d link show`: every link with its kind-specific details.
    pub fn links(&self) -> Result<Vec<Value>, CmdError> {
        self.ip_json(&["link", "show"])
    }

    /// One link by name, or `None` if it does not exist.
    pub fn link(&self, ifname: &str) -> Result<Option<Value>, CmdError> {
        Ok(self.links()?.into_iter().find(|l| l["ifname"] == ifname))
    }

    /// Names of all links of a given kind (`veth`, `bridge`, `vxlan`, ...).
    pub fn links_of_kind(&self, kind: &str) -> Result<Vec<String>, CmdError> {
        Ok(self
            .links()?
            .iter()
            .filter(|l| l["linkinfo"]["info_kind"] == kind)
            .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
            .collect())
    }

    /// `ip -j -d addr show`.
    pub fn addrs(&self) -> Result<Vec<Value>, CmdError> {
        self.ip_json(&["addr", "show"])
    }

    /// Addresses of one interface as `addr/prefix` strings, link-local
    /// IPv6 excluded (the kernel adds those on its own).
    pub fn addresses_of(&self, ifname: &str) -> Result<Vec<String>, CmdError> {
        let links = self.ip_json(&["addr", "show", "dev", ifname])?;
        Ok(links
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] != "link" || a["family"] != "inet6")
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["local"].as_str()?,
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect())
    }

    /// IPv4 routes of the main table.
    pub fn routes(&self) -> Result<Vec<Value>, CmdError> {
        self.ip_json(&["-4", "route", "show"])
    }

    /// IPv6 routes of the main table.
    pub fn routes6(&self) -> Result<Vec<Value>, CmdError> {
        self.ip_json(&["-6", "route", "show"])
    }

    /// Neighbour entries (ARP / NDP), e.g. those a VXLAN backend programs.
    pub fn neighbours(&self) -> Result<Vec<Value>, CmdError> {
        self.ip_json(&["neigh", "show"])
    }

    /// `iptables-save` output for one table, packet counters included.
    pub fn iptables_save(&self, table: &str) -> Result<String, CmdError> {
        self.exec_ok(&["iptables-save", "-t", table])
    }

    /// `ip6tables-save` output for one table.
    pub fn ip6tables_save(&self, table: &str) -> Result<String, CmdError> {
        self.exec_ok(&["ip6tables-save", "-t", table])
    }

    /// `nft -j list ruleset`.
    pub fn nft_ruleset(&self) -> Result<Value, CmdError> {
        cmd::run_json(self.command("nft").args(["-j", "list", "ruleset"]))
    }

    /// A sysctl value as the kernel prints it, e.g. `net.ipv4.ip_forward`.
    pub fn sysctl(&self, key: &str) -> Result<String, CmdError> {
        Ok(self.exec_ok(&["sysctl", "-n", key])?.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn as_array_normalises_ip_json_shapes() {
        assert_eq!(as_array(json!([1, 2])), vec![json!(1), json!(2)]);
        assert!(as_array(Value::Null).is_empty());
        assert_eq!(as_array(json!({"a": 1})), vec![json!({"a": 1})]);
    }
}

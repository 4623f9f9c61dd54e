//! portmap's config (upstream `PortMapConf`, `parseConfig`, `ensureBackend`): the mappings
//! from `runtimeConfig.portMappings`, the masquerade options, the backend, and the container
//! addresses taken from `prevResult`.

use std::net::IpAddr;

use ipnet::IpNet;
use netconf::gojson::{fields, At, Decoder, Step};
use netconf::{CniResult, NetConf};
use netops::firewall::Backend;
use netops::Family;
use serde_json::{Map, Value};

use crate::error::PortmapError;

pub const DEFAULT_MARK_BIT: u32 = 13;

/// One requested mapping. Ports are validated positive (and, unlike upstream, ≤ 65535, so a
/// typo fails here instead of half-way through the firewall update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// As given; iptables and nft treat protocol names case-insensitively, we emit lowercase.
    pub protocol: String,
    /// `None` when absent or empty.
    pub host_ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortMapConf {
    pub name: String,
    pub snat: bool,
    pub masq_all: bool,
    pub mark_masq_bit: u32,
    pub external_set_mark_chain: Option<String>,
    pub conditions_v4: Vec<String>,
    pub conditions_v6: Vec<String>,
    /// `None`: not requested; resolved by [`PortMapConf::resolve_backend`].
    pub backend: Option<String>,
    pub mappings: Vec<PortMapping>,
    /// The container's first IPv4 / IPv6 address on `CNI_IFNAME`, with its prefix.
    pub container_v4: Option<IpNet>,
    pub container_v6: Option<IpNet>,
}

/// Upstream's `PortMapEntry` as Go decodes it.
#[derive(Default)]
struct WireEntry {
    host_port: i64,
    container_port: i64,
    protocol: String,
    host_ip: String,
}

/// Upstream's `PortMapConf` fields as Go decodes them.
#[derive(Default)]
struct Wire {
    backend: Option<String>,
    snat: Option<bool>,
    conditions_v4: Option<Vec<String>>,
    conditions_v6: Option<Vec<String>>,
    masq_all: bool,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
    port_mappings: Vec<WireEntry>,
}

const FIELDS: &[&str] = &[
    "backend",
    "snat",
    "conditionsV4",
    "conditionsV6",
    "masqAll",
    "markMasqBit",
    "runtimeConfig",
    "externalSetMarkChain",
];
const RUNTIME_TYPE: &str =
    r#"struct { PortMaps []main.PortMapEntry "json:\"portMappings,omitempty\"" }"#;

/// Upstream's `json.Unmarshal(stdin, &conf)`.
fn decode(obj: &Map<String, Value>) -> Step<Wire> {
    let mut d = Decoder::default();
    let mut w = Wire::default();
    for (field, v) in fields(obj, FIELDS) {
        let at = At::top().field("PortMapConf", field);
        match field {
            "backend" => d.opt_string(&at, v, &mut w.backend),
            "snat" => d.opt_bool(&at, v, &mut w.snat),
            "conditionsV4" => d.opt_strings(&at, v, &mut w.conditions_v4),
            "conditionsV6" => d.opt_strings(&at, v, &mut w.conditions_v6),
            "masqAll" => d.bool(&at, v, &mut w.masq_all),
            "markMasqBit" => d.opt_int(&at, v, &mut w.mark_masq_bit),
            "externalSetMarkChain" => d.opt_string(&at, v, &mut w.external_set_mark_chain),
            _ => {
                let Some(rc) = d.object(&at, v, RUNTIME_TYPE) else {
                    continue;
                };
                for (_, v) in fields(rc, &["portMappings"]) {
                    let at = at.field("", "portMappings");
                    let Some(items) = d.array(&at, v, "[]main.PortMapEntry") else {
                        continue;
                    };
                    w.port_mappings = items
                        .iter()
                        .map(|item| decode_entry(&mut d, &at, item))
                        .collect();
                }
            }
        }
    }
    d.finish()?;
    Ok(w)
}

fn decode_entry(d: &mut Decoder, at: &At, item: &Value) -> WireEntry {
    let mut e = WireEntry::default();
    if let Some(m) = d.object(at, item, "main.PortMapEntry") {
        for (field, v) in fields(m, &["hostPort", "containerPort", "protocol", "hostIP"]) {
            let at = at.field("PortMapEntry", field);
            match field {
                "hostPort" => d.int(&at, v, &mut e.host_port),
                "containerPort" => d.int(&at, v, &mut e.container_port),
                "protocol" => d.string(&at, v, &mut e.protocol),
                _ => d.string(&at, v, &mut e.host_ip),
            }
        }
    }
    e
}

fn mapping(e: WireEntry) -> Result<PortMapping, String> {
    let port = |n: i64, what: &str| -> Result<u16, String> {
        if n <= 0 || n > 65535 {
            Err(format!("Invalid {what} port number: {n}"))
        } else {
            Ok(n as u16)
        }
    };
    let container_port = port(e.container_port, "container")?;
    let host_port = port(e.host_port, "host")?;
    let host_ip = match e.host_ip.as_str() {
        "" => None,
        s => Some(
            s.parse::<IpAddr>()
                .map_err(|_| format!("Invalid host IP: {s:?}"))?,
        ),
    };
    // The protocol comes from the pod spec and is spliced into nft scripts and
    // iptables-restore input: only a bare name or number may get there, never syntax.
    if !e.protocol.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("Invalid protocol: {:?}", e.protocol));
    }
    Ok(PortMapping {
        host_port,
        container_port,
        protocol: e.protocol.to_ascii_lowercase(),
        host_ip,
    })
}

/// Go's `To4() != nil`: IPv4-mapped IPv6 addresses count as IPv4.
fn is_v4_like(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    }
}

/// An IPv4-mapped IPv6 address as the plain IPv4 network Go would print for it.
fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// The first address of each family that belongs to the sandbox interface `ifname`: an IP
/// whose `interface` is absent (or out of range) counts, one pointing at another interface or
/// at a host-side one (no sandbox) does not.
fn container_ips(prev: &CniResult, ifname: &str) -> (Option<IpNet>, Option<IpNet>) {
    let (mut v4, mut v6) = (None, None);
    for ip in &prev.ips {
        let slot = if is_v4_like(ip.address.addr()) {
            &mut v4
        } else {
            &mut v6
        };
        if slot.is_some() {
            continue;
        }
        if let Some(iface) = ip.interface.and_then(|i| prev.interfaces.get(i)) {
            if iface.name != ifname || iface.sandbox.as_deref().unwrap_or("").is_empty() {
                continue;
            }
        }
        *slot = Some(unmap(ip.address));
    }
    (v4, v6)
}

impl PortMapConf {
    /// Decodes `conf` (already checked and with `prevResult` parsed by the skel).
    pub fn parse(conf: &NetConf, ifname: &str) -> Result<PortMapConf, PortmapError> {
        let bad = |m: String| PortmapError::Config(m);
        let empty = Map::new();
        let wire = decode(conf.raw.as_object().unwrap_or(&empty))
            .map_err(|e| bad(format!("failed to parse network configuration: {e}")))?;
        if wire.mark_masq_bit.is_some() && wire.external_set_mark_chain.is_some() {
            return Err(bad(
                "Cannot specify externalSetMarkChain and markMasqBit".into()
            ));
        }
        let bit = wire.mark_masq_bit.unwrap_or(DEFAULT_MARK_BIT as i64);
        if !(0..=31).contains(&bit) {
            return Err(bad("MasqMarkBit must be between 0 and 31".into()));
        }
        let mappings = wire
            .port_mappings
            .into_iter()
            .map(mapping)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let (container_v4, container_v6) = match &conf.prev_result {
            Some(prev) => container_ips(prev, ifname),
            None => (None, None),
        };
        Ok(PortMapConf {
            name: conf.name.clone(),
            snat: wire.snat.unwrap_or(true),
            masq_all: wire.masq_all,
            mark_masq_bit: bit as u32,
            external_set_mark_chain: wire.external_set_mark_chain,
            conditions_v4: wire.conditions_v4.unwrap_or_default(),
            conditions_v6: wire.conditions_v6.unwrap_or_default(),
            backend: wire.backend,
            mappings,
            container_v4,
            container_v6,
        })
    }

    /// Upstream `ensureBackend`: an explicit backend, else iptables unless only nftables
    /// works (`usable` answers for each; see [`Backend::choose_with`]); options that belong
    /// to the other backend are an error.
    pub fn resolve_backend(
        &self,
        usable: impl Fn(Backend) -> bool,
    ) -> Result<Backend, PortmapError> {
        let mut specific: [(Backend, Vec<&str>); 2] =
            [(Backend::Iptables, vec![]), (Backend::Nftables, vec![])];
        let mut note = |backend: Backend, opt: &'static str| {
            specific
                .iter_mut()
                .find(|(b, _)| *b == backend)
                .expect("both backends listed")
                .1
                .push(opt);
        };
        if self.external_set_mark_chain.is_some() {
            note(Backend::Iptables, "externalSetMarkChain");
        }
        for (conds, key) in [
            (&self.conditions_v4, "conditionsV4"),
            (&self.conditions_v6, "conditionsV6"),
        ] {
            if let Some(first) = conds.first() {
                let backend = if first.starts_with(['-', '!']) {
                    Backend::Iptables
                } else {
                    Backend::Nftables
                };
                note(backend, key);
            }
        }
        let chosen = Backend::choose_with(self.backend.as_deref(), usable).map_err(|e| {
            PortmapError::Backend(format!(
                "unrecognized backend {}",
                netconf::gofmt::quote(&e.0)
            ))
        })?;
        let wrong = specific
            .iter()
            .find(|(b, _)| *b != chosen)
            .expect("two backends");
        if !wrong.1.is_empty() {
            return Err(PortmapError::Backend(format!(
                "{chosen} backend was requested but configuration contains {}-specific options [{}]",
                wrong.0,
                wrong.1.join(" ")
            )));
        }
        Ok(chosen)
    }

    /// The conditions for `family`'s rules.
    pub fn conditions(&self, family: Family) -> &[String] {
        match family {
            Family::V4 => &self.conditions_v4,
            Family::V6 => &self.conditions_v6,
        }
    }

    /// Mark value as iptables prints it (`0x2000/0x2000` for bit 13).
    pub fn mark(&self) -> String {
        let v = 1u64 << self.mark_masq_bit;
        format!("{v:#x}/{v:#x}")
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

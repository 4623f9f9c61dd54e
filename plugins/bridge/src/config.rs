//! The bridge plugin's configuration: every upstream key with its default, and upstream's
//! validation (same checks, same order, same messages).

use netconf::gojson::{fields, At, Decoder, Step};
use netconf::{args, CniError, Dns, NetConf};
use serde_json::{Map, Value};

pub const DEFAULT_BRIDGE: &str = "cni0";
const MAX_VLAN: i64 = 4094;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to load netconf: {0}")]
    Decode(String),
    #[error("invalid VLAN ID {0} (must be between 0 and 4094)")]
    InvalidVlan(i64),
    #[error("incorrect trunk minID parameter")]
    TrunkMin,
    #[error("incorrect trunk maxID parameter")]
    TrunkMax,
    #[error("incorrect trunk id parameter")]
    TrunkId,
    #[error("minID is greater than maxID in trunk parameter")]
    TrunkInverted,
    #[error("minID and maxID should be configured simultaneously, minID is missing")]
    TrunkMinMissing,
    #[error("minID and maxID should be configured simultaneously, maxID is missing")]
    TrunkMaxMissing,
    #[error("cannot set vlan and vlanTrunk at the same time")]
    VlanAndTrunk,
    /// `CNI_ARGS` rejected by Go's `LoadArgs` rules (its text is final).
    #[error("{}", .0.msg)]
    Args(CniError),
    #[error("cannot set hairpin mode and promiscuous mode at the same time.")]
    HairpinAndPromisc,
    #[error("cannot use IPAM when DisableContainerInterface flag is set")]
    IpamWithoutInterface,
    #[error("invalid bridge name {0:?}: contains a NUL byte")]
    BridgeNameNul(String),
}

/// The decoded bridge configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConf {
    /// Network name (drives masquerade chain names and comments).
    pub network: String,
    pub bridge: String,
    /// Already forced on by `is_default_gateway`, as upstream's ADD does first thing.
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: bool,
    pub ip_masq_backend: Option<String>,
    /// Bridge MTU at creation and MTU of both veth ends; `None` keeps the kernel default.
    pub mtu: Option<u32>,
    pub hairpin_mode: bool,
    pub promisc_mode: bool,
    /// Access VLAN (PVID, untagged); 0 = none.
    pub vlan: u16,
    /// Tagged trunk VLANs, sorted and unique; empty when none.
    pub trunk: Vec<u16>,
    /// `vlanTrunk` was given at all (even as `[]`): upstream then creates the bridge with
    /// VLAN filtering on.
    pub trunk_configured: bool,
    pub preserve_default_vlan: bool,
    pub mac_spoof_check: bool,
    pub enable_dad: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
    /// `ipam.type`, when non-empty (L3 mode); `None` is the L2-only mode.
    pub ipam_type: Option<String>,
    /// The config's own `dns`: when non-empty it replaces IPAM's in the result.
    pub dns: Dns,
    /// Container MAC: runtimeConfig.mac > args.cni.mac > CNI_ARGS `MAC`.
    pub mac: Option<String>,
}

/// Upstream's `NetConf` fields as Go decodes them, before validation; `new` holds the
/// defaults upstream sets before `json.Unmarshal`.
#[derive(Debug)]
struct Raw {
    bridge: String,
    is_gateway: bool,
    is_default_gateway: bool,
    force_address: bool,
    ip_masq: bool,
    ip_masq_backend: Option<String>,
    mtu: i64,
    hairpin_mode: bool,
    promisc_mode: bool,
    vlan: i64,
    /// `None` is Go's nil slice: `vlanTrunk` absent or `null`.
    trunk: Option<Vec<TrunkItem>>,
    preserve_default_vlan: bool,
    mac_spoof_check: bool,
    enable_dad: bool,
    disable_container_interface: bool,
    port_isolation: bool,
    dns: Dns,
    args_mac: String,
    runtime_mac: String,
}

impl Raw {
    fn new() -> Raw {
        Raw {
            bridge: DEFAULT_BRIDGE.to_owned(),
            is_gateway: false,
            is_default_gateway: false,
            force_address: false,
            ip_masq: false,
            ip_masq_backend: None,
            mtu: 0,
            hairpin_mode: false,
            promisc_mode: false,
            vlan: 0,
            trunk: None,
            // Upstream defaults this to true so configs written before the option existed
            // keep the kernel's default VLAN 1 on the port.
            preserve_default_vlan: true,
            mac_spoof_check: false,
            enable_dad: false,
            disable_container_interface: false,
            port_isolation: false,
            dns: Dns::default(),
            args_mac: String::new(),
            runtime_mac: String::new(),
        }
    }
}

const NETCONF_FIELDS: &[&str] = &[
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "ipMasqBackend",
    "mtu",
    "hairpinMode",
    "promiscMode",
    "vlan",
    "vlanTrunk",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
    "dns",
    "args",
    "runtimeConfig",
];
const ARGS_TYPE: &str = "struct { Cni main.BridgeArgs \"json:\\\"cni,omitempty\\\"\" }";
const RUNTIME_TYPE: &str = "struct { Mac string \"json:\\\"mac,omitempty\\\"\" }";

/// Upstream's `json.Unmarshal` into its `NetConf`.
fn decode(obj: &Map<String, Value>) -> Step<Raw> {
    let mut d = Decoder::default();
    let mut raw = Raw::new();
    for (field, v) in fields(obj, NETCONF_FIELDS) {
        let at = At::top().field("NetConf", field);
        match field {
            "bridge" => d.string(&at, v, &mut raw.bridge),
            "isGateway" => d.bool(&at, v, &mut raw.is_gateway),
            "isDefaultGateway" => d.bool(&at, v, &mut raw.is_default_gateway),
            "forceAddress" => d.bool(&at, v, &mut raw.force_address),
            "ipMasq" => d.bool(&at, v, &mut raw.ip_masq),
            "ipMasqBackend" => d.opt_string(&at, v, &mut raw.ip_masq_backend),
            "mtu" => d.int(&at, v, &mut raw.mtu),
            "hairpinMode" => d.bool(&at, v, &mut raw.hairpin_mode),
            "promiscMode" => d.bool(&at, v, &mut raw.promisc_mode),
            "vlan" => d.int(&at, v, &mut raw.vlan),
            "vlanTrunk" if v.is_null() => raw.trunk = None,
            "vlanTrunk" => {
                if let Some(items) = d.array(&at, v, "[]*main.VlanTrunk") {
                    raw.trunk = Some(decode_trunk(&mut d, &at, items));
                }
            }
            "preserveDefaultVlan" => d.bool(&at, v, &mut raw.preserve_default_vlan),
            "macspoofchk" => d.bool(&at, v, &mut raw.mac_spoof_check),
            "enabledad" => d.bool(&at, v, &mut raw.enable_dad),
            "disableContainerInterface" => d.bool(&at, v, &mut raw.disable_container_interface),
            "portIsolation" => d.bool(&at, v, &mut raw.port_isolation),
            "dns" => decode_dns(&mut d, &at, v, &mut raw.dns),
            "args" => {
                if let Some(m) = d.object(&at, v, ARGS_TYPE) {
                    for (_, v) in fields(m, &["cni"]) {
                        let at = at.field("", "cni");
                        if let Some(m) = d.object(&at, v, "main.BridgeArgs") {
                            for (_, v) in fields(m, &["mac"]) {
                                d.string(&at.field("BridgeArgs", "mac"), v, &mut raw.args_mac);
                            }
                        }
                    }
                }
            }
            _ => {
                if let Some(m) = d.object(&at, v, RUNTIME_TYPE) {
                    for (_, v) in fields(m, &["mac"]) {
                        d.string(&at.field("", "mac"), v, &mut raw.runtime_mac);
                    }
                }
            }
        }
    }
    d.finish()?;
    Ok(raw)
}

impl BridgeConf {
    /// Decodes `conf` (skel has already checked name and version) and `CNI_ARGS`.
    pub fn load(conf: &NetConf, cni_args: &str) -> Result<BridgeConf, ConfigError> {
        let empty = Map::new();
        let obj = conf.raw.as_object().unwrap_or(&empty);
        let raw = decode(obj).map_err(|f| ConfigError::Decode(f.to_string()))?;

        if !(0..=MAX_VLAN).contains(&raw.vlan) {
            return Err(ConfigError::InvalidVlan(raw.vlan));
        }
        let trunk = match &raw.trunk {
            Some(items) => collect_trunk(items)?,
            None => Vec::new(),
        };
        if raw.vlan > 0 && !trunk.is_empty() {
            return Err(ConfigError::VlanAndTrunk);
        }
        let env_mac = args::load_known_args(cni_args, &["MAC"])
            .map_err(ConfigError::Args)?
            .into_iter()
            .find_map(|(_, v)| Some(v).filter(|v| !v.is_empty()));
        let mac = [Some(raw.runtime_mac), Some(raw.args_mac), env_mac]
            .into_iter()
            .flatten()
            .find(|m| !m.is_empty());

        Ok(BridgeConf {
            network: conf.name.clone(),
            bridge: if raw.bridge.is_empty() {
                DEFAULT_BRIDGE.to_string()
            } else {
                raw.bridge
            },
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            force_address: raw.force_address,
            ip_masq: raw.ip_masq,
            ip_masq_backend: raw.ip_masq_backend,
            mtu: u32::try_from(raw.mtu).ok().filter(|m| *m > 0),
            hairpin_mode: raw.hairpin_mode,
            promisc_mode: raw.promisc_mode,
            vlan: raw.vlan as u16,
            trunk,
            trunk_configured: raw.trunk.is_some(),
            preserve_default_vlan: raw.preserve_default_vlan,
            mac_spoof_check: raw.mac_spoof_check,
            enable_dad: raw.enable_dad,
            disable_container_interface: raw.disable_container_interface,
            port_isolation: raw.port_isolation,
            ipam_type: conf.ipam_type.clone(),
            dns: raw.dns,
            mac,
        })
    }

    pub fn is_layer3(&self) -> bool {
        self.ipam_type.is_some()
    }

    /// Upstream creates the bridge with VLAN filtering whenever `vlan` or `vlanTrunk` is set.
    pub fn vlan_filtering(&self) -> bool {
        self.vlan != 0 || self.trunk_configured
    }

    /// Checks upstream makes at the start of ADD only (DEL and CHECK accept these configs).
    pub fn validate_for_add(&self) -> Result<(), ConfigError> {
        if self.hairpin_mode && self.promisc_mode {
            return Err(ConfigError::HairpinAndPromisc);
        }
        if self.is_layer3() && self.disable_container_interface {
            return Err(ConfigError::IpamWithoutInterface);
        }
        // The kernel reads a link name up to its first NUL: "br\0x" would create (and later
        // attach containers to) a bridge named "br".
        if self.bridge.contains('\0') {
            return Err(ConfigError::BridgeNameNul(self.bridge.clone()));
        }
        Ok(())
    }
}

/// One `vlanTrunk` entry: `{id}` and/or `{minID, maxID}` (Go `*int`s: absent ≠ 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TrunkItem {
    min: Option<i64>,
    max: Option<i64>,
    id: Option<i64>,
}

/// The elements of `vlanTrunk` (Go `[]*VlanTrunk`: a `null` element is a nil pointer, which
/// upstream's expansion would dereference; it is skipped here).
fn decode_trunk(d: &mut Decoder, at: &At, items: &[Value]) -> Vec<TrunkItem> {
    let mut out = Vec::new();
    for item in items {
        let Some(obj) = d.object(at, item, "main.VlanTrunk") else {
            continue;
        };
        let mut t = TrunkItem::default();
        for (field, v) in fields(obj, &["minID", "maxID", "id"]) {
            let slot = match field {
                "minID" => &mut t.min,
                "maxID" => &mut t.max,
                _ => &mut t.id,
            };
            d.opt_int(&at.field("VlanTrunk", field), v, slot);
        }
        out.push(t);
    }
    out
}

fn valid_vid(v: i64) -> bool {
    (1..=MAX_VLAN).contains(&v)
}

/// Expands trunk entries into a sorted, de-duplicated VID list with upstream's checks.
fn collect_trunk(items: &[TrunkItem]) -> Result<Vec<u16>, ConfigError> {
    let mut vids = std::collections::BTreeSet::new();
    for item in items {
        match (item.min, item.max) {
            (Some(min), Some(max)) => {
                if !valid_vid(min) {
                    return Err(ConfigError::TrunkMin);
                }
                if !valid_vid(max) {
                    return Err(ConfigError::TrunkMax);
                }
                if max < min {
                    return Err(ConfigError::TrunkInverted);
                }
                vids.extend(min as u16..=max as u16);
            }
            (None, Some(_)) => return Err(ConfigError::TrunkMinMissing),
            (Some(_), None) => return Err(ConfigError::TrunkMaxMissing),
            (None, None) => {}
        }
        if let Some(id) = item.id {
            if !valid_vid(id) {
                return Err(ConfigError::TrunkId);
            }
            vids.insert(id as u16);
        }
    }
    Ok(vids.into_iter().collect())
}

/// CNI's `types.DNS`.
fn decode_dns(d: &mut Decoder, at: &At, v: &Value, out: &mut Dns) {
    let Some(obj) = d.object(at, v, "types.DNS") else {
        return;
    };
    for (field, v) in fields(obj, &["nameservers", "domain", "search", "options"]) {
        let at = at.field("DNS", field);
        match field {
            "nameservers" => d.strings(&at, v, &mut out.nameservers),
            "domain" => {
                let mut domain = out.domain.take().unwrap_or_default();
                d.string(&at, v, &mut domain);
                out.domain = Some(domain).filter(|s| !s.is_empty());
            }
            "search" => d.strings(&at, v, &mut out.search),
            _ => d.strings(&at, v, &mut out.options),
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

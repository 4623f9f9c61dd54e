//! The bridge plugin's configuration: every upstream key with its default, and upstream's
//! validation (same checks, same order, same messages).

use netconf::{args, CniError, Dns, NetConf};
use serde_json::{Map, Value};

use crate::godecode::{field, At, Decoder};

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

impl BridgeConf {
    /// Decodes `conf` (skel has already checked name and version) and `CNI_ARGS`.
    pub fn load(conf: &NetConf, cni_args: &str) -> Result<BridgeConf, ConfigError> {
        let empty = Map::new();
        let obj = conf.raw.as_object().unwrap_or(&empty);
        let mut d = Decoder::new(obj);
        let at = |path| At {
            strukt: "NetConf",
            path,
        };

        let bridge = d.string(field(obj, "bridge"), at("bridge"));
        let is_gateway = d.bool(field(obj, "isGateway"), at("isGateway"));
        let is_default_gateway = d.bool(field(obj, "isDefaultGateway"), at("isDefaultGateway"));
        let force_address = d.bool(field(obj, "forceAddress"), at("forceAddress"));
        let ip_masq = d.bool(field(obj, "ipMasq"), at("ipMasq"));
        let ip_masq_backend = d.string(field(obj, "ipMasqBackend"), at("ipMasqBackend"));
        let mtu = d.int(field(obj, "mtu"), at("mtu"));
        let hairpin_mode = d.bool(field(obj, "hairpinMode"), at("hairpinMode"));
        let promisc_mode = d.bool(field(obj, "promiscMode"), at("promiscMode"));
        let vlan = d.int(field(obj, "vlan"), at("vlan"));
        let trunk_items = d.array(
            field(obj, "vlanTrunk"),
            at("vlanTrunk"),
            "[]*main.VlanTrunk",
        );
        let trunk_raw = trunk_items.map(|items| decode_trunk(&mut d, items));
        let preserve_default_vlan =
            d.bool(field(obj, "preserveDefaultVlan"), at("preserveDefaultVlan"));
        let mac_spoof_check = d.bool(field(obj, "macspoofchk"), at("macspoofchk"));
        let enable_dad = d.bool(field(obj, "enabledad"), at("enabledad"));
        let disable_container_interface = d.bool(
            field(obj, "disableContainerInterface"),
            at("disableContainerInterface"),
        );
        let port_isolation = d.bool(field(obj, "portIsolation"), at("portIsolation"));
        let dns = decode_dns(&mut d, field(obj, "dns"));
        let args_mac = d
            .object(
                field(obj, "args"),
                at("args"),
                "struct { Cni main.BridgeArgs \"json:\\\"cni,omitempty\\\"\" }",
            )
            .and_then(|a| {
                let cni = d.object(
                    field(a, "cni"),
                    At {
                        strukt: "",
                        path: "args.cni",
                    },
                    "main.BridgeArgs",
                )?;
                d.string(
                    field(cni, "mac"),
                    At {
                        strukt: "BridgeArgs",
                        path: "args.cni.mac",
                    },
                )
            });
        let runtime_mac = d
            .object(
                field(obj, "runtimeConfig"),
                at("runtimeConfig"),
                "struct { Mac string \"json:\\\"mac,omitempty\\\"\" }",
            )
            .and_then(|rc| {
                d.string(
                    field(rc, "mac"),
                    At {
                        strukt: "",
                        path: "runtimeConfig.mac",
                    },
                )
            });
        d.finish().map_err(ConfigError::Decode)?;

        let vlan = vlan.unwrap_or(0);
        if !(0..=MAX_VLAN).contains(&vlan) {
            return Err(ConfigError::InvalidVlan(vlan));
        }
        let trunk = match trunk_raw {
            Some(items) => collect_trunk(&items)?,
            None => Vec::new(),
        };
        if vlan > 0 && !trunk.is_empty() {
            return Err(ConfigError::VlanAndTrunk);
        }
        let env_mac = args::load_known_args(cni_args, &["MAC"])
            .map_err(ConfigError::Args)?
            .into_iter()
            .find_map(|(_, v)| Some(v).filter(|v| !v.is_empty()));
        let mac = [runtime_mac, args_mac, env_mac]
            .into_iter()
            .flatten()
            .find(|m| !m.is_empty());

        let is_default_gateway = is_default_gateway.unwrap_or(false);
        Ok(BridgeConf {
            network: conf.name.clone(),
            bridge: bridge
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
            is_gateway: is_gateway.unwrap_or(false) || is_default_gateway,
            is_default_gateway,
            force_address: force_address.unwrap_or(false),
            ip_masq: ip_masq.unwrap_or(false),
            ip_masq_backend,
            mtu: mtu.and_then(|m| u32::try_from(m).ok()).filter(|m| *m > 0),
            hairpin_mode: hairpin_mode.unwrap_or(false),
            promisc_mode: promisc_mode.unwrap_or(false),
            vlan: vlan as u16,
            trunk,
            trunk_configured: trunk_raw_present(obj),
            // Upstream defaults this to true so configs written before the option existed
            // keep the kernel's default VLAN 1 on the port.
            preserve_default_vlan: preserve_default_vlan.unwrap_or(true),
            mac_spoof_check: mac_spoof_check.unwrap_or(false),
            enable_dad: enable_dad.unwrap_or(false),
            disable_container_interface: disable_container_interface.unwrap_or(false),
            port_isolation: port_isolation.unwrap_or(false),
            ipam_type: conf.ipam_type.clone(),
            dns,
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

fn trunk_raw_present(obj: &Map<String, Value>) -> bool {
    matches!(field(obj, "vlanTrunk"), Some(Value::Array(_)))
}

/// One `vlanTrunk` entry: `{id}` and/or `{minID, maxID}` (Go `*int`s: absent ≠ 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TrunkItem {
    min: Option<i64>,
    max: Option<i64>,
    id: Option<i64>,
}

fn decode_trunk(d: &mut Decoder, items: &[Value]) -> Vec<TrunkItem> {
    let at = |path| At {
        strukt: "VlanTrunk",
        path,
    };
    items
        .iter()
        .filter_map(|item| {
            let obj = d.object(
                Some(item).filter(|v| !v.is_null()),
                at("vlanTrunk"),
                "main.VlanTrunk",
            )?;
            Some(TrunkItem {
                min: d.int(field(obj, "minID"), at("vlanTrunk.minID")),
                max: d.int(field(obj, "maxID"), at("vlanTrunk.maxID")),
                id: d.int(field(obj, "id"), at("vlanTrunk.id")),
            })
        })
        .collect()
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

fn decode_dns(d: &mut Decoder, v: Option<&Value>) -> Dns {
    let at = |path| At {
        strukt: "DNS",
        path,
    };
    let Some(obj) = d.object(
        v,
        At {
            strukt: "NetConf",
            path: "dns",
        },
        "types.DNS",
    ) else {
        return Dns::default();
    };
    Dns {
        nameservers: d.strings(field(obj, "nameservers"), at("dns.nameservers")),
        domain: d
            .string(field(obj, "domain"), at("dns.domain"))
            .filter(|s| !s.is_empty()),
        search: d.strings(field(obj, "search"), at("dns.search")),
        options: d.strings(field(obj, "options"), at("dns.options")),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

//! The flannel plugin's own config keys (upstream `NetConf` in `flannel.go`), decoded with Go
//! `encoding/json` rules: case-insensitive keys, `null` = absent, wrong JSON kinds rejected.

use std::path::PathBuf;

use netconf::gojson::{self, fields, At, Decoder, Step};
use serde_json::{Map, Value};

use crate::error::FlannelError;

pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/flannel";
pub use crate::daemon::DEFAULT_STATUS_URL as DAEMON_STATUS_URL;

#[derive(Debug, Clone, PartialEq)]
pub struct FlannelConf {
    pub name: String,
    /// `cniVersion` as written; empty when absent (then it is not passed to the delegate).
    pub cni_version: String,
    pub subnet_file: PathBuf,
    pub data_dir: PathBuf,
    /// Base of the delegate config; `None` when absent.
    pub delegate: Option<Map<String, Value>>,
    /// Base of the delegate's `ipam`; `None` when absent.
    pub ipam: Option<Map<String, Value>>,
    pub runtime_config: Option<Map<String, Value>>,
    /// `daemonStatusURL`: where flanneld serves `/status`; `None` when set to `""` (no check).
    pub daemon_status_url: Option<String>,
    /// The URL was configured, not defaulted. Upstream flanneld serves nothing unless started
    /// with `--healthz-port`, so silence at the default address may only mean that; then
    /// STATUS relies on subnet.env alone. A configured address that does not answer is an
    /// error: the operator said the daemon would be there.
    pub daemon_status_configured: bool,
}

/// Upstream's `NetConf` fields (with the embedded `types.NetConf` ones it can hold a wrong
/// kind in), and `daemonStatusURL`.
const FIELDS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "subnetFile",
    "dataDir",
    "delegate",
    "runtimeConfig",
    "daemonStatusURL",
];

impl FlannelConf {
    pub fn parse(stdin: &[u8]) -> Result<FlannelConf, FlannelError> {
        let value: Value = serde_json::from_slice(stdin)
            .map_err(|e| FlannelError::Netconf(gojson::syntax_error_text(&e)))?;
        Self::from_value(&value).map_err(|f| FlannelError::Netconf(f.to_string()))
    }

    /// Upstream's `loadFlannelNetConf`: the defaults, then `json.Unmarshal` over them.
    fn from_value(value: &Value) -> Step<FlannelConf> {
        let (mut name, mut cni_version, mut plugin_type) =
            (String::new(), String::new(), String::new());
        let mut subnet_file = DEFAULT_SUBNET_FILE.to_owned();
        let mut data_dir = DEFAULT_DATA_DIR.to_owned();
        let (mut delegate, mut ipam, mut runtime_config) = (None, None, None);
        let mut status_url = None;
        let mut d = Decoder::default();
        if let Some(obj) = d.object(&At::top(), value, "main.NetConf") {
            for (field, v) in fields(obj, FIELDS) {
                let at = At::top().field("NetConf", field);
                match field {
                    "cniVersion" => d.string(&at, v, &mut cni_version),
                    "name" => d.string(&at, v, &mut name),
                    // Not used here, but Go's decoder rejects a non-string one all the same.
                    "type" => d.string(&at, v, &mut plugin_type),
                    "ipam" => d.any_map(&at, v, &mut ipam),
                    // An explicit "" replaces the default, exactly as Go's decoder does; the
                    // resulting `open : no such file or directory` is then at least truthful.
                    "subnetFile" => d.string(&at, v, &mut subnet_file),
                    "dataDir" => d.string(&at, v, &mut data_dir),
                    "delegate" => d.any_map(&at, v, &mut delegate),
                    "runtimeConfig" => d.any_map(&at, v, &mut runtime_config),
                    _ => d.opt_string(&at, v, &mut status_url),
                }
            }
        }
        d.finish()?;
        Ok(FlannelConf {
            name,
            cni_version,
            subnet_file: subnet_file.into(),
            data_dir: data_dir.into(),
            delegate,
            ipam,
            runtime_config,
            daemon_status_configured: matches!(&status_url, Some(u) if !u.is_empty()),
            daemon_status_url: match status_url {
                None => Some(DAEMON_STATUS_URL.to_owned()),
                Some(url) if url.is_empty() => None,
                Some(url) => Some(url),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_apply_when_keys_are_absent_or_null() {
        let c =
            FlannelConf::parse(br#"{"name":"cbr0","type":"flannel","subnetFile":null}"#).unwrap();
        assert_eq!(c.subnet_file, PathBuf::from(DEFAULT_SUBNET_FILE));
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.cni_version, "");
        assert!(c.delegate.is_none() && c.ipam.is_none() && c.runtime_config.is_none());
        assert_eq!(c.daemon_status_url.as_deref(), Some(DAEMON_STATUS_URL));
        let off = FlannelConf::parse(br#"{"name":"n","daemonStatusURL":""}"#).unwrap();
        assert_eq!(off.daemon_status_url, None);
        let custom =
            FlannelConf::parse(br#"{"name":"n","daemonstatusurl":"http://10.0.0.1:9/status"}"#)
                .unwrap();
        assert_eq!(
            custom.daemon_status_url.as_deref(),
            Some("http://10.0.0.1:9/status")
        );
    }

    #[test]
    fn keys_match_case_insensitively() {
        let c = FlannelConf::parse(
            br#"{"NAME":"n","CNIVersion":"0.3.1","SubnetFile":"/x","DATADIR":"/d","Delegate":{"hairpinMode":true}}"#,
        )
        .unwrap();
        assert_eq!(c.name, "n");
        assert_eq!(c.cni_version, "0.3.1");
        assert_eq!(c.subnet_file, PathBuf::from("/x"));
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert_eq!(c.delegate.unwrap()["hairpinMode"], json!(true));
    }

    #[test]
    fn wrong_kinds_are_go_type_errors() {
        let err = FlannelConf::parse(br#"{"name":"n","delegate":5}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load netconf: json: cannot unmarshal number into Go struct field NetConf.delegate of type map[string]interface {}"
        );
        let err = FlannelConf::parse(br#"{"name":"n","subnetFile":["a"]}"#).unwrap_err();
        assert!(err.to_string().ends_with(
            "cannot unmarshal array into Go struct field NetConf.subnetFile of type string"
        ));
        let err = FlannelConf::parse(br#"{"name":"n","type":1}"#).unwrap_err();
        assert!(
            err.to_string().contains("NetConf.type of type string"),
            "{err}"
        );
    }

    #[test]
    fn truncated_input_reads_like_go() {
        let err = FlannelConf::parse(br#"{"name":"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load netconf: unexpected end of JSON input"
        );
    }

    #[test]
    fn decoding_follows_the_document_like_go() {
        let err = FlannelConf::parse(br#"{"name":"n","subnetFile":5,"type":1}"#).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("NetConf.subnetFile of type string"),
            "{err}"
        );
        let c = FlannelConf::parse(br#"{"name":"n","delegate":{"type":"bridge"},"Delegate":null}"#)
            .unwrap();
        assert_eq!(c.delegate, None, "null resets a map");
        let err = FlannelConf::parse(b"5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to load netconf: json: cannot unmarshal number into Go value of type main.NetConf"
        );
    }
}

//! The flannel plugin's own config keys (upstream `NetConf` in `flannel.go`), decoded with Go
//! `encoding/json` rules: case-insensitive keys, `null` = absent, wrong JSON kinds rejected.

use std::path::PathBuf;

use netconf::gojson::{self, TypeError};
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

fn type_error(v: &Value, field: &str, go_type: &str) -> String {
    TypeError::new(v, go_type).at("NetConf", field).to_string()
}

fn string_key(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match gojson::get_folded(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_error(other, key, "string")),
    }
}

fn object_key(obj: &Map<String, Value>, key: &str) -> Result<Option<Map<String, Value>>, String> {
    match gojson::get_folded(obj, key) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(other) => Err(type_error(other, key, "map[string]interface {}")),
    }
}

impl FlannelConf {
    pub fn parse(stdin: &[u8]) -> Result<FlannelConf, FlannelError> {
        let value: Value = serde_json::from_slice(stdin)
            .map_err(|e| FlannelError::Netconf(gojson::syntax_error_text(&e)))?;
        Self::from_value(&value).map_err(FlannelError::Netconf)
    }

    fn from_value(value: &Value) -> Result<FlannelConf, String> {
        let empty = Map::new();
        let obj = match value {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => return Err(TypeError::new(other, "main.NetConf").to_string()),
        };
        // `type` is not used here, but Go's decoder rejects a non-string one all the same.
        string_key(obj, "type")?;
        let status_url = string_key(obj, "daemonStatusURL")?;
        // An explicit empty string replaces the default, exactly as Go's decoder does; the
        // resulting `open : no such file or directory` is then at least truthful.
        Ok(FlannelConf {
            name: string_key(obj, "name")?.unwrap_or_default(),
            cni_version: string_key(obj, "cniVersion")?.unwrap_or_default(),
            subnet_file: string_key(obj, "subnetFile")?
                .unwrap_or_else(|| DEFAULT_SUBNET_FILE.into())
                .into(),
            data_dir: string_key(obj, "dataDir")?
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into())
                .into(),
            delegate: object_key(obj, "delegate")?,
            ipam: object_key(obj, "ipam")?,
            runtime_config: object_key(obj, "runtimeConfig")?,
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
}

//! `CNI_ARGS` as upstream's host-local reads it: `K=V` pairs separated by `;`, keys matched
//! case-sensitively against the Go field names `IgnoreUnknown` and `IP`; anything else is an
//! error unless `IgnoreUnknown` is true somewhere in the list.

use std::net::IpAddr;

use netconf::gofmt::quote;

use crate::error::Error;
use crate::ip::{self, Cidr};

/// The `IP` requested through `CNI_ARGS`, if any (a prefix length, if given, is ignored).
pub fn requested_ip(cni_args: &str) -> Result<Option<IpAddr>, Error> {
    if cni_args.is_empty() {
        return Ok(None);
    }
    let mut ip = None;
    let mut ignore_unknown = false;
    let mut unknown: Vec<&str> = Vec::new();
    for pair in cni_args.split(';') {
        let mut parts = pair.split('=');
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Args(format!("ARGS: invalid pair {}", quote(pair))));
        };
        let bad_value = |msg: String| {
            Error::Args(format!(
                "ARGS: error parsing value of pair {}: {msg}",
                quote(pair)
            ))
        };
        match key {
            "IgnoreUnknown" => {
                ignore_unknown = match value.to_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    other => return Err(bad_value(format!("boolean unmarshal error: invalid input {other}"))),
                }
            }
            "IP" => ip = parse_ip_value(value).map_err(bad_value)?,
            // The embedded struct is a field too, but not one that can be set from text.
            "CommonArgs" => {
                return Err(Error::Args(
                    "ARGS: cannot unmarshal into field 'CommonArgs' - type '*types.CommonArgs' does not implement encoding.TextUnmarshaler"
                        .into(),
                ))
            }
            _ => unknown.push(pair),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        let quoted: Vec<String> = unknown.iter().map(|p| quote(p)).collect();
        return Err(Error::Args(format!(
            "ARGS: unknown args [{}]",
            quoted.join(" ")
        )));
    }
    Ok(ip)
}

/// The plugins' `ip.IP` text form: empty means unset, `addr` or `addr/len`.
fn parse_ip_value(value: &str) -> Result<Option<IpAddr>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    let parsed = if value.contains('/') {
        Cidr::parse(value).map(|c| ip::canonical(c.addr))
    } else {
        ip::parse_canonical(value)
    };
    parsed
        .map(Some)
        .ok_or_else(|| format!("invalid IP address {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        requested_ip(s).unwrap_err().to_string()
    }

    #[test]
    fn accepts_ip_with_or_without_prefix() {
        assert_eq!(requested_ip("").unwrap(), None);
        assert_eq!(
            requested_ip("IP=10.1.0.5").unwrap(),
            Some("10.1.0.5".parse().unwrap())
        );
        assert_eq!(
            requested_ip("IP=10.1.0.5/24").unwrap(),
            Some("10.1.0.5".parse().unwrap())
        );
        assert_eq!(
            requested_ip("IP=::ffff:10.1.0.5").unwrap(),
            Some("10.1.0.5".parse().unwrap())
        );
        assert_eq!(requested_ip("IP=").unwrap(), None);
    }

    #[test]
    fn unknown_keys_need_ignore_unknown_anywhere() {
        assert_eq!(
            err("IP=1.2.3.4;FOO=1;BAR=2"),
            r#"ARGS: unknown args ["FOO=1" "BAR=2"]"#
        );
        assert_eq!(
            requested_ip("K8S_POD_NAME=x;IgnoreUnknown=1").unwrap(),
            None
        );
        assert_eq!(requested_ip("IgnoreUnknown=True;ip=1.2.3.4").unwrap(), None);
        assert_eq!(err("IgnoreUnknown=0;X=1"), r#"ARGS: unknown args ["X=1"]"#);
    }

    #[test]
    fn malformed_pairs_and_values() {
        assert_eq!(
            err("IP=x"),
            r#"ARGS: error parsing value of pair "IP=x": invalid IP address x"#
        );
        assert_eq!(err("IP"), r#"ARGS: invalid pair "IP""#);
        assert_eq!(err("A=b=c"), r#"ARGS: invalid pair "A=b=c""#);
        assert_eq!(
            err("IgnoreUnknown=Yes"),
            r#"ARGS: error parsing value of pair "IgnoreUnknown=Yes": boolean unmarshal error: invalid input yes"#
        );
        assert!(err("CommonArgs=1").contains("does not implement encoding.TextUnmarshaler"));
    }
}

//! `CNI_ARGS` (`K=V;K2=V2`) parsing with the rules of Go's `types.LoadArgs`.

use crate::error::{codes, CniError};
use crate::gofmt;

fn args_err(msg: String) -> CniError {
    CniError::new(codes::INTERNAL, msg)
}

/// Splits `CNI_ARGS` into pairs. Every `;`-separated piece must contain exactly one `=`
/// (an empty key or value is fine); otherwise `ARGS: invalid pair "..."`. Empty input => none.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(';')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !v.contains('=') => Ok((k.to_owned(), v.to_owned())),
            _ => Err(args_err(format!(
                "ARGS: invalid pair {}",
                gofmt::quote(pair)
            ))),
        })
        .collect()
}

/// Go's `UnmarshallableBool` text form, used by `IgnoreUnknown`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "true" | "True" => Ok(true),
        "0" | "false" | "False" => Ok(false),
        _ => Err(format!("boolean unmarshal error: invalid input {s}")),
    }
}

/// Loads `CNI_ARGS` into a typed container the way Go's `LoadArgs` does.
///
/// `set(key, value)` is called for each pair in order; it returns `None` when the container has
/// no field named exactly `key` (case-sensitive, Go field names such as `IP`, `MAC`), or the
/// outcome of parsing `value` into it. `IgnoreUnknown` is always a known field. A parse failure
/// stops at once with `ARGS: error parsing value of pair "K=V": <why>`; unknown pairs are
/// collected and rejected at the end with `ARGS: unknown args ["K=V" ...]` unless the last
/// `IgnoreUnknown` was 1/true/True.
pub fn load_args<F>(args: &str, mut set: F) -> Result<(), CniError>
where
    F: FnMut(&str, &str) -> Option<Result<(), String>>,
{
    let mut ignore_unknown = false;
    let mut unknown = Vec::new();
    for (key, value) in parse_cni_args(args)? {
        let outcome = if key == "IgnoreUnknown" {
            Some(parse_go_bool(&value).map(|b| ignore_unknown = b))
        } else {
            set(&key, &value)
        };
        match outcome {
            None => unknown.push(format!("{key}={value}")),
            Some(Ok(())) => {}
            Some(Err(why)) => {
                return Err(args_err(format!(
                    "ARGS: error parsing value of pair {}: {why}",
                    gofmt::quote(&format!("{key}={value}"))
                )))
            }
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(args_err(format!(
            "ARGS: unknown args {}",
            gofmt::quote_list(&unknown)
        )));
    }
    Ok(())
}

/// [`load_args`] for string-valued fields: returns the pairs whose key is in `known`, last
/// value winning per key, in first-seen order.
pub fn load_known_args(args: &str, known: &[&str]) -> Result<Vec<(String, String)>, CniError> {
    let mut out: Vec<(String, String)> = Vec::new();
    load_args(args, |k, v| {
        if !known.contains(&k) {
            return None;
        }
        match out.iter_mut().find(|(kk, _)| kk == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => out.push((k.to_owned(), v.to_owned())),
        }
        Some(Ok(()))
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn splits_pairs() {
        assert_eq!(parse_cni_args("").unwrap(), vec![]);
        assert_eq!(
            parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web-0;E=").unwrap(),
            pairs(&[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web-0"), ("E", "")])
        );
        assert_eq!(parse_cni_args("=v").unwrap(), pairs(&[("", "v")]));
    }

    #[test]
    fn rejects_pairs_without_exactly_one_equals() {
        for (input, bad) in [("A=1;B", "B"), ("A=1=2", "A=1=2"), ("A=1;", ""), (";", "")] {
            let e = parse_cni_args(input).unwrap_err();
            assert_eq!(e.msg, format!("ARGS: invalid pair \"{bad}\""), "{input}");
        }
    }

    #[derive(Default, Debug, PartialEq)]
    struct BridgeArgs {
        ip: Option<IpAddr>,
        mac: Option<String>,
    }

    fn load_bridge(s: &str) -> Result<BridgeArgs, CniError> {
        let mut a = BridgeArgs::default();
        load_args(s, |k, v| match k {
            "IP" => Some(
                v.parse()
                    .map(|ip| a.ip = Some(ip))
                    .map_err(|_| format!("invalid IP address: {v}")),
            ),
            "MAC" => {
                a.mac = Some(v.to_owned());
                Some(Ok(()))
            }
            _ => None,
        })?;
        Ok(a)
    }

    #[test]
    fn typed_loading_like_go() {
        let a = load_bridge("IP=10.0.0.5;MAC=aa:bb:cc:dd:ee:ff").unwrap();
        assert_eq!(a.ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(a.mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(load_bridge("").unwrap(), BridgeArgs::default());

        let e = load_bridge("K8S_POD_NAME=a;ip=1.2.3.4").unwrap_err();
        assert_eq!(
            e.msg,
            r#"ARGS: unknown args ["K8S_POD_NAME=a" "ip=1.2.3.4"]"#
        );
        for ok in ["1", "true", "True"] {
            assert!(load_bridge(&format!("K8S_POD_NAME=a;IgnoreUnknown={ok}")).is_ok());
        }
        let e = load_bridge("IgnoreUnknown=1;IgnoreUnknown=0;X=1").unwrap_err();
        assert!(
            e.msg.starts_with("ARGS: unknown args"),
            "the last IgnoreUnknown wins"
        );
        let e = load_bridge("IgnoreUnknown=yes").unwrap_err();
        assert_eq!(
            e.msg,
            r#"ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes"#
        );
        let e = load_bridge("X=1;IP=nope").unwrap_err();
        assert_eq!(
            e.msg,
            r#"ARGS: error parsing value of pair "IP=nope": invalid IP address: nope"#
        );
    }

    #[test]
    fn known_string_args() {
        let got = load_known_args(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_NAME=q;Z=1",
            &["K8S_POD_NAMESPACE", "K8S_POD_NAME"],
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[("K8S_POD_NAMESPACE", "ns"), ("K8S_POD_NAME", "q")])
        );
        assert!(load_known_args("Z=1", &["A"]).is_err());
    }
}

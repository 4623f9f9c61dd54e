//! The lease records as etcd holds them, and the invariants a lease storm must leave:
//! no two records overlap, one record per node, and each node holds what etcd says.
//!
//! Listed with `etcdctl`, not with the code under test, so a bug in the daemon's decoding
//! cannot hide a bug in its allocation.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use base64::Engine as _;
use flanneld::subnet::{parse_subnet_key, LeaseAttrs};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

use conformance::etcd::{Etcd, EtcdError};

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("etcdctl listing: {0}")]
    Decode(String),
}

/// One lease record: its key's subnets and the PublicIP in its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub subnet: Option<Ipv4Net>,
    pub ipv6_subnet: Option<Ipv6Net>,
    pub public_ip: Option<Ipv4Addr>,
}

/// What [`check`] found: how many records, and every violated invariant in words.
#[derive(Debug, Clone, Default)]
pub struct Check {
    pub records: usize,
    /// Pairs of records whose IPv4 subnets overlap (the same subnet counts).
    pub overlapping: usize,
    /// Pairs of records whose IPv6 subnets overlap.
    pub overlapping_v6: usize,
    pub problems: Vec<String>,
}

/// What a node believes it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub public_ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    pub ipv6_subnet: Option<Ipv6Net>,
}

/// Every record under `<prefix>/subnets/`.
pub fn list(etcd: &Etcd, prefix: &str) -> Result<Vec<Record>, RecordsError> {
    let out = etcd.etcdctl(&[
        "get",
        "--prefix",
        &format!("{prefix}/subnets/"),
        "-w",
        "json",
    ])?;
    parse_listing(&out)
}

fn parse_listing(json: &str) -> Result<Vec<Record>, RecordsError> {
    let v: Value = serde_json::from_str(json).map_err(|e| RecordsError::Decode(e.to_string()))?;
    let b64 = |field: &Value| -> Result<Vec<u8>, RecordsError> {
        base64::engine::general_purpose::STANDARD
            .decode(field.as_str().unwrap_or(""))
            .map_err(|e| RecordsError::Decode(e.to_string()))
    };
    let mut out = Vec::new();
    for kv in v["kvs"].as_array().into_iter().flatten() {
        let key = String::from_utf8_lossy(&b64(&kv["key"])?).into_owned();
        let value = b64(&kv["value"])?;
        let parsed = parse_subnet_key(&key);
        out.push(Record {
            subnet: parsed.map(|(s, _)| s),
            ipv6_subnet: parsed.and_then(|(_, s6)| s6),
            public_ip: LeaseAttrs::from_json(&value).ok().map(|a| a.public_ip),
            key,
        });
    }
    Ok(out)
}

/// Pairs of overlapping networks among `nets` (network address, last address, name), each
/// reported in `problems`.
fn overlaps(mut nets: Vec<(u128, u128, &str)>, family: &str, problems: &mut Vec<String>) -> usize {
    // Sorted by first address, a network can only overlap ones that start inside it, so
    // scanning forward while they do finds every overlapping pair.
    nets.sort_by_key(|&(first, last, _)| (first, std::cmp::Reverse(last)));
    let mut count = 0;
    for (i, (_, last_a, key_a)) in nets.iter().enumerate() {
        for (first_b, _, key_b) in &nets[i + 1..] {
            if first_b > last_a {
                break;
            }
            count += 1;
            problems.push(format!("{key_a} overlaps {key_b} ({family})"));
        }
    }
    count
}

/// Checks the listing against what each node reported it holds.
pub fn check(records: &[Record], held: &[Held]) -> Check {
    let mut c = Check {
        records: records.len(),
        ..Check::default()
    };
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut by_ip: HashMap<Ipv4Addr, Vec<(Ipv4Net, Option<Ipv6Net>)>> = HashMap::new();
    for r in records {
        match (r.subnet, r.public_ip) {
            (Some(s), Some(ip)) => {
                if s.prefix_len() > 0 {
                    let span = (
                        u32::from(s.network()).into(),
                        u32::from(s.broadcast()).into(),
                    );
                    v4.push((span.0, span.1, r.key.as_str()));
                }
                if let Some(s6) = r.ipv6_subnet {
                    v6.push((s6.network().into(), s6.broadcast().into(), r.key.as_str()));
                }
                by_ip.entry(ip).or_default().push((s, r.ipv6_subnet));
            }
            _ => c.problems.push(format!("undecodable record {}", r.key)),
        }
    }
    c.overlapping = overlaps(v4, "IPv4", &mut c.problems);
    c.overlapping_v6 = overlaps(v6, "IPv6", &mut c.problems);
    for h in held {
        let (ip, mine) = (h.public_ip, (h.subnet, h.ipv6_subnet));
        match by_ip.get(&ip).map(Vec::as_slice) {
            Some([only]) if *only == mine => {}
            Some([only]) => c.problems.push(format!(
                "{ip} believes it holds {mine:?}, etcd says {only:?}"
            )),
            Some(many) if !many.is_empty() => c
                .problems
                .push(format!("{ip} has {} records: {many:?}", many.len())),
            _ => c
                .problems
                .push(format!("{ip} holds {mine:?} but has no record")),
        }
    }
    if held.len() != records.len() {
        c.problems.push(format!(
            "{} nodes hold leases but etcd has {} records",
            held.len(),
            records.len()
        ));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(subnet: &str, ip: &str) -> Record {
        let s: Ipv4Net = subnet.parse().unwrap();
        Record {
            key: format!("/p/subnets/{}-{}", s.network(), s.prefix_len()),
            subnet: Some(s),
            ipv6_subnet: None,
            public_ip: Some(ip.parse().unwrap()),
        }
    }

    fn held(pairs: &[(&str, &str)]) -> Vec<Held> {
        pairs
            .iter()
            .map(|(ip, s)| Held {
                public_ip: ip.parse().unwrap(),
                subnet: s.parse().unwrap(),
                ipv6_subnet: None,
            })
            .collect()
    }

    #[test]
    fn a_shared_subnet_of_either_family_is_reported() {
        let dual = |s: &str, s6: &str, ip: &str| Record {
            ipv6_subnet: Some(s6.parse().unwrap()),
            ..rec(s, ip)
        };
        let r = [
            dual("10.244.53.0/24", "fc00:10:0:2b::/64", "172.16.0.1"),
            dual("10.244.53.0/24", "fc00:10:0:40::/64", "172.16.0.2"),
            dual("10.244.54.0/24", "fc00:10:0:40::/64", "172.16.0.3"),
        ];
        let c = check(&r, &[]);
        assert_eq!(
            (c.overlapping, c.overlapping_v6),
            (1, 1),
            "{:?}",
            c.problems
        );
        assert!(c.problems.iter().any(|p| p.ends_with("(IPv6)")));
    }

    #[test]
    fn a_clean_listing_has_no_problems() {
        let r = [
            rec("10.0.1.0/24", "172.16.0.1"),
            rec("10.0.2.0/24", "172.16.0.2"),
        ];
        let c = check(
            &r,
            &held(&[("172.16.0.1", "10.0.1.0/24"), ("172.16.0.2", "10.0.2.0/24")]),
        );
        assert_eq!((c.records, c.overlapping), (2, 0));
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }

    #[test]
    fn overlaps_double_records_and_disagreements_are_all_reported() {
        let r = [
            rec("10.0.0.0/16", "172.16.0.1"),
            rec("10.0.3.0/24", "172.16.0.2"),
            rec("10.0.4.0/24", "172.16.0.2"),
        ];
        let c = check(
            &r,
            &held(&[("172.16.0.1", "10.0.1.0/24"), ("172.16.0.2", "10.0.3.0/24")]),
        );
        assert_eq!(c.overlapping, 2, "{:?}", c.problems);
        assert!(c
            .problems
            .iter()
            .any(|p| p.contains("believes it holds (10.0.1.0/24, None)")));
        assert!(c.problems.iter().any(|p| p.contains("has 2 records")));
        assert!(c
            .problems
            .iter()
            .any(|p| p.contains("2 nodes hold leases but etcd has 3")));
    }

    #[test]
    fn decodes_an_etcdctl_json_listing() {
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let json = format!(
            r#"{{"header":{{}},"kvs":[{{"key":"{}","value":"{}"}},{{"key":"{}","value":"{}"}}]}}"#,
            b("/p/subnets/10.0.7.0-24"),
            b(r#"{"PublicIP":"172.16.0.9","BackendType":"vxlan"}"#),
            b("/p/subnets/junk"),
            b("not json"),
        );
        let r = parse_listing(&json).unwrap();
        assert_eq!(r[0].subnet, Some("10.0.7.0/24".parse().unwrap()));
        assert_eq!(r[0].public_ip, Some("172.16.0.9".parse().unwrap()));
        assert_eq!((r[1].subnet, r[1].public_ip), (None, None));
        let c = check(&r, &[]);
        assert!(c
            .problems
            .iter()
            .any(|p| p.contains("undecodable record /p/subnets/junk")));
    }
}

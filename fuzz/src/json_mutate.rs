//! Structure-aware mutation for JSON inputs: change one node of the parsed document and print
//! it again. Byte mutations almost always break JSON syntax, so without this the decoders
//! behind the syntax check (config fields, ranges, port mappings) would rarely be reached.

use fastrand::Rng;
use serde_json::{Map, Number, Value};

const STRINGS: &[&str] = &[
    "",
    "1.0.0",
    "0.3.1",
    "0.4.0",
    "1.1.0",
    "host-local",
    "bridge",
    "flannel",
    "portmap",
    "vxlan",
    "host-gw",
    "udp",
    "tcp",
    "sctp",
    "10.1.0.0/24",
    "10.1.0.5",
    "10.1.0.300",
    "10.1.0.0/33",
    "0.0.0.0/0",
    "::/0",
    "fd00::/64",
    "fd00::5",
    "::ffff:10.1.0.5",
    "aa:bb:cc:dd:ee:ff",
    "zz:zz",
    "eth0",
    "averyveryverylongname",
    "../../etc/passwd",
    "/tmp/x",
    "a\u{0}b",
    "\u{212a}",
    "true",
    "-1",
    "nftables",
    "iptables",
];

fn number(rng: &mut Rng) -> Value {
    match rng.u8(0..10) {
        0 => Value::from(-1),
        1 => Value::from(0),
        2 => Value::from(65536),
        3 => Value::from(4294967296u64),
        4 => Value::from(u64::MAX),
        5 => Value::from(i64::MIN),
        6 => Number::from_f64(1.5).map_or(Value::Null, Value::Number),
        7 => Number::from_f64(1e300).map_or(Value::Null, Value::Number),
        _ => Value::from(rng.i64(-5..5000)),
    }
}

fn scalar(rng: &mut Rng) -> Value {
    match rng.u8(0..9) {
        0..=2 => Value::from(STRINGS[rng.usize(..STRINGS.len())]),
        3 | 4 => number(rng),
        5 => Value::Bool(rng.bool()),
        6 => Value::Null,
        7 => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    }
}

/// The key names a target's dictionary holds as `"key":` tokens.
fn keys(dict: &[&[u8]]) -> Vec<String> {
    dict.iter()
        .filter_map(|t| std::str::from_utf8(t).ok())
        .filter_map(|t| t.strip_prefix('"')?.strip_suffix("\":").map(str::to_owned))
        .collect()
}

/// Mutates `data` in place when it is a JSON document; false (untouched) otherwise.
pub fn mutate_json(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&[u8]]) -> bool {
    let Ok(mut v) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    let keys = keys(dict);
    for _ in 0..rng.usize(1..=3) {
        mutate_node(rng, &mut v, &keys);
    }
    *data = serde_json::to_vec(&v).expect("a Value always serializes");
    true
}

fn mutate_node(rng: &mut Rng, v: &mut Value, keys: &[String]) {
    // Descend to a random node: deeper nodes are reached with decreasing probability.
    let descend = rng.u8(0..3) != 0;
    match v {
        Value::Object(m) if descend && !m.is_empty() => {
            let i = rng.usize(..m.len());
            if let Some((_, child)) = m.iter_mut().nth(i) {
                return mutate_node(rng, child, keys);
            }
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.usize(..a.len());
            return mutate_node(rng, &mut a[i], keys);
        }
        _ => {}
    }
    match v {
        Value::Object(m) if rng.bool() => match rng.u8(0..4) {
            0 if !m.is_empty() => {
                let i = rng.usize(..m.len());
                let k = m.keys().nth(i).cloned().unwrap_or_default();
                m.shift_remove(&k);
            }
            1 if !m.is_empty() => {
                // Go matches keys case-insensitively: a case variant competes with the key.
                let i = rng.usize(..m.len());
                let (k, val) = m
                    .iter()
                    .nth(i)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap();
                m.insert(k.to_uppercase(), val);
            }
            _ => {
                let k = if keys.is_empty() || rng.u8(0..4) == 0 {
                    STRINGS[rng.usize(..STRINGS.len())].to_string()
                } else {
                    keys[rng.usize(..keys.len())].clone()
                };
                let val = scalar(rng);
                m.insert(k, val);
            }
        },
        Value::Array(a) if rng.bool() => {
            if !a.is_empty() && rng.bool() {
                let i = rng.usize(..a.len());
                if rng.bool() {
                    a.remove(i);
                } else {
                    let dup = a[i].clone();
                    a.push(dup);
                }
            } else {
                a.push(scalar(rng));
            }
        }
        _ => {
            *v = match rng.u8(0..6) {
                0 => Value::Array(vec![v.take()]),
                1 => {
                    let mut m = Map::new();
                    if !keys.is_empty() {
                        m.insert(keys[rng.usize(..keys.len())].clone(), v.take());
                    }
                    Value::Object(m)
                }
                _ => scalar(rng),
            };
        }
    }
}

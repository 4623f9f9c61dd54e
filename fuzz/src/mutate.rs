//! Byte- and token-level mutations, in the spirit of libFuzzer's default mutators.

use fastrand::Rng;

/// Inputs never grow past this; large enough for the deep-nesting seeds.
pub const MAX_LEN: usize = 256 * 1024;

/// Bytes that change how a JSON, env or flag parser branches.
const SPECIAL: &[u8] = b"\0\"\\{}[]:,.-+/=;\n\r\t eE0123456789abcfnrtux";

/// Tokens every target finds interesting, on top of its own dictionary.
const COMMON: &[&[u8]] = &[
    b"null",
    b"true",
    b"false",
    b"{}",
    b"[]",
    b"\"\"",
    b"-1",
    b"0",
    b"1e400",
    b"-0",
    b"18446744073709551616",
    b"9223372036854775807",
    b"4294967296",
    b"65536",
    b"\"\\u0000\"",
    b"\\ud800",
    b"../",
    b"$(id)",
    b"`x`;|&",
    b"/24",
    b"/33",
    b"/129",
    b"255.255.255.255",
    b"::",
    b"ffff::1",
];

/// Applies 1..=6 random mutations to `data` in place.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&[u8]], others: &[Vec<u8>]) {
    // Half the time a JSON input gets a structural change only, so it stays valid JSON.
    if rng.bool() && crate::json_mutate::mutate_json(rng, data, dict) {
        return;
    }
    for _ in 0..rng.usize(1..=6) {
        mutate_once(rng, data, dict, others);
    }
    data.truncate(MAX_LEN);
}

fn token<'a>(rng: &mut Rng, dict: &[&'a [u8]]) -> &'a [u8] {
    if !dict.is_empty() && rng.bool() {
        dict[rng.usize(..dict.len())]
    } else {
        COMMON[rng.usize(..COMMON.len())]
    }
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&[u8]], others: &[Vec<u8>]) {
    let len = data.len();
    match rng.u8(0..11) {
        0 if len > 0 => {
            let i = rng.usize(..len);
            data[i] ^= 1 << rng.u8(0..8);
        }
        1 if len > 0 => {
            let i = rng.usize(..len);
            data[i] = SPECIAL[rng.usize(..SPECIAL.len())];
        }
        2 => {
            let at = rng.usize(..=len);
            let n = rng.usize(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            data.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.usize(..len);
            let n = rng.usize(1..=(len - at).min(32));
            data.drain(at..at + n);
        }
        4 if len > 0 => {
            let at = rng.usize(..len);
            let n = rng.usize(1..=(len - at).min(64));
            let copy = data[at..at + n].to_vec();
            let to = rng.usize(..=len);
            data.splice(to..to, copy);
        }
        5 | 6 => {
            let at = rng.usize(..=len);
            let t = token(rng, dict).to_vec();
            data.splice(at..at, t);
        }
        7 if len > 0 => {
            // Replace a run of bytes with a token: keeps the surrounding syntax intact more
            // often than an insertion does.
            let at = rng.usize(..len);
            let n = rng.usize(1..=(len - at).min(16));
            let t = token(rng, dict).to_vec();
            data.splice(at..at + n, t);
        }
        8 if !others.is_empty() => {
            let other = &others[rng.usize(..others.len())];
            if !other.is_empty() {
                let from = rng.usize(..other.len());
                let n = rng.usize(1..=(other.len() - from).min(256));
                let at = rng.usize(..=len);
                data.splice(at..at, other[from..from + n].iter().copied());
            }
        }
        9 if len > 0 => data.truncate(rng.usize(..len)),
        _ => {
            // Repeat a token many times: long strings, deep nesting, huge numbers.
            let t = token(rng, dict);
            let times = rng.usize(2..=200);
            let at = rng.usize(..=len);
            let rep: Vec<u8> = t.iter().copied().cycle().take(t.len() * times).collect();
            data.splice(at..at, rep);
        }
    }
}

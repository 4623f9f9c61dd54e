//! The fuzz targets: every parser of the project and the CNI process edge.
//!
//! A target's `exec` returns `Ok(outcome)` (a short label of what happened, which steers the
//! corpus) or `Err(what)` when an invariant broke; panics are caught by the engine.

mod cni_edge;
mod daemon;
mod netconf_parsers;
mod plugin_configs;

use std::fmt::Display;

pub struct Target {
    pub name: &'static str,
    pub seeds: fn() -> Vec<Vec<u8>>,
    pub dict: &'static [&'static [u8]],
    pub exec: fn(&[u8]) -> Result<String, String>,
}

/// Every target, in the order `scripts/fuzz.sh` reports them.
pub fn all() -> Vec<Target> {
    let mut v = netconf_parsers::targets();
    v.extend(plugin_configs::targets());
    v.extend(daemon::targets());
    v.extend(cni_edge::targets());
    v
}

pub fn find(name: &str) -> Option<Target> {
    all().into_iter().find(|t| t.name == name)
}

/// Keys, values and syntax shared by the JSON targets.
pub const JSON_DICT: &[&[u8]] = &[
    b"\"cniVersion\":",
    b"\"name\":",
    b"\"type\":",
    b"\"ipam\":",
    b"\"plugins\":",
    b"\"prevResult\":",
    b"\"runtimeConfig\":",
    b"\"args\":",
    b"\"dns\":",
    b"\"ips\":",
    b"\"routes\":",
    b"\"interfaces\":",
    b"\"address\":",
    b"\"gateway\":",
    b"\"interface\":",
    b"\"ranges\":",
    b"\"subnet\":",
    b"\"rangeStart\":",
    b"\"rangeEnd\":",
    b"\"dataDir\":",
    b"\"delegate\":",
    b"\"Network\":",
    b"\"Backend\":",
    b"\"SubnetLen\":",
    b"\"EnableIPv6\":",
    b"\"IPv6Network\":",
    b"\"portMappings\":",
    b"\"hostPort\":",
    b"\"vlanTrunk\":",
    b"\"mtu\":",
    b"\"1.1.0\"",
    b"\"0.1.0\"",
    b"\"0.3.1\"",
    b"\"0.4.0\"",
    b"\"9.9.9\"",
    b"\"10.244.0.0/16\"",
    b"\"10.1.2.3/24\"",
    b"\"fd00::/64\"",
    b"\"0.0.0.0/0\"",
    b",",
    b":",
    b"{\"",
    b"\"}",
];

/// `n` levels of `[`; and `{"a":` nesting, both closed properly: parsers must refuse the
/// depth, not overflow the stack.
pub fn nested(n: usize) -> Vec<Vec<u8>> {
    let arrays = [vec![b'['; n], vec![b']'; n]].concat();
    let mut objects = b"{\"a\":".repeat(n);
    objects.extend(b"1");
    objects.extend(vec![b'}'; n]);
    vec![arrays, objects]
}

/// An outcome label from a result: the success label, or the error text cut short (the error
/// kind is what matters for steering, not the value that triggered it).
pub fn label<T, E: Display>(ok: &str, r: &Result<T, E>) -> String {
    match r {
        Ok(_) => ok.to_string(),
        Err(e) => {
            let text = e.to_string();
            let cut: String = text
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .take(48)
                .collect();
            format!("err:{cut}")
        }
    }
}

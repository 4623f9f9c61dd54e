//! The CNI process edge in-process: `skel::run_with` with arbitrary environment and stdin,
//! dispatching to a probe plugin that runs every plugin's real config decoder and then
//! stops at the netns check, so nothing outside the process is ever touched.

use std::path::PathBuf;
use std::sync::OnceLock;

use flannel_cni::FlannelConf;
use netconf::{codes, CniError, CniResult};
use portmap_cni::PortMapConf;
use serde_json::Value;
use skel::{Plugin, Request};

use super::netconf_parsers::env_lookup;
use super::{label, nested, Target};
use bridge_cni::config::BridgeConf;

pub fn targets() -> Vec<Target> {
    vec![Target {
        name: "cni_skel_entry",
        seeds,
        dict: EDGE_DICT,
        exec: edge,
    }]
}

/// A regular file standing in for `CNI_NETNS`: opening it as a namespace must fail.
fn fake_netns() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let p = std::env::temp_dir().join(format!("flannel-rs-fuzz-netns-{}", std::process::id()));
        std::fs::write(&p, b"not a namespace").expect("temp file for CNI_NETNS");
        p
    })
}

const EDGE_DICT: &[&[u8]] = &[
    b"CNI_COMMAND=ADD\n",
    b"CNI_COMMAND=DEL\n",
    b"CNI_COMMAND=CHECK\n",
    b"CNI_COMMAND=VERSION\n",
    b"CNI_COMMAND=GC\n",
    b"CNI_CONTAINERID=",
    b"CNI_IFNAME=",
    b"CNI_ARGS=IP=10.1.0.9;MAC=aa:bb:cc:dd:ee:ff\n",
    b"\n\n",
    b"\"type\":\"bridge\"",
    b"\"type\":\"host-local\"",
    b"\"type\":\"flannel\"",
    b"\"type\":\"portmap\"",
];

fn seeds() -> Vec<Vec<u8>> {
    let netns = fake_netns().display().to_string();
    let configs = [
        r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.1.0.0/24","dataDir":"/nonexistent/fuzz"}}"#,
        r#"{"cniVersion":"0.3.1","name":"n","type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}]],"dataDir":"/nonexistent/fuzz"}"#,
        r#"{"cniVersion":"1.1.0","name":"cbr0","type":"flannel","subnetFile":"/nonexistent/subnet.env","dataDir":"/nonexistent/fuzz","delegate":{"hairpinMode":true}}"#,
        r#"{"cniVersion":"0.4.0","name":"n","type":"portmap","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},"prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"version":"4","address":"10.1.0.2/24","interface":0}]}}"#,
    ];
    let mut v = Vec::new();
    for cmd in ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] {
        for conf in configs {
            v.push(
                format!(
                    "CNI_COMMAND={cmd}\nCNI_CONTAINERID=c0ffee\nCNI_NETNS={netns}\nCNI_IFNAME=eth0\nCNI_PATH=/nonexistent\nCNI_ARGS=IgnoreUnknown=1\n\n{conf}"
                )
                .into_bytes(),
            );
        }
    }
    for deep in nested(100_000) {
        let mut s = format!("CNI_COMMAND=ADD\nCNI_CONTAINERID=a\nCNI_NETNS={netns}\nCNI_IFNAME=eth0\nCNI_PATH=/x\n\n").into_bytes();
        s.extend(deep);
        v.push(s);
    }
    v
}

struct Probe;

impl Probe {
    /// Every decoder a real plugin of this `type` would run before touching anything.
    fn decode(&self, req: &Request) -> Result<String, CniError> {
        let fail = |e: String| CniError::new(codes::INVALID_CONFIG, e);
        let args = &req.env.args;
        let mut steps = Vec::new();
        match req.conf.plugin_type.as_str() {
            "bridge" => {
                let c = BridgeConf::load(&req.conf, args).map_err(|e| fail(e.to_string()))?;
                c.validate_for_add().map_err(|e| fail(e.to_string()))?;
                steps.push("bridge");
            }
            "flannel" => {
                FlannelConf::parse(&req.stdin).map_err(|e| fail(e.to_string()))?;
                steps.push("flannel");
            }
            "portmap" => {
                PortMapConf::parse(&req.conf, &req.env.ifname).map_err(|e| fail(e.to_string()))?;
                steps.push("portmap");
            }
            _ => {}
        }
        if req.conf.plugin_type == "host-local"
            || req.conf.ipam_type.as_deref() == Some("host-local")
        {
            host_local::config::load(&req.stdin, args).map_err(|e| fail(e.to_string()))?;
            steps.push("host-local");
        }
        Ok(steps.join("+"))
    }

    fn stop_at_netns(&self, req: &Request) -> CniError {
        let Some(path) = &req.env.netns else {
            return CniError::new(codes::INVALID_NETNS, "no netns");
        };
        match netops::netns::open_netns(path) {
            Ok(_) => CniError::new(codes::INTERNAL, "probe never enters a namespace"),
            Err(e) => CniError::new(codes::INVALID_NETNS, e.to_string()),
        }
    }
}

impl Plugin for Probe {
    fn about(&self) -> String {
        "fuzz probe".into()
    }
    fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        self.decode(req)?;
        Err(self.stop_at_netns(req))
    }
    fn del(&self, req: &Request) -> Result<(), CniError> {
        self.decode(req).map(|_| ())
    }
    fn check(&self, req: &Request) -> Result<(), CniError> {
        self.decode(req)?;
        Err(self.stop_at_netns(req))
    }
    fn status(&self, req: &Request) -> Result<(), CniError> {
        self.decode(req).map(|_| ())
    }
    fn gc(&self, req: &Request) -> Result<(), CniError> {
        host_local::config::valid_attachments(&req.stdin)
            .map_err(|e| CniError::new(codes::INVALID_CONFIG, e.to_string()))?;
        self.decode(req).map(|_| ())
    }
}

/// The protocol contract a runtime relies on: a non-zero exit carries exactly one error
/// object with a numeric code and a string message on stdout; success prints nothing or one
/// JSON document.
fn edge(b: &[u8]) -> Result<String, String> {
    let split = b.windows(2).position(|w| w == b"\n\n").unwrap_or(b.len());
    let vars = env_lookup(&b[..split]);
    let stdin = b.get(split + 2..).unwrap_or_default();
    let get = |k: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let rc = skel::run_with(get, stdin, &mut out, &mut err, &Probe);
    let text = String::from_utf8(out).map_err(|_| "stdout is not UTF-8".to_string())?;
    match rc {
        0 => {
            if !text.is_empty() {
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| format!("success output is not JSON ({e}): {text:?}"))?;
            }
            Ok(format!("ok:{}", text.len().min(1)))
        }
        1 => {
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| format!("error output is not one JSON object ({e}): {text:?}"))?;
            let code = v.get("code").and_then(Value::as_u64);
            let msg = v.get("msg").and_then(Value::as_str);
            match (code, msg) {
                (Some(code), Some(msg)) if code != 0 && !msg.is_empty() => {
                    let r: Result<(), &str> = Err(msg);
                    Ok(format!("{code}:{}", label("", &r)))
                }
                _ => Err(format!("malformed CNI error: {text}")),
            }
        }
        other => Err(format!("exit code {other}")),
    }
}

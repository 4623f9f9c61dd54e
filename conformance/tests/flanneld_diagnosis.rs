//! Diagnosis in the netns bed: `/metrics` values move with what happens to the node,
//! `flannelctl status` tells a healthy node from one whose etcd is down, and the flannel
//! plugin's STATUS (CNI 1.1) and failed ADD carry the daemon's own reason.
//!
//! Run with `--nocapture` to see the captured `flannelctl` output the README quotes.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use conformance::flanneld::flanneld_bin;
use conformance::support::flanneld::*;
use conformance::{Driver, Netns, Segment};
use serde_json::{json, Value};

const PORT: &str = "8081";

fn vxlan() -> Value {
    json!({"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}})
}

fn status_flags() -> [&'static str; 2] {
    ["--healthz-ip=127.0.0.1", "--healthz-port=8081"]
}

fn flannelctl(node: &Netns, args: &[&str]) -> Output {
    let bin = flanneld_bin().with_file_name("flannelctl");
    assert!(bin.is_file(), "build it: cargo build --release -p flanneld");
    node.command(bin).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `GET path` from inside `node` (bash's /dev/tcp: no HTTP client needed in the bed).
fn http_get(node: &Netns, path: &str) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{PORT} && printf 'GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let out = node.command("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "GET {path}: {}", text(&out.stderr));
    let raw = text(&out.stdout);
    raw.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or(raw)
}

/// The value of the sample `series` (name with labels, exactly as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

fn metric(node: &Flanneld, series: &str) -> f64 {
    let m = http_get(node.host.netns(), "/metrics");
    sample(&m, series).unwrap_or_else(|| panic!("no {series} in:\n{m}"))
}

fn status_json(node: &Flanneld) -> Value {
    let out = flannelctl(node.host.netns(), &["status", "-o", "json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

const REPAIRS: &str = r#"flannel_reconcile_repairs_total{kind="backend"}"#;

#[test]
fn metrics_and_flannelctl_follow_the_node() {
    let mut cluster = Cluster::new(&vxlan());
    // A short lease so that renewals (and their failures while etcd is down) happen in
    // test time.
    let mut a = start_flanneld(
        cluster.host(Segment::A, "dga"),
        &cluster.etcd,
        &status_flags(),
        Some(10),
    );
    a.wait_ready(START).unwrap();
    assert!(eventually(Duration::from_secs(10), || metric(
        &a,
        "flannel_peers"
    ) == 0.0));
    let programmed_before = metric(&a, "flannel_route_program_seconds_count");

    // A peer joins: one more peer, its route programmed, one more latency sample.
    let mut b = start_flanneld(
        cluster.host(Segment::A, "dgb"),
        &cluster.etcd,
        &status_flags(),
        None,
    );
    b.wait_ready(START).unwrap();
    let peer = b.subnet().unwrap();
    assert!(
        eventually(Duration::from_secs(15), || metric(&a, "flannel_peers")
            == 1.0),
        "{}",
        http_get(a.host.netns(), "/metrics")
    );
    assert!(eventually(Duration::from_secs(15), || metric(
        &a,
        "flannel_routes_programmed"
    ) == 1.0));
    assert!(metric(&a, "flannel_route_program_seconds_count") > programmed_before);
    let m = http_get(a.host.netns(), "/metrics");
    let info = format!(
        r#"flannel_lease_info{{subnet="{}",public_ip="{}",backend="vxlan"}}"#,
        a.subnet().unwrap(),
        a.host.ip()
    );
    assert_eq!(sample(&m, &info), Some(1.0), "{m}");
    assert!(sample(&m, "flannel_lease_expiry_timestamp_seconds").unwrap() > 1.7e9);

    // A route deleted by hand: the next reconcile (every 10 s) puts it back and counts it.
    let repairs = metric(&a, REPAIRS);
    let del = a
        .host
        .netns()
        .exec(&["ip", "route", "del", &peer.to_string()]);
    assert!(del.status.success(), "{}", text(&del.stderr));
    assert_eq!(a.route_to(peer), "");
    assert!(
        eventually(Duration::from_secs(25), || !a.route_to(peer).is_empty()),
        "route to {peer} not restored:\n{}",
        a.log()
    );
    assert!(eventually(Duration::from_secs(5), || metric(&a, REPAIRS)
        == repairs + 1.0));
    assert!(
        a.route_to(peer).contains("dev flannel.1"),
        "{}",
        a.route_to(peer)
    );

    println!(
        "--- /metrics after the repair ---\n{}",
        http_get(a.host.netns(), "/metrics")
    );

    // Healthy: ready, the peer with its route, exit 0.
    let healthy = flannelctl(a.host.netns(), &["status"]);
    println!(
        "--- flannelctl status (healthy) ---\n{}",
        text(&healthy.stdout)
    );
    assert_eq!(healthy.status.code(), Some(0), "{}", text(&healthy.stderr));
    let table = text(&healthy.stdout);
    assert!(table.starts_with("Readiness:   ready\n"), "{table}");
    assert!(
        table.lines().any(|l| l.contains(&peer.to_string())
            && l.contains(&b.host.ip().to_string())
            && l.trim_end().ends_with("yes")),
        "{table}"
    );
    assert!(table.contains("Drift:       1 repair(s)"), "{table}");

    // etcd down: the node stays ready (the data plane is up), renewals fail and say so.
    cluster.etcd.stop().unwrap();
    assert!(
        eventually(Duration::from_secs(30), || {
            let s = status_json(&a);
            s["lease_errors"].as_u64().unwrap_or(0) >= 1
                && s["last_error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("renewing lease: "))
        }),
        "{}\n{}",
        status_json(&a),
        a.log()
    );
    let down = flannelctl(a.host.netns(), &["status"]);
    println!(
        "--- flannelctl status (etcd down) ---\n{}",
        text(&down.stdout)
    );
    assert_eq!(
        down.status.code(),
        Some(0),
        "still ready: {}",
        text(&down.stdout)
    );
    assert!(
        text(&down.stdout).contains("Last error:  "),
        "{}",
        text(&down.stdout)
    );
    let json_down = flannelctl(a.host.netns(), &["status", "-o", "json"]);
    println!(
        "--- flannelctl status -o json (etcd down) ---\n{}",
        text(&json_down.stdout)
    );
    let s: Value = serde_json::from_slice(&json_down.stdout).unwrap();
    assert_eq!(s["ready"], json!(true));
    assert_eq!(s["peers"][0]["route"], json!(true), "{s}");
    let m = http_get(a.host.netns(), "/metrics");
    assert!(
        sample(&m, r#"flannel_store_errors_total{store="etcd"}"#).unwrap() >= 1.0,
        "{m}"
    );
    assert!(
        sample(&m, "flannel_lease_errors_total").unwrap() >= 1.0,
        "{m}"
    );

    let renewals = metric(&a, "flannel_lease_renewals_total");
    cluster.etcd.restart().unwrap();
    assert!(
        eventually(Duration::from_secs(30), || metric(
            &a,
            "flannel_lease_renewals_total"
        ) > renewals),
        "no renewal after etcd came back:\n{}",
        a.log()
    );

    // Another lease announcing this node's public IP: what two nodes behind one NAT address
    // (or with the same default-route address) publish. etcd mode would hand the second
    // node the first one's lease, so the record is written as a kube-mode or foreign node
    // would have it.
    let foreign = format!("{PREFIX}/subnets/10.244.250.0-24");
    cluster
        .etcd
        .put(
            &foreign,
            &json!({"PublicIP": a.host.ip().to_string(), "BackendType": "vxlan",
                    "BackendData": {"VNI": 1, "VtepMAC": "02:00:00:00:00:fa"}})
            .to_string(),
        )
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || {
            status_json(&a)["duplicate_public_ips"][0]["public_ip"]
                == json!(a.host.ip().to_string())
        }),
        "{}",
        status_json(&a)
    );
    let dup = flannelctl(a.host.netns(), &["status"]);
    println!(
        "--- flannelctl status (duplicate public IP) ---\n{}",
        text(&dup.stdout)
    );
    assert!(text(&dup.stdout).contains(&format!(
        "DUPLICATE:   public IP {} is announced by {}, 10.244.250.0/24",
        a.host.ip(),
        a.subnet().unwrap()
    )));
    assert!(
        a.log().contains(
            "give each flanneld its own address with --iface=<interface> or --public-ip=<address>"
        ),
        "{}",
        a.log()
    );
    cluster.etcd.delete(&foreign).unwrap();
    assert!(eventually(Duration::from_secs(15), || status_json(&a)
        ["duplicate_public_ips"]
        == json!([])));

    // A daemon that is gone: a clear message and exit 3.
    b.stop().unwrap();
    let gone = flannelctl(b.host.netns(), &["status"]);
    println!(
        "--- flannelctl status (daemon stopped) ---\n{}",
        text(&gone.stderr)
    );
    assert_eq!(gone.status.code(), Some(3));
    assert!(
        text(&gone.stderr)
            .starts_with("flannelctl: cannot reach flanneld at 127.0.0.1:8081: connection refused"),
        "{}",
        text(&gone.stderr)
    );
}

/// The flannel plugin config a runtime would pass, pointed at this node's daemon.
fn plugin_conf(node_dir: &std::path::Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "cbr0",
        "type": "flannel",
        "delegate": {"hairpinMode": true, "isDefaultGateway": true},
        "subnetFile": node_dir.join("subnet.env"),
        "dataDir": node_dir.join("flannel"),
        "ipam": {"dataDir": node_dir.join("ipam")},
        "daemonStatusURL": format!("http://127.0.0.1:{PORT}/status")
    })
}

struct Exec {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn exec_plugin(driver: &Driver, host: &Netns, command: &str, id: &str, conf: &Value) -> Exec {
    let dir = driver.plugins().path();
    let mut cmd = host.command(dir.join("flannel"));
    cmd.env("CNI_COMMAND", command)
        .env("CNI_PATH", dir)
        .env("CNI_CONTAINERID", id)
        .env("CNI_IFNAME", "eth0");
    let out = conformance::cmd::output_with_stdin(&mut cmd, conf.to_string().as_bytes()).unwrap();
    Exec {
        code: out.status.code(),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

fn status_error(driver: &Driver, host: &Netns, conf: &Value) -> Option<Value> {
    let out = exec_plugin(driver, host, "STATUS", "", conf);
    if out.code == Some(0) {
        return None;
    }
    Some(
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", out.stdout, out.stderr)),
    )
}

#[test]
fn cni_status_carries_the_daemons_reason() {
    let cluster = Cluster::new(&vxlan());
    cluster.etcd.delete(&format!("{PREFIX}/config")).unwrap();
    let host = cluster.host(Segment::A, "dgc");
    let dir = tempfile::Builder::new()
        .prefix("fr-diag-")
        .tempdir()
        .unwrap();
    let conf = plugin_conf(dir.path());
    let driver = our_driver();

    // Before the daemon starts.
    let err = status_error(&driver, host.netns(), &conf).expect("not ready without a daemon");
    println!("--- STATUS before flanneld started ---\n{err}");
    assert_eq!(err["code"], 50);
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("flannel is not ready: cannot use "),
        "{msg}"
    );
    assert!(
        msg.contains("flanneld is not running (nothing answers at 127.0.0.1:8081"),
        "{msg}"
    );

    // A torn save file and no subnet.env: DEL still succeeds and drops the file.
    std::fs::create_dir_all(dir.path().join("flannel")).unwrap();
    std::fs::write(
        dir.path().join("flannel/ctr-torn"),
        b"{\"cniVersion\":\"1.1.0\",\"ty",
    )
    .unwrap();
    let del = exec_plugin(&driver, host.netns(), "DEL", "ctr-torn", &conf);
    assert_eq!(del.code, Some(0), "{}{}", del.stdout, del.stderr);
    assert!(!dir.path().join("flannel/ctr-torn").exists());

    // The daemon runs but etcd has no network config yet.
    // Our subnet file, not the helper's: the plugin config had to exist before the daemon.
    let subnet_flag = format!("--subnet-file={}", dir.path().join("subnet.env").display());
    let mut flags = vec![subnet_flag.as_str()];
    flags.extend(status_flags());
    let node = start_flanneld(host, &cluster.etcd, &flags, None);
    let mut waiting = None;
    assert!(
        eventually(Duration::from_secs(20), || {
            waiting = status_error(&driver, node.host.netns(), &conf);
            // The phase appears a moment before its reason (the first failed fetch): wait
            // for both.
            waiting.as_ref().is_some_and(|e| {
                e["msg"].as_str().is_some_and(|m| {
                    m.contains("waiting for network config: flannel config not found in etcd store")
                })
            })
        }),
        "{waiting:?}\n{}",
        node.log()
    );
    let err = waiting.unwrap();
    println!("--- STATUS while flanneld waits for its config ---\n{err}");
    assert_eq!(err["code"], 50);
    assert!(
        err["msg"].as_str().unwrap().contains(
            "flanneld is running but not ready: waiting for network config: flannel config not found in etcd store"
        ),
        "{err}"
    );

    // ADD says the same after upstream's text.
    let pod = Netns::new("dgpod").unwrap();
    let mut add_conf = conf.clone();
    add_conf["cniVersion"] = json!("1.0.0");
    let add = node
        .host
        .netns()
        .command(driver.plugins().path().join("flannel"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_PATH", driver.plugins().path())
        .env("CNI_CONTAINERID", "ctr-early")
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(add_conf.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let add_err: Value = serde_json::from_slice(&add.stdout).unwrap();
    println!("--- ADD while flanneld waits for its config ---\n{add_err}");
    let msg = add_err["msg"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "failed to load flannel 'subnet.env' file: open {}: no such file or directory. Check the flannel pod log for this node. flanneld is running but not ready: waiting for network config",
            dir.path().join("subnet.env").display()
        )),
        "{msg}"
    );

    // Config arrives: the node becomes ready, and so does STATUS.
    cluster
        .etcd
        .put(&format!("{PREFIX}/config"), &vxlan().to_string())
        .unwrap();
    assert!(
        eventually(Duration::from_secs(60), || status_error(
            &driver,
            node.host.netns(),
            &conf
        )
        .is_none()),
        "{:?}",
        status_error(&driver, node.host.netns(), &conf)
    );
    println!("--- STATUS once ready: exit 0 ---");
}

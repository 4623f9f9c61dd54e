//! flannel beyond the happy path: STATUS and GC (CNI 1.1, driven directly because the
//! Debian libcni predates them), failed ADDs, torn save files, user-facing errors.

use conformance::support::flannel::*;
use conformance::{Driver, Impl, Netns};
use serde_json::{json, Value};

struct Exec {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Exec {
    fn error(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("error JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr)
        })
    }
}

/// Runs our flannel binary in `host` like a runtime would for verbs libcni 1.1.2 lacks.
fn exec_flannel(driver: &Driver, host: &Netns, command: &str, conf: &Value) -> Exec {
    let mut cmd = host.command(driver.plugins().path().join("flannel"));
    cmd.env("CNI_COMMAND", command)
        .env("CNI_PATH", driver.plugins().path());
    let out = conformance::cmd::output_with_stdin(&mut cmd, conf.to_string().as_bytes()).unwrap();
    Exec {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn status_follows_subnet_env() {
    let node = Node::new();
    let driver = driver(&all(Impl::Ours));
    let host = ns("fvhost");
    // No flanneld in this bed and no daemonStatusURL configured: silence at the default
    // address may only mean flanneld runs without --healthz-port (upstream's default), so
    // STATUS follows subnet.env alone (flanneld_diagnosis covers a configured daemon).
    let conf = node.plugin_conf("1.1.0", json!({}));
    let ok = exec_flannel(&driver, &host, "STATUS", &conf);
    assert_eq!(ok.code, Some(0), "{}{}", ok.stdout, ok.stderr);

    std::fs::remove_file(node.subnet_file()).unwrap();
    let down = exec_flannel(&driver, &host, "STATUS", &conf);
    assert_eq!(down.code, Some(1));
    let err = down.error();
    assert_eq!(err["code"], 50, "{err}");
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.contains(&node.subnet_file().display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("no such file or directory") && msg.contains("flanneld is not running"),
        "{msg}"
    );

    std::fs::write(
        node.subnet_file(),
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    )
    .unwrap();
    let partial = exec_flannel(&driver, &host, "STATUS", &conf).error();
    assert_eq!(partial["code"], 50);
    assert!(
        partial["msg"]
            .as_str()
            .unwrap()
            .contains("is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET"),
        "{partial}"
    );

    let old = exec_flannel(
        &driver,
        &host,
        "STATUS",
        &node.plugin_conf("1.0.0", json!({"daemonStatusURL": ""})),
    )
    .error();
    assert_eq!(old["code"], 1, "STATUS needs a 1.1.0 config: {old}");
}

/// A pod whose sandbox vanished without a DEL: GC drops its saved config and its IP.
#[test]
fn gc_frees_what_the_runtime_forgot() {
    let node = Node::new();
    let driver = driver(&all(Impl::Ours));
    let host = ns("fvhost");
    let kept = ns("fvpod");
    let conf = node.conflist("1.0.0");
    let r_kept = driver
        .add(&conf, &host, &kept, "eth0", "ctr-kept", None)
        .unwrap();
    {
        let lost = ns("fvpod");
        driver
            .add(&conf, &host, &lost, "eth0", "ctr-lost", None)
            .unwrap();
    }
    assert_eq!(node.reserved_ips().len(), 2);
    assert!(node.saved_config("ctr-lost").is_some());

    let gc = node.plugin_conf(
        "1.1.0",
        json!({
            "cni.dev/valid-attachments": [{"containerID": "ctr-kept", "ifname": "eth0"}],
            "cni.dev/attachments": [{"containerID": "ctr-kept", "ifname": "eth0"}]
        }),
    );
    let out = exec_flannel(&driver, &host, "GC", &gc);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(node.saved_config("ctr-lost"), None);
    assert!(node.saved_config("ctr-kept").is_some());
    let kept_ip = first_ip(&r_kept).split('/').next().unwrap().to_owned();
    assert_eq!(node.reserved_ips(), vec![kept_ip]);

    driver
        .del(&conf, &host, &kept, "eth0", "ctr-kept", None)
        .unwrap();
    assert!(node.reserved_ips().is_empty());
}

/// A truncated save file (what upstream's in-place write can leave) must not wedge DEL, and
/// the IP is still released through a delegate config rebuilt from the current settings.
#[test]
fn torn_save_file_still_releases_on_del() {
    let node = Node::new();
    let driver = driver(&all(Impl::Ours));
    let host = ns("fvhost");
    let pod = ns("fvpod");
    let conf = node.conflist("0.3.1");
    driver
        .add(&conf, &host, &pod, "eth0", "ctr-torn", None)
        .unwrap();
    let saved = node.saved_config("ctr-torn").unwrap();
    std::fs::write(node.data_dir().join("ctr-torn"), &saved[..saved.len() / 2]).unwrap();

    driver
        .del(&conf, &host, &pod, "eth0", "ctr-torn", None)
        .unwrap();
    assert!(node.reserved_ips().is_empty(), "{:?}", node.reserved_ips());
    assert_eq!(node.saved_config("ctr-torn"), None);
    assert!(host.links_of_kind("veth").unwrap().is_empty());
}

/// The reference bridge fails after host-local allocated (a user default route clashing with
/// isDefaultGateway): flannel releases the IP and its save file right away.
#[test]
fn failed_add_releases_ip_and_save_file() {
    let node = Node::new();
    let driver = driver(&[
        ("flannel", Impl::Ours),
        ("bridge", Impl::Reference),
        ("host-local", Impl::Reference),
    ]);
    let host = ns("fvhost");
    let pod = ns("fvpod");
    let conf = json!({
        "name": "cbr0", "cniVersion": "0.3.1",
        "plugins": [{"type": "flannel", "delegate": {"isDefaultGateway": true},
                     "subnetFile": node.subnet_file(), "dataDir": node.data_dir(),
                     "ipam": {"dataDir": node.ipam_dir(), "routes": [{"dst": "0.0.0.0/0"}]}}]
    })
    .to_string();
    let err = driver
        .add(&conf, &host, &pod, "eth0", "ctr-fail", None)
        .unwrap_err();
    assert!(err.msg.contains("exists"), "{err:?}");
    assert!(
        node.reserved_ips().is_empty(),
        "IP leaked: {:?}",
        node.reserved_ips()
    );
    assert_eq!(node.saved_config("ctr-fail"), None);
    driver
        .del(&conf, &host, &pod, "eth0", "ctr-fail", None)
        .unwrap();
}

#[test]
fn user_facing_errors() {
    let node = Node::new();
    let driver = driver(&all(Impl::Ours));
    let host = ns("fvhost");
    let pod = ns("fvpod");
    let with_delegate = |delegate: Value| {
        let mut list: Value = serde_json::from_str(&node.conflist("0.3.1")).unwrap();
        list["plugins"][0]["delegate"] = delegate;
        list.to_string()
    };

    let err = driver
        .add(
            &with_delegate(json!({"type": "nosuch"})),
            &host,
            &pod,
            "eth0",
            "ctr-e",
            None,
        )
        .unwrap_err();
    assert_eq!(err.code, Some(999));
    assert!(
        err.msg
            .starts_with("failed to delegate add: failed to find plugin \"nosuch\" in path ["),
        "{err:?}"
    );
    assert_eq!(
        node.saved_config("ctr-e"),
        None,
        "a failed ADD leaves no save file"
    );

    let err = driver
        .add(
            &with_delegate(json!({"name": "x"})),
            &host,
            &pod,
            "eth0",
            "ctr-e",
            None,
        )
        .unwrap_err();
    assert_eq!(
        err.msg,
        "'delegate' dictionary must not have 'name' field, it'll be set by flannel"
    );

    std::fs::remove_file(node.subnet_file()).unwrap();
    let err = driver
        .add(&node.conflist("0.3.1"), &host, &pod, "eth0", "ctr-e", None)
        .unwrap_err();
    // Upstream's text first, then what the (absent) daemon says.
    assert!(
        err.msg.starts_with(&format!(
            "failed to load flannel 'subnet.env' file: open {}: no such file or directory. Check the flannel pod log for this node. flanneld is not running",
            node.subnet_file().display()
        )),
        "{err:?}"
    );
    // DEL needs neither subnet.env nor a save file.
    driver
        .del(&node.conflist("0.3.1"), &host, &pod, "eth0", "ctr-e", None)
        .unwrap();

    let info = driver.version(&host, "flannel").unwrap();
    assert_eq!(
        info["supportedVersions"],
        json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

//! The deployment artifacts: the kube-flannel manifest, the image recipe, the systemd unit
//! and the installer agree with each other, with the repository and with `flanneld --help`.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn manifest() -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read("deploy/kube-flannel.yml"))
        .map(|doc| Value::deserialize(doc).expect("every document parses as YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the manifest"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Flag names `flanneld -h` documents.
fn help_flags() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_flanneld"))
        .arg("-h")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let flags: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('-'))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert!(
        flags.contains("kube-subnet-mgr"),
        "usage lists kube flags:\n{text}"
    );
    flags
}

fn flag_name(arg: &str) -> Option<&str> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    Some(body.split('=').next().unwrap())
}

#[test]
fn manifest_has_kube_flannels_objects_and_rbac() {
    let docs = manifest();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
    ] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    let rules: BTreeSet<(String, String, String)> = by_kind(&docs, "ClusterRole")["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let verbs = strs(&r["verbs"]);
            let groups = strs(&r["apiGroups"]);
            strs(&r["resources"]).into_iter().flat_map(move |res| {
                let (verbs, groups) = (verbs.clone(), groups.clone());
                groups.into_iter().flat_map(move |g| {
                    let res = res.clone();
                    verbs
                        .clone()
                        .into_iter()
                        .map(move |v| (g.clone(), res.clone(), v))
                })
            })
        })
        .collect();
    // Upstream chart's RBAC: get/list/watch on pods, nodes and namespaces, nodes/status
    // patch, and NetworkPolicies for --network-policy (get as well, for kubectl-like reads).
    let mut want: BTreeSet<(String, String, String)> = BTreeSet::new();
    for res in ["pods", "nodes", "namespaces"] {
        for verb in ["get", "list", "watch"] {
            want.insert((String::new(), res.into(), verb.into()));
        }
    }
    want.insert((String::new(), "nodes/status".into(), "patch".into()));
    for verb in ["get", "list", "watch"] {
        want.insert((
            "networking.k8s.io".into(),
            "networkpolicies".into(),
            verb.into(),
        ));
    }
    assert_eq!(
        rules, want,
        "upstream's RBAC with what --network-policy reads, nothing more"
    );

    let binding = by_kind(&docs, "ClusterRoleBinding");
    let sa = by_kind(&docs, "ServiceAccount");
    assert_eq!(
        binding["roleRef"]["name"],
        by_kind(&docs, "ClusterRole")["metadata"]["name"]
    );
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(
        binding["subjects"][0]["namespace"],
        sa["metadata"]["namespace"]
    );
}

#[test]
fn configmap_holds_a_valid_conflist_and_net_conf() {
    let docs = manifest();
    let data = &by_kind(&docs, "ConfigMap")["data"];
    let conflist: serde_json::Value =
        serde_json::from_str(data["cni-conf.json"].as_str().unwrap()).unwrap();
    let types: Vec<&str> = conflist["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["flannel", "portmap"]);
    let net =
        netconf::flannel::NetworkConfig::parse(data["net-conf.json"].as_str().unwrap().as_bytes())
            .unwrap();
    assert_eq!(net.backend_type, "vxlan");
    assert!(
        !net.enable_nftables,
        "the manifest keeps upstream's default (iptables mode)"
    );
}

#[test]
fn daemonset_uses_only_existing_flags_volumes_and_image_paths() {
    let docs = manifest();
    let ds = by_kind(&docs, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
    assert_eq!(
        spec["serviceAccountName"],
        by_kind(&docs, "ServiceAccount")["metadata"]["name"]
    );
    assert!(spec["tolerations"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|t| t["operator"].as_str() == Some("Exists")));

    let flags = help_flags();
    let main = &spec["containers"][0];
    let args = strs(&main["args"]);
    for want in ["--ip-masq", "--kube-subnet-mgr"] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
    for a in &args {
        let name = flag_name(a).unwrap_or_else(|| panic!("{a:?} is not a flag"));
        assert!(flags.contains(name), "--{name} is not a flanneld flag");
    }
    // Upstream's privileges: NET_ADMIN and NET_RAW, not privileged (the TUN backends'
    // overlay is checked below); the init container needs none.
    let sc = &main["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false), "{sc:?}");
    let caps: BTreeSet<String> = strs(&sc["capabilities"]["add"]).into_iter().collect();
    assert_eq!(
        caps,
        ["NET_ADMIN", "NET_RAW"].map(String::from).into(),
        "{sc:?}"
    );
    assert!(sc["allowPrivilegeEscalation"].as_bool() != Some(true));
    for init in spec["initContainers"].as_sequence().unwrap() {
        assert!(init["securityContext"].is_null(), "{init:?}");
    }
    let env: Vec<String> = main["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(env.contains(&"POD_NAME".into()) && env.contains(&"POD_NAMESPACE".into()));

    // Every mount names a declared volume; the ConfigMap volume names the real ConfigMap.
    let volumes: Vec<&Value> = spec["volumes"].as_sequence().unwrap().iter().collect();
    let names: BTreeSet<&str> = volumes
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let containers = spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(spec["initContainers"].as_sequence().unwrap());
    let image_files = image_files();
    for c in containers {
        for m in c["volumeMounts"].as_sequence().unwrap() {
            assert!(names.contains(m["name"].as_str().unwrap()), "{m:?}");
        }
        let cmd = strs(&c["command"]);
        assert!(
            image_files.contains(&cmd[0]),
            "{} runs {}, which the image does not have: {image_files:?}",
            c["name"].as_str().unwrap(),
            cmd[0]
        );
    }
    let cm = volumes.iter().find(|v| !v["configMap"].is_null()).unwrap();
    assert_eq!(
        cm["configMap"]["name"],
        by_kind(&docs, "ConfigMap")["metadata"]["name"]
    );

    // The init container installs the conflist the ConfigMap provides, and the plugins
    // onto the host paths CNI runtimes read.
    let init = &spec["initContainers"][0];
    let env_of = |name: &str| {
        init["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .map(|e| e["value"].as_str().unwrap().to_owned())
    };
    let conf = env_of("CNI_CONF_SRC").unwrap();
    let key = Path::new(&conf).file_name().unwrap().to_str().unwrap();
    assert!(!by_kind(&docs, "ConfigMap")["data"][key].is_null(), "{key}");
    let dest = env_of("DESTDIR").unwrap();
    let mounts: Vec<String> = init["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        mounts.contains(&format!("{dest}/opt/cni/bin")),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&format!("{dest}/etc/cni/net.d")),
        "{mounts:?}"
    );
}

/// Paths the image has, from the Dockerfile's final-stage COPY lines; every source they copy
/// from the repository must exist, and every binary from the build stage must be a workspace
/// binary.
fn image_files() -> BTreeSet<String> {
    // A backslash at the end of a line continues the instruction, as Docker reads it.
    let text = read("deploy/Dockerfile").replace("\\\n", " ");
    let mut files = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        if words == [".", "."] {
            continue;
        }
        let (from_build, words) = match words.first() {
            Some(w) if w.starts_with("--from=") => (true, &words[1..]),
            _ => (false, &words[..]),
        };
        let (dest, sources) = words.split_last().unwrap();
        for src in sources {
            let name = Path::new(src).file_name().unwrap().to_str().unwrap();
            if from_build {
                let bin = src.strip_prefix("/src/target/release/").unwrap();
                let crate_dir = match bin {
                    "flanneld" => repo().join("flanneld"),
                    "flannel-rs-cni" => repo().join("plugins/cni"),
                    "flannelctl" => repo().join("flannelctl"),
                    other => panic!("the image copies {other}, which is no workspace binary"),
                };
                assert!(
                    crate_dir.join("Cargo.toml").is_file(),
                    "{bin} is not built here"
                );
            } else {
                assert!(
                    repo().join(src).is_file(),
                    "Dockerfile copies missing {src}"
                );
            }
            if dest.ends_with('/') {
                files.insert(format!("{dest}{name}"));
            } else {
                files.insert(dest.to_string());
            }
        }
    }
    files
}

#[test]
fn systemd_unit_notifies_and_uses_real_flags() {
    let unit = read("deploy/flanneld.service");
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let flags = help_flags();
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/flanneld"));
    for w in words {
        let name = flag_name(w).unwrap();
        assert!(flags.contains(name), "--{name} is not a flanneld flag");
    }
}

#[test]
fn docker_unit_pair_hands_mk_docker_opts_output_to_dockerd() {
    let unit = read("deploy/docker/flanneld.service");
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
    let flags = help_flags();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/flanneld"));
    for w in words {
        let name = flag_name(w).unwrap();
        assert!(flags.contains(name), "--{name} is not a flanneld flag");
    }
    let post: Vec<&str> = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPost="))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(post[0], "/usr/local/bin/mk-docker-opts");
    let args: Vec<String> = post[1..].iter().map(|s| s.to_string()).collect();
    let opts = flanneld::docker_opts::parse_args(&args).expect("options mk-docker-opts accepts");
    assert_eq!(opts.combined_key, "DOCKER_NETWORK_OPTIONS");

    let dropin = read("deploy/docker/docker.service.d/flannel.conf");
    assert!(
        dropin
            .lines()
            .any(|l| l == format!("EnvironmentFile={}", opts.docker_env)),
        "the drop-in reads the file mk-docker-opts writes: {dropin}"
    );
    assert!(dropin.contains("$DOCKER_NETWORK_OPTIONS"), "{dropin}");
    assert!(
        dropin.lines().any(|l| l == "ExecStart="),
        "resets the packaged ExecStart"
    );
}

fn fake_build(dir: &Path) {
    for bin in ["flannel-rs-cni", "flanneld"] {
        std::fs::write(dir.join(bin), format!("#!/bin/sh\necho {bin}\n")).unwrap();
    }
}

fn install(src: &Path, dest: &Path, extra: &[(&str, &str)]) -> std::process::Output {
    Command::new("sh")
        .arg(repo().join("scripts/install.sh"))
        .env("SRC_DIR", src)
        .env("DESTDIR", dest)
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn installer_places_everything_under_destdir() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    fake_build(src.path());
    let conf = src.path().join("cni-conf.json");
    std::fs::write(&conf, "{}").unwrap();
    let out = install(
        src.path(),
        dest.path(),
        &[("CNI_CONF_SRC", conf.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The plugins are one file under four names, and nothing else is in the directory.
    let plugin = |bin: &str| std::fs::metadata(dest.path().join("opt/cni/bin").join(bin)).unwrap();
    for bin in ["flannel", "bridge", "host-local", "portmap"] {
        assert_eq!(plugin(bin).permissions().mode() & 0o777, 0o755, "{bin}");
        assert_eq!(
            plugin(bin).ino(),
            plugin("flannel").ino(),
            "{bin} is a hard link"
        );
    }
    assert_eq!(plugin("flannel").nlink(), 4);
    assert!(dest.path().join("usr/local/bin/flanneld").is_file());
    assert_eq!(
        std::fs::read_to_string(dest.path().join("etc/systemd/system/flanneld.service")).unwrap(),
        read("deploy/flanneld.service")
    );
    assert_eq!(
        std::fs::read_to_string(dest.path().join("etc/cni/net.d/10-flannel.conflist")).unwrap(),
        "{}"
    );
    // Re-running replaces the files in place and leaves no temporaries behind.
    std::fs::write(src.path().join("flannel-rs-cni"), "new").unwrap();
    assert!(install(src.path(), dest.path(), &[]).status.success());
    for bin in ["flannel", "bridge", "host-local", "portmap"] {
        let p = dest.path().join("opt/cni/bin").join(bin);
        assert_eq!(std::fs::read_to_string(p).unwrap(), "new", "{bin}");
    }
    assert_eq!(
        std::fs::read_dir(dest.path().join("opt/cni/bin"))
            .unwrap()
            .count(),
        4
    );
    let leftovers: Vec<_> = std::fs::read_dir(dest.path().join("opt/cni/bin"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn installer_cni_only_mode_and_missing_binaries() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    fake_build(src.path());
    let out = install(src.path(), dest.path(), &[("INSTALL_FLANNELD", "false")]);
    assert!(out.status.success());
    assert!(dest.path().join("opt/cni/bin/flannel").is_file());
    assert!(
        !dest.path().join("usr").exists(),
        "DaemonSet mode installs no flanneld"
    );

    std::fs::remove_file(src.path().join("flannel-rs-cni")).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = install(src.path(), empty.path(), &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("flannel-rs-cni"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "nothing is half-installed"
    );
}

/// The DaemonSet with the TUN overlay applied as `kubectl patch --type strategic` does:
/// containers and volumes merge by name.
fn patched_daemonset() -> serde_json::Value {
    const KEYS: &[(&[&str], &str)] = &[
        (&["spec", "template", "spec", "containers"], "name"),
        (&["spec", "template", "spec", "initContainers"], "name"),
        (&["spec", "template", "spec", "volumes"], "name"),
    ];
    let docs = manifest();
    let mut ds = serde_json::to_value(by_kind(&docs, "DaemonSet")).unwrap();
    let text = read("deploy/kube-flannel-tun.patch.yaml");
    let patch: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    conformance::kubeapi::strategic_merge_patch_with(&mut ds, &patch, KEYS);
    ds
}

#[test]
fn tun_backends_get_a_documented_overlay_of_the_same_daemonset() {
    let text = read("deploy/kube-flannel-tun.patch.yaml");
    let docs = manifest();
    let ds = by_kind(&docs, "DaemonSet");
    // The command in its header names the manifest's DaemonSet and the file itself.
    let cmd = format!(
        "kubectl -n {} patch daemonset {} --type strategic",
        ds["metadata"]["namespace"].as_str().unwrap(),
        ds["metadata"]["name"].as_str().unwrap()
    );
    assert!(text.contains(&cmd), "{text}");
    assert!(text.contains("--patch-file deploy/kube-flannel-tun.patch.yaml"));
    for why in ["/dev/net/tun", "device cgroup", "udp", "crash-loops"] {
        assert!(text.contains(why), "the overlay says why ({why}): {text}");
    }

    let patched = patched_daemonset();
    let before = serde_json::to_value(ds).unwrap();
    let containers = patched["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "merged into the container, not added");
    let main = &containers[0];
    assert_eq!(main["securityContext"]["privileged"], true);
    // Nothing else changes: same image, command, args, env, mounts, init containers.
    let base = &before["spec"]["template"]["spec"]["containers"][0];
    for field in [
        "image",
        "command",
        "args",
        "env",
        "volumeMounts",
        "resources",
    ] {
        assert_eq!(main[field], base[field], "{field}");
    }
    assert_eq!(
        patched["spec"]["template"]["spec"]["initContainers"],
        before["spec"]["template"]["spec"]["initContainers"]
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["volumes"],
        before["spec"]["template"]["spec"]["volumes"]
    );
}

#[test]
fn the_cni_plugins_installed_are_a_manifest_setting() {
    let docs = manifest();
    let init = &by_kind(&docs, "DaemonSet")["spec"]["template"]["spec"]["initContainers"][0];
    let setting = init["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("CNI_PLUGINS"))
        .expect("the init container's CNI_PLUGINS setting")["value"]
        .as_str()
        .unwrap()
        .to_owned();
    // Every name is one the image's multicall executable is linked under.
    assert!(image_files().contains("/opt/flannel-rs/bin/flannel-rs-cni"));
    let links = read("scripts/link-plugins.sh");
    let served = links
        .lines()
        .find_map(|l| l.strip_prefix("PLUGINS=${PLUGINS:-"))
        .and_then(|l| l.strip_suffix('}'))
        .expect("link-plugins.sh's default plugin list");
    for p in setting.split_whitespace() {
        assert!(
            served.split_whitespace().any(|s| s == p),
            "{p} is not a plugin the image has: {served}"
        );
    }
    assert!(setting.split_whitespace().any(|p| p == "flannel"));

    // The installer installs exactly what the setting names and leaves the node's other
    // plugins alone.
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    fake_build(src.path());
    let bin = dest.path().join("opt/cni/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("bridge"), "the node's own bridge").unwrap();
    let out = install(
        src.path(),
        dest.path(),
        &[("CNI_PLUGINS", "flannel"), ("INSTALL_FLANNELD", "false")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(bin.join("flannel")).unwrap(),
        "#!/bin/sh\necho flannel-rs-cni\n"
    );
    assert_eq!(
        std::fs::read_to_string(bin.join("bridge")).unwrap(),
        "the node's own bridge"
    );
    assert!(!bin.join("host-local").exists() && !bin.join("portmap").exists());

    // A name flannel-rs does not build is refused before anything is copied.
    let empty = tempfile::tempdir().unwrap();
    let out = install(
        src.path(),
        empty.path(),
        &[("CNI_PLUGINS", "flannel macvlan")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("macvlan"));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

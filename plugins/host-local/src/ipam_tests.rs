use std::fs;
use std::path::Path;

use super::*;
use crate::config;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn conf(dir: &Path, ipam: &str, cni_args: &str) -> IpamConfig {
    let ipam = ipam.replace("DIR", dir.to_str().unwrap());
    config::load(
        format!(r#"{{"cniVersion":"1.0.0","name":"net","ipam":{ipam}}}"#).as_bytes(),
        cni_args,
    )
    .unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("net"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

const DUAL: &str =
    r#"{"dataDir":"DIR","ranges":[[{"subnet":"10.1.0.0/29"}],[{"subnet":"fd00::/120"}]]}"#;

#[test]
fn dual_stack_add_gets_one_address_per_set() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), DUAL, "");
    let out = add(&c, "c1", "eth0").unwrap();
    let got: Vec<(IpAddr, u8, IpAddr)> = out
        .ips
        .iter()
        .map(|a| (a.ip, a.prefix, a.gateway))
        .collect();
    assert_eq!(
        got,
        [
            (ip("10.1.0.2"), 29, ip("10.1.0.1")),
            (ip("fd00::2"), 120, ip("fd00::1"))
        ]
    );
    assert_eq!(out.dns, None);
    assert_eq!(
        files(tmp.path()),
        [
            "10.1.0.2",
            "fd00::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
    let e = add(&c, "c1", "eth0").unwrap_err().to_string();
    assert_eq!(e, "failed to allocate for range 0: 10.1.0.2 has been allocated to c1, duplicate allocation is not allowed");
}

#[test]
fn failure_in_a_later_set_frees_what_this_add_reserved_only() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(
        tmp.path(),
        r#"{"dataDir":"DIR","ranges":[[{"subnet":"10.1.0.0/29"}],[{"subnet":"fd00::/126"}]]}"#,
        "",
    );
    add(&c, "a", "eth0").unwrap();
    add(&c, "b", "eth0").unwrap();
    let before = files(tmp.path());
    let e = add(&c, "c", "eth0").unwrap_err().to_string();
    assert_eq!(
        e,
        "failed to allocate for range 1: no IP addresses available in range set: fd00::1-fd00::3"
    );
    assert_eq!(
        files(tmp.path()),
        before,
        "10.1.0.4 reserved for c was released again"
    );
}

#[test]
fn requested_ips_go_to_their_sets_and_leftovers_fail_the_add() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), DUAL, "IP=fd00::42");
    let out = add(&c, "c1", "eth0").unwrap();
    assert_eq!(
        out.ips.iter().map(|a| a.ip).collect::<Vec<_>>(),
        [ip("10.1.0.2"), ip("fd00::42")]
    );

    let c = conf(tmp.path(), DUAL, "IP=10.9.9.9");
    let e = add(&c, "c2", "eth0").unwrap_err().to_string();
    assert_eq!(e, "failed to allocate all requested IPs: 10.9.9.9");
    assert!(
        !files(tmp.path()).contains(&"10.1.0.3".to_string()),
        "rolled back"
    );

    let c = conf(tmp.path(), DUAL, "IP=10.1.0.1");
    let e = add(&c, "c3", "eth0").unwrap_err().to_string();
    assert_eq!(
        e,
        "failed to allocate for range 0: requested ip 10.1.0.1 is subnet's gateway"
    );
}

#[test]
fn del_is_idempotent_and_check_follows_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), DUAL, "");
    add(&c, "c1", "eth0").unwrap();
    add(&c, "c2", "eth0").unwrap();
    check(&c, "c1", "eth0").unwrap();
    assert_eq!(
        check(&c, "c9", "eth0").unwrap_err().to_string(),
        "host-local: Failed to find address added by container c9"
    );
    del(&c, "c1", "eth0").unwrap();
    del(&c, "c1", "eth0").unwrap();
    del(&c, "never", "eth0").unwrap();
    assert!(check(&c, "c1", "eth0").is_err());
    assert_eq!(
        files(tmp.path()),
        [
            "10.1.0.3",
            "fd00::3",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ]
    );
}

#[test]
fn gc_frees_only_stale_attachments() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(tmp.path(), DUAL, "");
    add(&c, "keep", "eth0").unwrap();
    add(&c, "stale", "eth0").unwrap();
    let mut freed = gc(&c, &[("keep".into(), "eth0".into())]).unwrap();
    freed.sort();
    assert_eq!(freed, [ip("10.1.0.3"), ip("fd00::3")]);
    check(&c, "keep", "eth0").unwrap();
    assert!(check(&c, "stale", "eth0").is_err());
}

#[test]
fn resolv_conf_feeds_dns_and_is_read_before_touching_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    fs::write(&resolv, "nameserver 10.0.0.10\nsearch a.example\n").unwrap();
    let ipam = format!(
        r#"{{"dataDir":"DIR/data","resolvConf":"{}","subnet":"10.1.0.0/24"}}"#,
        resolv.display()
    );
    let out = add(&conf(tmp.path(), &ipam, ""), "c1", "eth0").unwrap();
    let dns = out.dns.unwrap();
    assert_eq!(
        (dns.nameservers, dns.search),
        (vec!["10.0.0.10".to_string()], vec!["a.example".to_string()])
    );

    let missing = r#"{"dataDir":"DIR/other","resolvConf":"DIR/nope","subnet":"10.1.0.0/24"}"#;
    let e = add(&conf(tmp.path(), missing, ""), "c1", "eth0")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "open {}/nope: no such file or directory",
            tmp.path().display()
        )
    );
    assert!(!tmp.path().join("other").exists());
}

#[test]
fn routes_are_passed_through() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf(
        tmp.path(),
        r#"{"dataDir":"DIR","subnet":"10.1.0.0/24","routes":[{"dst":"0.0.0.0/0"}]}"#,
        "",
    );
    let out = add(&c, "c1", "eth0").unwrap();
    assert_eq!(out.routes, c.routes);
    assert_eq!(out.routes[0].dst.to_string(), "0.0.0.0/0");
}

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn load_json(v: serde_json::Value) -> Result<IpamConfig, Error> {
    load(v.to_string().as_bytes(), "")
}

fn err(v: serde_json::Value) -> String {
    load_json(v).unwrap_err().to_string()
}

fn ipam(extra: serde_json::Value) -> serde_json::Value {
    let mut ipam = serde_json::json!({"type": "host-local"});
    ipam.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::json!({"cniVersion": "1.0.0", "name": "net", "ipam": ipam})
}

#[test]
fn full_config() {
    let c = load(
        br#"{"cniVersion":"1.0.0","name":"net","ipam":{"type":"host-local","dataDir":"/d","resolvConf":"/r",
            "subnet":"10.0.0.0/24","ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.10","rangeEnd":"10.1.0.20",
            "gateway":"10.1.0.254"},{"subnet":"10.2.0.0/24"}],[{"subnet":"fd00::/64"}]],
            "routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.1/16","gw":"10.1.0.1","mtu":1400,"table":5,"scope":0}]},
            "runtimeConfig":{"ipRanges":[[{"subnet":"10.3.0.0/24"}]],"ips":["10.3.0.9/24"]},
            "args":{"cni":{"ips":["10.1.0.15"]}}}"#,
        "IgnoreUnknown=1;IP=fd00::5;K8S_POD_NAME=p",
    )
    .unwrap();
    assert_eq!((c.name.as_str(), c.cni_version.as_str()), ("net", "1.0.0"));
    assert_eq!(
        (
            c.data_dir.to_str(),
            c.resolv_conf.as_deref().and_then(|p| p.to_str())
        ),
        (Some("/d"), Some("/r"))
    );
    let sets: Vec<String> = c.range_sets.iter().map(ToString::to_string).collect();
    assert_eq!(
        sets,
        [
            "10.3.0.1-10.3.0.254",
            "10.0.0.1-10.0.0.254",
            "10.1.0.10-10.1.0.20,10.2.0.1-10.2.0.254",
            "fd00::1-fd00::ffff:ffff:ffff:ffff"
        ]
    );
    assert_eq!(
        c.requested_ips,
        [ip("fd00::5"), ip("10.1.0.15"), ip("10.3.0.9")]
    );
    assert_eq!(c.routes.len(), 2);
    let r = &c.routes[1];
    assert_eq!(
        r.dst.to_string(),
        "10.9.0.1/16",
        "host bits kept as written"
    );
    assert_eq!(
        (r.gw, r.mtu, r.table, r.scope, r.advmss),
        (Some(ip("10.1.0.1")), 1400, Some(5), Some(0), 0)
    );
}

#[test]
fn defaults_and_case_insensitive_keys() {
    let c = load_json(serde_json::json!({"NAME": "n", "IPAM": {"Subnet": "10.1.0.0/24", "DATADIR": "/a", "datadir": "/b"}})).unwrap();
    assert_eq!((c.name.as_str(), c.cni_version.as_str()), ("n", ""));
    assert_eq!(c.data_dir, PathBuf::from("/b"), "later duplicate key wins");
    let c = load_json(ipam(
        serde_json::json!({"subnet": "10.1.0.0/24", "gateway": null, "resolvConf": ""}),
    ))
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.resolv_conf, None);
    assert!(c.routes.is_empty() && c.requested_ips.is_empty());
}

#[test]
fn structural_errors() {
    assert_eq!(
        err(serde_json::json!({"name": "n"})),
        "IPAM config missing 'ipam' key"
    );
    assert_eq!(
        err(serde_json::json!({"name": "n", "ipam": null})),
        "IPAM config missing 'ipam' key"
    );
    assert_eq!(err(ipam(serde_json::json!({}))), "no IP ranges specified");
    assert_eq!(
        err(ipam(serde_json::json!({"ranges": []}))),
        "no IP ranges specified"
    );
    assert_eq!(
        err(ipam(serde_json::json!({"ranges": [[]]}))),
        "invalid range set 0: empty range set"
    );
    assert_eq!(
        err(ipam(serde_json::json!({"ranges": [[{}]]}))),
        "invalid range set 0: IP <nil> not v4 nor v6"
    );
    assert_eq!(
        err(ipam(
            serde_json::json!({"subnet": "10.7.0.0/24", "ranges": [[null]]})
        )),
        "invalid range set 1: IP <nil> not v4 nor v6"
    );
    assert_eq!(
        err(ipam(
            serde_json::json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]})
        )),
        "range set 0 overlaps with 1"
    );
    assert_eq!(
        err(ipam(
            serde_json::json!({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}], [{"subnet": "fd00::/120"}]]})
        )),
        "range set 1 overlaps with 2"
    );
}

#[test]
fn old_versions_allow_one_address_per_family() {
    let two_v4 = |v: &str| serde_json::json!({"cniVersion": v, "name": "n", "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}});
    assert_eq!(
        err(two_v4("0.2.0")),
        "CNI version 0.2.0 does not support more than 1 address per family"
    );
    assert_eq!(
        err(two_v4("")),
        "CNI version  does not support more than 1 address per family"
    );
    assert!(load_json(two_v4("0.3.0")).is_ok());
    let dual = serde_json::json!({"cniVersion": "0.2.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}});
    assert!(load_json(dual).is_ok());
}

#[test]
fn type_errors_read_like_go() {
    let cases = [
        (ipam(serde_json::json!({"dataDir": 5, "subnet": "10.1.0.0/24"})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.dataDir of type string"),
        (ipam(serde_json::json!({"ranges": [[{"subnet": "10.9.0.0/29", "gateway": 7}]]})), "json: cannot unmarshal number into Go struct field Range.ipam.ranges.gateway of type net.IP"),
        (ipam(serde_json::json!({"ranges": [[{"subnet": 5}]]})), "json: cannot unmarshal number into Go struct field Range.ipam.ranges.subnet of type string"),
        (ipam(serde_json::json!({"ranges": 5})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.ranges of type []allocator.RangeSet"),
        (ipam(serde_json::json!({"ranges": [5]})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.ranges of type allocator.RangeSet"),
        (ipam(serde_json::json!({"ranges": [[5]]})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.ranges of type allocator.Range"),
        (ipam(serde_json::json!({"subnet": "10.1.0.0/24", "routes": 5})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.routes of type []*types.Route"),
        (ipam(serde_json::json!({"subnet": "10.1.0.0/24", "routes": [5]})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.routes of type types.route"),
        (ipam(serde_json::json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": 5}]})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.routes of type net.IP"),
        (ipam(serde_json::json!({"subnet": "10.1.0.0/24", "routes": [{"dst": 5}]})), "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.routes of type string"),
        (ipam(serde_json::json!({"subnet": "10.1.0.0/24", "gateway": true})), "json: cannot unmarshal bool into Go struct field IPAMConfig.ipam.gateway of type net.IP"),
        (ipam(serde_json::json!({"subnet": "10.1.0.0/24", "gateway": [1, 2, 3, 4]})), "json: cannot unmarshal array into Go struct field IPAMConfig.ipam.gateway of type net.IP"),
        (serde_json::json!({"name": "n", "ipam": 5}), "json: cannot unmarshal number into Go struct field Net.ipam of type allocator.IPAMConfig"),
        (serde_json::json!({"name": "n", "ipam": {"subnet": "10.1.0.0/24"}, "runtimeConfig": {"ips": [5]}}), "json: cannot unmarshal number into Go struct field .runtimeConfig.ips of type *ip.IP"),
        (serde_json::json!({"name": "n", "ipam": {"subnet": "10.1.0.0/24"}, "runtimeConfig": {"ipRanges": [[{"subnet": 5}]]}}), "json: cannot unmarshal number into Go struct field Range.runtimeConfig.ipRanges.subnet of type string"),
        (serde_json::json!({"name": "n", "ipam": {"subnet": "10.1.0.0/24"}, "args": {"cni": 5}}), "json: cannot unmarshal number into Go struct field .args.cni of type allocator.IPAMArgs"),
        (serde_json::json!({"name": "n", "ipam": {"subnet": "10.1.0.0/24"}, "args": {"cni": {"ips": [5]}}}), "json: cannot unmarshal number into Go struct field IPAMArgs.args.cni.ips of type *ip.IP"),
        (serde_json::json!({"name": "n", "ipam": {"subnet": "10.1.0.0/24"}, "args": 5}), r#"json: cannot unmarshal number into Go struct field Net.args of type struct { A *allocator.IPAMArgs "json:\"cni\"" }"#),
    ];
    for (config, want) in cases {
        assert_eq!(err(config.clone()), want, "{config}");
    }
}

#[test]
fn unmarshaller_errors_abort_and_win_over_earlier_type_errors() {
    assert_eq!(
        err(ipam(serde_json::json!({"dataDir": 5, "subnet": "x"}))),
        "invalid CIDR address: x"
    );
    assert_eq!(
        err(ipam(serde_json::json!({"ranges": [[{"subnet": null}]]}))),
        "invalid CIDR address: "
    );
    assert_eq!(
        err(ipam(
            serde_json::json!({"ranges": [[{"subnet": "10.9.0.0/29", "rangeStart": "x"}]]})
        )),
        "invalid IP address: x"
    );
    assert_eq!(
        err(ipam(
            serde_json::json!({"subnet": "10.1.0.0/24", "routes": [{"dst": "x"}]})
        )),
        "invalid CIDR address: x"
    );
    let ips = |v: serde_json::Value| serde_json::json!({"name": "n", "ipam": {"subnet": "10.1.0.0/24"}, "args": {"cni": {"ips": v}}});
    assert_eq!(err(ips(serde_json::json!(["x"]))), "invalid IP address x");
    assert_eq!(
        err(ips(serde_json::json!([""]))),
        "cannot understand ip: IP <nil> not v4 nor v6"
    );
}

#[test]
fn cni_args_errors_surface() {
    let conf = ipam(serde_json::json!({"subnet": "10.1.0.0/24"})).to_string();
    assert_eq!(
        load(conf.as_bytes(), "IP=1.2.3.4;FOO=1")
            .unwrap_err()
            .to_string(),
        r#"ARGS: unknown args ["FOO=1"]"#
    );
    assert_eq!(
        load(conf.as_bytes(), "IP=10.1.0.7").unwrap().requested_ips,
        [ip("10.1.0.7")]
    );
}

#[test]
fn requested_duplicates_collapse() {
    let c = load(
        br#"{"name":"n","ipam":{"subnet":"10.1.0.0/24"},"args":{"cni":{"ips":["10.1.0.7","10.1.0.7/24"]}},"runtimeConfig":{"ips":["10.1.0.8"]}}"#,
        "IP=10.1.0.8",
    )
    .unwrap();
    assert_eq!(c.requested_ips, [ip("10.1.0.8"), ip("10.1.0.7")]);
}

#[test]
fn gc_attachments_from_both_keys() {
    let v = valid_attachments(
        br#"{"name":"n","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"b","ifname":"net1"}]}"#,
    )
    .unwrap();
    assert_eq!(
        v,
        [
            ("a".to_string(), "eth0".to_string()),
            ("b".to_string(), "net1".to_string())
        ]
    );
    assert!(valid_attachments(br#"{"name":"n"}"#).unwrap().is_empty());
    assert!(valid_attachments(br#"{"cni.dev/valid-attachments":5}"#).is_err());
}

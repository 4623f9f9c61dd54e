use super::*;
use crate::config::PortMapConf;

pub(crate) fn conf(mappings: &[(u16, u16, &str, Option<&str>)]) -> PortMapConf {
    PortMapConf {
        name: "cbr0".into(),
        snat: true,
        masq_all: false,
        mark_masq_bit: 13,
        external_set_mark_chain: None,
        conditions_v4: vec![],
        conditions_v6: vec![],
        backend: None,
        mappings: mappings
            .iter()
            .map(|(h, c, p, ip)| PortMapping {
                host_port: *h,
                container_port: *c,
                protocol: (*p).into(),
                host_ip: ip.map(|s| s.parse().unwrap()),
            })
            .collect(),
        container_v4: Some("10.244.1.2/24".parse().unwrap()),
        container_v6: None,
    }
}

fn line(chain: &str, args: &[String]) -> String {
    format!("-A {chain} {}", args.join(" "))
}

#[test]
fn chain_names_are_upstreams_hashes() {
    assert_eq!(
        dnat_chain_name("cbr0", "ctr1"),
        "CNI-DN-9cccacf967e00a3c04e26"
    );
    assert_eq!(dnat_chain_name("cbr0", "ctr1").len(), 28);
    assert!(legacy_snat_chain_name("cbr0", "ctr1").starts_with("CNI-SN-"));
    assert_ne!(
        dnat_chain_name("cbr0", "ctr2"),
        dnat_chain_name("cbr0", "ctr1")
    );
}

#[test]
fn observed_example_rules() {
    let c = conf(&[(8080, 80, "tcp", None), (5353, 53, "udp", Some("10.0.0.5"))]);
    let chain = container_dnat_chain(&c, "ctr1", c.container_v4.unwrap());
    let name = "CNI-DN-9cccacf967e00a3c04e26";
    let got: Vec<String> = chain.rules.iter().map(|r| line(name, r)).collect();
    assert_eq!(
        got,
        [
            "-s 10.244.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
            "-s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
            "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.244.1.2:80",
            "-s 10.244.1.0/24 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK",
            "-s 127.0.0.1/32 -d 10.0.0.5/32 -p udp -m udp --dport 5353 -j CNI-HOSTPORT-SETMARK",
            "-d 10.0.0.5/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.244.1.2:53",
        ]
        .map(|r| format!("-A {name} {r}"))
    );
    let entries: Vec<String> = chain
        .entry_rules
        .iter()
        .map(|r| chain.jump(r).join(" "))
        .collect();
    assert_eq!(
        entries,
        [
            format!("-p tcp -m comment --comment dnat name: \"cbr0\" id: \"ctr1\" -m multiport --dports 8080 -j {name}"),
            format!("-p udp -m comment --comment dnat name: \"cbr0\" id: \"ctr1\" -m multiport --dports 5353 -j {name}"),
        ]
    );
    assert_eq!(chain.entry_chains, vec![DNAT_CHAIN]);
}

#[test]
fn multiport_splits_at_fifteen_and_sorts_protocols() {
    let mut maps: Vec<(u16, u16, &str, Option<&str>)> =
        (1..=16).map(|p| (1000 + p, 80, "udp", None)).collect();
    maps.insert(3, (22, 22, "tcp", None));
    maps.push((9, 9, "sctp", None));
    let c = conf(&maps);
    let chain = container_dnat_chain(&c, "x", c.container_v4.unwrap());
    let summary: Vec<(String, String)> = chain
        .entry_rules
        .iter()
        .map(|r| (r[1].clone(), r[9].clone()))
        .collect();
    let first15: Vec<String> = (1001..=1015).map(|p: u16| p.to_string()).collect();
    assert_eq!(
        summary,
        vec![
            ("sctp".into(), "9".into()),
            ("tcp".into(), "22".into()),
            ("udp".into(), first15.join(",")),
            ("udp".into(), "1016".into()),
        ]
    );
}

#[test]
fn masq_all_no_snat_external_chain_and_conditions() {
    let mut c = conf(&[(80, 8080, "tcp", Some("0.0.0.0"))]);
    c.masq_all = true;
    let chain = container_dnat_chain(&c, "x", c.container_v4.unwrap());
    let rules: Vec<String> = chain.rules.iter().map(|r| r.join(" ")).collect();
    assert_eq!(
        rules,
        [
            "-p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK",
            "-p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.2:8080"
        ],
        "unspecified hostIP adds no -d; masqAll matches any source and drops the localhost rule"
    );

    c.masq_all = false;
    c.snat = false;
    c.conditions_v4 = vec!["!".into(), "-s".into(), "10.0.0.0/8".into()];
    let chain = container_dnat_chain(&c, "x", c.container_v4.unwrap());
    assert_eq!(chain.rules.len(), 1, "no mark rules without snat");
    assert_eq!(&chain.entry_rules[0][10..], ["!", "-s", "10.0.0.0/8"]);

    c.snat = true;
    c.external_set_mark_chain = Some("KUBE-MARK-MASQ".into());
    let chain = container_dnat_chain(&c, "x", c.container_v4.unwrap());
    assert!(chain.rules[0].ends_with(&["-j".to_owned(), "KUBE-MARK-MASQ".to_owned()]));
}

#[test]
fn ipv6_container() {
    let mut c = conf(&[
        (80, 8080, "tcp", None),
        (81, 81, "tcp", Some("10.0.0.5")),
        (82, 82, "tcp", Some("fd00::5")),
    ]);
    c.container_v6 = Some("fd00:1::2/64".parse().unwrap());
    let chain = container_dnat_chain(&c, "x", c.container_v6.unwrap());
    let rules: Vec<String> = chain.rules.iter().map(|r| r.join(" ")).collect();
    assert_eq!(
        rules,
        [
            "-s fd00:1::/64 -p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK",
            "-p tcp -m tcp --dport 80 -j DNAT --to-destination [fd00:1::2]:8080",
            "-s fd00:1::/64 -d fd00::5/128 -p tcp -m tcp --dport 82 -j CNI-HOSTPORT-SETMARK",
            "-d fd00::5/128 -p tcp -m tcp --dport 82 -j DNAT --to-destination [fd00:1::2]:82",
        ],
        "no localhost rule for v6; v4 host IPs skipped"
    );
    assert_eq!(
        chain.entry_rules[0][9], "80,81,82",
        "entry rules list every port, as upstream"
    );
}

#[test]
fn top_level_chains() {
    let mut c = conf(&[]);
    c.mark_masq_bit = 0;
    assert_eq!(
        setmark_chain(&c).rules[0].join(" "),
        "-m comment --comment CNI portfwd masquerade mark -j MARK --set-xmark 0x1/0x1"
    );
    c.mark_masq_bit = 31;
    let masq = masq_chain(&c);
    assert_eq!(
        masq.rules[0].join(" "),
        "-m mark --mark 0x80000000/0x80000000 -j MASQUERADE"
    );
    assert!(masq.prepend_entry);
    assert_eq!(
        toplevel_dnat_chain().entry_chains,
        vec!["PREROUTING", "OUTPUT"]
    );
}

#[test]
fn long_comments_are_trimmed_on_a_char_boundary() {
    let s = trim_comment("é".repeat(200));
    assert!(s.len() <= 255 && s.len() >= 254);
    assert_eq!(trim_comment("short".into()), "short");
}

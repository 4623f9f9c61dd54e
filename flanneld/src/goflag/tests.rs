use super::*;

fn set() -> FlagSet {
    FlagSet::new(
        "prog",
        vec![
            Flag::new("ip-masq", Kind::Bool, "false", "masquerade"),
            Flag::new("forward", Kind::Bool, "true", "forward rules"),
            Flag::new(
                "etcd-endpoints",
                Kind::String,
                "http://127.0.0.1:2379",
                "a `list` of endpoints",
            ),
            Flag::new("etcd-cafile", Kind::String, "", "CA file"),
            Flag::new("etcd-certfile", Kind::String, "", "cert"),
            Flag::new("etcd-keyfile", Kind::String, "", "key"),
            Flag::new("resync", Kind::Int, "5", "seconds"),
            Flag::new("count", Kind::Uint, "0", "count"),
            Flag::new("iface", Kind::List, "", "interface"),
            Flag::new("v", Kind::Int, "0", "verbosity"),
            Flag::new("q", Kind::Bool, "false", "quiet"),
        ],
    )
}

fn parse(args: &[&str]) -> Result<Parsed, FlagError> {
    set().parse(args)
}

#[test]
fn upstream_unit_line_parses_as_go_does() {
    let line = "--ip-masq --etcd-endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379 \
                -etcd-cafile=/etc/etcd/ca.pem -etcd-certfile=/etc/etcd/server.pem \
                -etcd-keyfile=/etc/etcd/server-key.pem";
    let args: Vec<&str> = line.split_whitespace().collect();
    let s = set();
    let p = s.parse(&args).unwrap();
    let v = s.values(&p);
    assert!(v.bool("ip-masq"));
    assert_eq!(
        v.string("etcd-endpoints"),
        "https://10.0.0.1:2379,https://10.0.0.2:2379"
    );
    assert_eq!(v.string("etcd-cafile"), "/etc/etcd/ca.pem");
    assert_eq!(v.string("etcd-certfile"), "/etc/etcd/server.pem");
    assert_eq!(v.string("etcd-keyfile"), "/etc/etcd/server-key.pem");
    assert!(v.bool("forward"), "untouched flags keep their default");
    assert!(p.args.is_empty());
}

#[test]
fn flag_forms_table() {
    // (argv, flag, expected value via string form)
    let cases: &[(&[&str], &str, &str)] = &[
        (&["-etcd-cafile", "/a"], "etcd-cafile", "/a"),
        (&["--etcd-cafile", "/a"], "etcd-cafile", "/a"),
        (&["-etcd-cafile=/a"], "etcd-cafile", "/a"),
        (&["--etcd-cafile=/a=b"], "etcd-cafile", "/a=b"),
        (&["-etcd-cafile="], "etcd-cafile", ""),
        // The next word is the value even when it looks like a flag.
        (&["-etcd-cafile", "-ip-masq"], "etcd-cafile", "-ip-masq"),
        (&["-resync", "0x10"], "resync", "0x10"),
        (&["-resync=-3"], "resync", "-3"),
        (&["-etcd-cafile=/a", "-etcd-cafile=/b"], "etcd-cafile", "/b"),
    ];
    let s = set();
    for (argv, name, want) in cases {
        let p = s.parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let got = match s.flags().iter().find(|f| f.name == *name).unwrap().kind {
            Kind::Int => s.values(&p).int(name).to_string(),
            _ => s.values(&p).string(name),
        };
        let want = if *name == "resync" {
            parse_int(want).unwrap().to_string()
        } else {
            want.to_string()
        };
        assert_eq!(got, want, "{argv:?}");
    }
}

#[test]
fn booleans_take_values_only_with_equals() {
    let s = set();
    for (argv, want, rest) in [
        (&["-ip-masq"][..], true, &[][..]),
        (&["--ip-masq=false"], false, &[]),
        (&["-ip-masq=0"], false, &[]),
        (&["-ip-masq=T"], true, &[]),
        (&["-ip-masq=True"], true, &[]),
        // "false" after a bare boolean is a positional argument and ends the flags.
        (&["-ip-masq", "false", "-q"], true, &["false", "-q"]),
    ] {
        let p = s.parse(argv).unwrap();
        assert_eq!(s.values(&p).bool("ip-masq"), want, "{argv:?}");
        assert_eq!(p.args, rest, "{argv:?}");
    }
    assert_eq!(
        parse(&["-ip-masq=yes"]).unwrap_err().to_string(),
        "invalid boolean value \"yes\" for -ip-masq: parse error"
    );
    assert!(!set()
        .values(&parse(&["-forward=false"]).unwrap())
        .bool("forward"));
}

#[test]
fn termination_rules() {
    let p = parse(&["-q", "--", "-ip-masq"]).unwrap();
    assert_eq!(p.args, ["-ip-masq"], "-- is consumed and ends flags");
    let p = parse(&["-q", "pos", "-ip-masq"]).unwrap();
    assert_eq!(p.args, ["pos", "-ip-masq"]);
    assert!(!p.is_set("ip-masq"));
    let p = parse(&["-", "-q"]).unwrap();
    assert_eq!(p.args, ["-", "-q"], "a lone dash is positional");
    let p = parse(&["-q", "--", "--"]).unwrap();
    assert_eq!(p.args, ["--"]);
}

#[test]
fn errors_match_go_texts() {
    let cases: &[(&[&str], &str)] = &[
        (&["-nope"], "flag provided but not defined: -nope"),
        (&["--nope=1"], "flag provided but not defined: -nope"),
        (&["-etcd-cafile"], "flag needs an argument: -etcd-cafile"),
        (&["---x"], "bad flag syntax: ---x"),
        (&["-=x"], "bad flag syntax: -=x"),
        (
            &["-resync", "abc"],
            "invalid value \"abc\" for flag -resync: parse error",
        ),
        (
            &["-resync=9223372036854775808"],
            "invalid value \"9223372036854775808\" for flag -resync: value out of range",
        ),
        (
            &["-count=-1"],
            "invalid value \"-1\" for flag -count: parse error",
        ),
    ];
    for (argv, want) in cases {
        assert_eq!(parse(argv).unwrap_err().to_string(), *want, "{argv:?}");
    }
    assert_eq!(parse(&["-h"]).unwrap_err(), FlagError::Help);
    assert_eq!(parse(&["--help"]).unwrap_err(), FlagError::Help);
}

#[test]
fn go_integer_syntax() {
    for (s, want) in [
        ("10", Ok(10)),
        ("-10", Ok(-10)),
        ("+7", Ok(7)),
        ("0x1F", Ok(31)),
        ("0o17", Ok(15)),
        ("017", Ok(15)),
        ("0b101", Ok(5)),
        ("1_000", Ok(1000)),
        ("0x_1f", Ok(31)),
        ("0", Ok(0)),
        ("-9223372036854775808", Ok(i64::MIN)),
        ("1__0", Err("parse error")),
        ("_1", Err("parse error")),
        ("1_", Err("parse error")),
        ("08", Err("parse error")),
        ("0x", Err("parse error")),
        ("", Err("parse error")),
        (" 1", Err("parse error")),
        ("-9223372036854775809", Err("value out of range")),
    ] {
        assert_eq!(parse_int(s), want, "{s:?}");
    }
    assert_eq!(parse_uint("18446744073709551615"), Ok(u64::MAX));
    assert_eq!(
        parse_uint("18446744073709551616"),
        Err("value out of range")
    );
}

#[test]
fn repeatable_flags_accumulate() {
    let s = set();
    let p = s
        .parse(&["-iface", "eth0", "--iface=10.0.0.1", "-iface", "eth1"])
        .unwrap();
    assert_eq!(s.values(&p).list("iface"), ["eth0", "10.0.0.1", "eth1"]);
    assert!(s
        .values(&s.parse::<&str>(&[]).unwrap())
        .list("iface")
        .is_empty());
}

#[test]
fn env_fills_only_flags_absent_from_the_command_line() {
    let s = set();
    let mut p = s.parse(&["-etcd-cafile=/cli"]).unwrap();
    let env = |k: &str| match k {
        "FLANNELD_ETCD_CAFILE" => Some("/env".to_owned()),
        "FLANNELD_IP_MASQ" => Some("true".to_owned()),
        "FLANNELD_ETCD_KEYFILE" => Some(String::new()),
        "FLANNELD_IFACE" => Some("eth9".to_owned()),
        _ => None,
    };
    s.apply_env(&mut p, "FLANNELD", env).unwrap();
    let v = s.values(&p);
    assert_eq!(v.string("etcd-cafile"), "/cli");
    assert!(v.bool("ip-masq"));
    assert_eq!(v.string("etcd-keyfile"), "", "empty env values are ignored");
    assert!(!p.is_set("etcd-keyfile"));
    assert_eq!(v.list("iface"), ["eth9"]);

    let mut p = s.parse::<&str>(&[]).unwrap();
    let err = s
        .apply_env(&mut p, "FLANNELD", |k| {
            (k == "FLANNELD_RESYNC").then(|| "x".to_owned())
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value \"x\" for FLANNELD_RESYNC: parse error"
    );
    assert_eq!(
        env_name("FLANNELD", "kube.api-url"),
        "FLANNELD_KUBE_API_URL"
    );
}

#[test]
fn defaults_text_is_laid_out_like_go() {
    let text = set().defaults_text();
    assert!(text.starts_with("  -count uint\n    \tcount\n"), "{text}");
    assert!(text.contains("  -etcd-endpoints list\n    \ta list of endpoints (default \"http://127.0.0.1:2379\")\n"), "{text}");
    assert!(
        text.contains("  -forward\n    \tforward rules (default true)\n"),
        "{text}"
    );
    assert!(text.contains("  -ip-masq\n    \tmasquerade\n"), "{text}");
    assert!(text.contains("  -iface value\n    \tinterface\n"), "{text}");
    assert!(text.contains("  -q\tquiet\n"), "{text}");
    assert!(
        text.contains("  -resync int\n    \tseconds (default 5)\n"),
        "{text}"
    );
}

#[test]
fn atoi_takes_what_go_takes_and_prints_go_errors() {
    assert_eq!(atoi("5000"), Ok(5000));
    assert_eq!(atoi("+7"), Ok(7));
    assert_eq!(atoi("-3"), Ok(-3));
    assert_eq!(
        atoi("007"),
        Ok(7),
        "decimal only: leading zeros are not octal"
    );
    assert_eq!(atoi("9223372036854775807"), Ok(i64::MAX));
    assert_eq!(atoi("-9223372036854775808"), Ok(i64::MIN));
    let err = |s: &str| atoi(s).unwrap_err().to_string();
    assert_eq!(err("abc"), r#"strconv.Atoi: parsing "abc": invalid syntax"#);
    assert_eq!(err(""), r#"strconv.Atoi: parsing "": invalid syntax"#);
    assert_eq!(err("-"), r#"strconv.Atoi: parsing "-": invalid syntax"#);
    assert_eq!(
        err("0x10"),
        r#"strconv.Atoi: parsing "0x10": invalid syntax"#
    );
    assert_eq!(
        err("1_000"),
        r#"strconv.Atoi: parsing "1_000": invalid syntax"#
    );
    assert_eq!(err(" 5"), r#"strconv.Atoi: parsing " 5": invalid syntax"#);
    assert_eq!(
        err("9223372036854775808"),
        r#"strconv.Atoi: parsing "9223372036854775808": value out of range"#
    );
    assert_eq!(
        err("99999999999999999999999999999999999999999999"),
        r#"strconv.Atoi: parsing "99999999999999999999999999999999999999999999": value out of range"#
    );
    assert_eq!(
        err("5\"\n\u{1}"),
        r#"strconv.Atoi: parsing "5\"\n\x01": invalid syntax"#
    );
}

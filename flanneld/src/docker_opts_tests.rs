//! Expected outputs were produced by running upstream's `dist/mk-docker-opts.sh` under
//! Debian's dash with the same subnet.env and arguments.

use super::*;

const ENV_MASQ: &str =
    "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn vars(env: &[(&str, &str)], file: &str) -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.extend(parse_env_file(file));
    v
}

fn out(cmdline: &str, env: &[(&str, &str)], file: &str) -> String {
    let o = parse_args(&args(cmdline)).unwrap();
    render(&o, &vars(env, file)).unwrap()
}

#[test]
fn every_option_combination_matches_the_script() {
    let all = "DOCKER_OPT_BIP=\"--bip=10.1.2.1/24\"\n\
               DOCKER_OPT_IPMASQ=\"--ip-masq=false\"\n\
               DOCKER_OPT_MTU=\"--mtu=1450\"\n";
    let combined = "DOCKER_OPTS=\" --bip=10.1.2.1/24 --ip-masq=false --mtu=1450\"\n";
    let cases = [
        ("", format!("{all}{combined}")),
        ("-c", combined.to_string()),
        ("-i", all.to_string()),
        ("-ci", format!("{all}{combined}")),
        ("-c -i", format!("{all}{combined}")),
        (
            "-m",
            "DOCKER_OPT_BIP=\"--bip=10.1.2.1/24\"\nDOCKER_OPT_MTU=\"--mtu=1450\"\n\
             DOCKER_OPTS=\" --bip=10.1.2.1/24 --mtu=1450\"\n"
                .to_string(),
        ),
        (
            "-k DOCKER_NETWORK_OPTIONS",
            format!(
                "{all}DOCKER_NETWORK_OPTIONS=\" --bip=10.1.2.1/24 --ip-masq=false --mtu=1450\"\n"
            ),
        ),
        (
            "-cm -k X",
            "X=\" --bip=10.1.2.1/24 --mtu=1450\"\n".to_string(),
        ),
        ("-cmkX", "X=\" --bip=10.1.2.1/24 --mtu=1450\"\n".to_string()),
        (
            "-mi",
            "DOCKER_OPT_BIP=\"--bip=10.1.2.1/24\"\nDOCKER_OPT_MTU=\"--mtu=1450\"\n".to_string(),
        ),
    ];
    for (cmdline, want) in cases {
        assert_eq!(out(cmdline, &[], ENV_MASQ), want, "args {cmdline:?}");
    }
}

#[test]
fn environment_options_and_initial_key_value_join_in_name_order() {
    let file = ENV_MASQ.replace("FLANNEL_IPMASQ=true", "FLANNEL_IPMASQ=false");
    let got = out(
        "",
        &[("DOCKER_OPTS", "--debug"), ("DOCKER_OPT_DNS", "8.8.8.8")],
        &file,
    );
    assert_eq!(
        got,
        "DOCKER_OPT_BIP=\"--bip=10.1.2.1/24\"\n\
         DOCKER_OPT_DNS=\"8.8.8.8\"\n\
         DOCKER_OPT_IPMASQ=\"--ip-masq=true\"\n\
         DOCKER_OPT_MTU=\"--mtu=1450\"\n\
         DOCKER_OPTS=\"--debug  --bip=10.1.2.1/24 8.8.8.8 --ip-masq=true --mtu=1450\"\n"
    );
}

#[test]
fn no_env_file_gives_an_empty_combined_line() {
    assert_eq!(out("", &[], ""), "DOCKER_OPTS=\"\"\n");
}

#[test]
fn invalid_ipmasq_is_refused_and_minus_m_ignores_it() {
    let file = "FLANNEL_SUBNET=10.1.2.1/24\nFLANNEL_IPMASQ=maybe\n";
    let o = parse_args(&[]).unwrap();
    assert_eq!(
        render(&o, &vars(&[], file)).unwrap_err().to_string(),
        "Invalid value of FLANNEL_IPMASQ: maybe"
    );
    assert_eq!(
        out("-m -c", &[], file),
        "DOCKER_OPTS=\" --bip=10.1.2.1/24\"\n"
    );
}

#[test]
fn getopts_rules() {
    let o = parse_args(&args("-f /a -d/b -kK")).unwrap();
    assert_eq!(
        (o.flannel_env.as_str(), o.docker_env.as_str()),
        ("/a", "/b")
    );
    assert_eq!(o.combined_key, "K");
    assert!(o.individual && o.combined && o.ipmasq);
    // The first operand, or `--`, ends the options.
    let o = parse_args(&args("-c operand -i")).unwrap();
    assert!(o.combined && !o.individual);
    let o = parse_args(&args("-i -- -c")).unwrap();
    assert!(o.individual && !o.combined);
    assert_eq!(parse_args(&args("-x")), Err(UsageError::Illegal('x')));
    assert_eq!(parse_args(&args("-f")), Err(UsageError::NoArg('f')));
    assert_eq!(parse_args(&args("-h")), Err(UsageError::Help));
    assert_eq!(parse_args(&args("-c?")), Err(UsageError::Help));
    assert_eq!(UsageError::Illegal('x').to_string(), "Illegal option -x\n");
    assert_eq!(UsageError::NoArg('f').to_string(), "No arg for -f option\n");
}

#[test]
fn usage_text_is_the_scripts() {
    let u = usage("./mk-docker-opts.sh");
    assert!(u.starts_with(
        "./mk-docker-opts.sh [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]\n\n"
    ));
    assert!(u.contains("\t-f\tPath to flannel env file. Defaults to /run/flannel/subnet.env\n"));
    assert!(u.ends_with("\t-m\tDo not output --ip-masq (useful for older Docker version)\n\n"));
}

#[test]
fn route_check_finds_gateway_routes_to_the_subnet() {
    assert_eq!(
        subnet_pattern("10.1.2.1/24").as_deref(),
        Some("10.1.2.0/24")
    );
    let routes = "default via 192.168.1.1 dev eth0\n\
                  10.1.2.0/24 dev docker0 proto kernel scope link src 10.1.2.1\n\
                  10.1.2.0/24 via 192.168.1.7 dev eth0\n";
    assert_eq!(
        conflicting_routes(routes, "10.1.2.0/24"),
        ["10.1.2.0/24 via 192.168.1.7 dev eth0"]
    );
    // grep's `.` matches any character, so the script also flags 10x1x2x0/24 lookalikes.
    assert_eq!(
        conflicting_routes("10a1b2c0/24 via x", "10.1.2.0/24").len(),
        1
    );
    assert!(conflicting_routes("10.1.3.0/24 via 1.2.3.4", "10.1.2.0/24").is_empty());
}

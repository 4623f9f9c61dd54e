//! The human form of `flannelctl status`: this node first, then one row per peer.

use std::fmt::Write;

use flannel_status::{NetpolReport, StatusReport, WireguardReport};

/// `3h25m`, `42s`: how far away `to` is from `now` (both Unix seconds).
fn remaining(now: u64, to: u64) -> String {
    if to <= now {
        return "expired".into();
    }
    let s = to - now;
    match s {
        0..=59 => format!("in {s}s"),
        60..=3599 => format!("in {}m{:02}s", s / 60, s % 60),
        _ => format!("in {}h{:02}m", s / 3600, s / 60 % 60),
    }
}

pub fn render(r: &StatusReport, now: u64) -> String {
    let mut out = String::new();
    let readiness = match (&r.ready, &r.reason) {
        (true, _) => "ready".to_owned(),
        (false, Some(reason)) => format!("NOT READY: {reason}"),
        (false, None) => "NOT READY".to_owned(),
    };
    let _ = writeln!(out, "Readiness:   {readiness}");
    match &r.lease {
        Some(l) => {
            let v6 = l.ipv6_subnet.map(|s| format!(" + {s}")).unwrap_or_default();
            let lifetime = if l.reservation {
                "a reservation (no TTL, never renewed)".to_owned()
            } else {
                format!("expires {} ({})", l.expires, remaining(now, l.expires_unix))
            };
            let _ = writeln!(
                out,
                "Lease:       {}{v6} public IP {} backend {}, {lifetime}",
                l.subnet, l.public_ip, l.backend,
            );
        }
        None => {
            let _ = writeln!(out, "Lease:       none yet");
        }
    }
    let _ = writeln!(
        out,
        "Drift:       {} repair(s) since start; lease renewals {}, lease errors {}",
        r.drift_repairs, r.lease_renewals, r.lease_errors
    );
    if let Some(e) = &r.last_error {
        let _ = writeln!(out, "Last error:  {} {}", e.time, e.message);
    }
    for d in &r.duplicate_public_ips {
        let subnets: Vec<String> = d.subnets.iter().map(|s| s.to_string()).collect();
        let _ = writeln!(
            out,
            "DUPLICATE:   public IP {} is announced by {}: set --iface or --public-ip on those nodes",
            d.public_ip,
            subnets.join(", ")
        );
    }
    let _ = writeln!(out, "\nPeers ({}):", r.peers.len());
    if r.peers.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        peers(&mut out, r);
    }
    if let Some(wg) = &r.wireguard {
        wireguard(&mut out, wg, now);
    }
    if let Some(np) = &r.network_policy {
        network_policy(&mut out, np);
    }
    out
}

/// Left-aligned columns, two spaces in, one between.
fn columns<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = |cells: [&str; N]| {
        let mut l = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let _ = write!(l, " {c:<w$}", w = widths[i]);
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(header);
    for r in rows {
        line(std::array::from_fn(|i| r[i].as_str()));
    }
}

fn network_policy(out: &mut String, np: &NetpolReport) {
    let state = if np.synced {
        "enforced"
    } else {
        "NOT YET ENFORCED (waiting for the first list)"
    };
    let _ = writeln!(
        out,
        "\nNetwork policy: {state}; {} policies, {} pods in the cluster; table inet flannel-netpol: {} rules, {} set elements",
        np.policies, np.pods, np.rules, np.set_elements
    );
    if let Some(t) = &np.last_sync {
        let _ = writeln!(out, "  Last sync:   {t}");
    }
    if let Some(e) = &np.last_error {
        let _ = writeln!(out, "  Last error:  {e}");
    }
    for f in &np.failed_policies {
        let _ = writeln!(
            out,
            "  FAIL CLOSED: {}: {} (the pods it selects are isolated; it allows nothing)",
            f.policy, f.reason
        );
    }
    let _ = writeln!(out, "  Pods on this node ({}):", np.local_pods.len());
    if np.local_pods.is_empty() {
        return;
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(",")
        }
    };
    let rows: Vec<[String; 4]> = np
        .local_pods
        .iter()
        .map(|p| {
            let ips: Vec<String> = p.ips.iter().map(ToString::to_string).collect();
            [
                p.pod.clone(),
                ips.join(","),
                list(&p.ingress),
                list(&p.egress),
            ]
        })
        .collect();
    let mut table = String::new();
    columns(
        &mut table,
        ["POD", "IPS", "INGRESS POLICIES", "EGRESS POLICIES"],
        &rows,
    );
    for l in table.lines() {
        let _ = writeln!(out, "  {l}");
    }
}

fn peers(out: &mut String, r: &StatusReport) {
    let rows: Vec<[String; 4]> = r
        .peers
        .iter()
        .map(|p| {
            let subnet = match p.ipv6_subnet {
                Some(v6) => format!("{} + {v6}", p.subnet),
                None => p.subnet.to_string(),
            };
            let route = match p.route {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "unknown",
            };
            [
                subnet,
                p.public_ip.to_string(),
                p.backend.clone(),
                route.to_owned(),
            ]
        })
        .collect();
    columns(out, ["SUBNET", "PUBLIC IP", "BACKEND", "ROUTE"], &rows);
    if let Some(e) = &r.route_check_error {
        let _ = writeln!(out, "(routes could not be checked: {e})");
    }
}

/// `12s ago`, `3m04s ago`: how long before `now` the Unix time `t` was.
fn ago(now: u64, t: u64) -> String {
    let s = now.saturating_sub(t);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m{:02}s ago", s / 60, s % 60),
        _ => format!("{}h{:02}m ago", s / 3600, s / 60 % 60),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}

fn wireguard(out: &mut String, wg: &WireguardReport, now: u64) {
    let _ = writeln!(out, "\nWireGuard ({}):", wg.implementation);
    if wg.skipped_leases > 0 {
        let _ = writeln!(
            out,
            "  {} peer lease(s) skipped: malformed PublicKey or BackendData (see the daemon log)",
            wg.skipped_leases
        );
    }
    if let Some(e) = &wg.error {
        let _ = writeln!(out, "  (could not be read: {e})");
    }
    for d in &wg.devices {
        let _ = writeln!(
            out,
            "  {} port {} public key {}",
            d.name, d.listen_port, d.public_key
        );
        let rows: Vec<[String; 5]> = d
            .peers
            .iter()
            .map(|p| {
                [
                    p.public_key.clone(),
                    p.endpoint
                        .map_or_else(|| "none".to_owned(), |e| e.to_string()),
                    match p.last_handshake_unix {
                        Some(t) => format!("{} ({})", ago(now, t), p.handshakes),
                        None => "never".to_owned(),
                    },
                    bytes(p.rx_bytes),
                    bytes(p.tx_bytes),
                ]
            })
            .collect();
        if rows.is_empty() {
            let _ = writeln!(out, "    no peers");
            continue;
        }
        columns(
            out,
            ["PEER", "ENDPOINT", "HANDSHAKE (COUNT)", "RX", "TX"],
            &rows,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flannel_status::{DuplicateReport, ErrorReport, LeaseReport, PeerReport};

    fn report() -> StatusReport {
        StatusReport {
            ready: true,
            reason: None,
            lease: Some(LeaseReport {
                subnet: "10.244.1.0/24".parse().unwrap(),
                ipv6_subnet: None,
                public_ip: "10.10.1.2".parse().unwrap(),
                backend: "vxlan".into(),
                expires: "2026-11-24T17:00:00Z".into(),
                expires_unix: 10_000 + 3 * 3600 + 25 * 60,
                reservation: false,
            }),
            last_error: None,
            peers: vec![
                PeerReport {
                    subnet: "10.244.2.0/24".parse().unwrap(),
                    ipv6_subnet: None,
                    public_ip: "10.10.1.3".parse().unwrap(),
                    backend: "vxlan".into(),
                    route: Some(true),
                },
                PeerReport {
                    subnet: "10.244.13.0/24".parse().unwrap(),
                    ipv6_subnet: None,
                    public_ip: "10.10.2.2".parse().unwrap(),
                    backend: "vxlan".into(),
                    route: Some(false),
                },
            ],
            route_check_error: None,
            drift_repairs: 1,
            lease_renewals: 0,
            lease_errors: 0,
            duplicate_public_ips: vec![],
            wireguard: None,
            network_policy: None,
        }
    }

    #[test]
    fn healthy_node_table() {
        assert_eq!(
            render(&report(), 10_000),
            "Readiness:   ready\n\
             Lease:       10.244.1.0/24 public IP 10.10.1.2 backend vxlan, expires 2026-11-24T17:00:00Z (in 3h25m)\n\
             Drift:       1 repair(s) since start; lease renewals 0, lease errors 0\n\
             \n\
             Peers (2):\n\
             \x20 SUBNET         PUBLIC IP BACKEND ROUTE\n\
             \x20 10.244.2.0/24  10.10.1.3 vxlan   yes\n\
             \x20 10.244.13.0/24 10.10.2.2 vxlan   NO\n"
        );
    }

    #[test]
    fn network_policy_lists_each_pod_with_its_policies() {
        use flannel_status::{FailedPolicy, PodPolicies};
        let mut r = report();
        r.network_policy = Some(NetpolReport {
            synced: true,
            policies: 2,
            pods: 9,
            rules: 14,
            set_elements: 21,
            last_sync: Some("2026-11-24T17:00:00Z".into()),
            resource_version: Some(120),
            failed_policies: vec![FailedPolicy {
                policy: "x/weird".into(),
                reason: "spec.podSelector: unknown label selector operator \"Like\"".into(),
            }],
            local_pods: vec![
                PodPolicies {
                    pod: "x/a".into(),
                    ips: vec!["10.244.1.2".parse().unwrap()],
                    ingress: vec!["x/deny".into(), "x/weird".into()],
                    egress: vec![],
                },
                PodPolicies {
                    pod: "y/b".into(),
                    ips: vec!["10.244.1.3".parse().unwrap(), "fd00::3".parse().unwrap()],
                    ingress: vec![],
                    egress: vec![],
                },
            ],
            last_error: None,
        });
        let text = render(&r, 10_000);
        let tail = &text[text.find("\nNetwork policy:").unwrap()..];
        assert_eq!(
            tail,
            "\nNetwork policy: enforced; 2 policies, 9 pods in the cluster; table inet flannel-netpol: 14 rules, 21 set elements\n\
             \x20 Last sync:   2026-11-24T17:00:00Z\n\
             \x20 FAIL CLOSED: x/weird: spec.podSelector: unknown label selector operator \"Like\" (the pods it selects are isolated; it allows nothing)\n\
             \x20 Pods on this node (2):\n\
             \x20   POD IPS                INGRESS POLICIES EGRESS POLICIES\n\
             \x20   x/a 10.244.1.2         x/deny,x/weird   -\n\
             \x20   y/b 10.244.1.3,fd00::3 -                -\n"
        );
    }

    #[test]
    fn trouble_is_spelled_out() {
        let mut r = report();
        r.ready = false;
        r.reason = Some("lease failed: etcd: connection refused".into());
        r.last_error = Some(ErrorReport {
            time: "2026-11-23T17:00:00Z".into(),
            message: "lease failed: etcd: connection refused".into(),
        });
        r.duplicate_public_ips = vec![DuplicateReport {
            public_ip: "10.0.2.15".parse().unwrap(),
            subnets: vec![
                "10.244.1.0/24".parse().unwrap(),
                "10.244.2.0/24".parse().unwrap(),
            ],
        }];
        r.peers[0].route = None;
        r.route_check_error = Some("permission denied".into());
        let text = render(&r, 30_000);
        for want in [
            "Readiness:   NOT READY: lease failed: etcd: connection refused\n",
            "(expired)",
            "Last error:  2026-11-23T17:00:00Z lease failed: etcd: connection refused\n",
            "DUPLICATE:   public IP 10.0.2.15 is announced by 10.244.1.0/24, 10.244.2.0/24: set --iface or --public-ip",
            " unknown\n",
            "(routes could not be checked: permission denied)\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert_eq!(remaining(0, 42), "in 42s");
        assert_eq!(remaining(0, 61), "in 1m01s");
    }
}

#[cfg(test)]
mod wireguard_tests {
    use super::*;
    use flannel_status::{WireguardDeviceReport, WireguardPeerReport};

    #[test]
    fn wireguard_section_lists_each_peer() {
        let wg = WireguardReport {
            implementation: "userspace".into(),
            devices: vec![WireguardDeviceReport {
                name: "flannel-wg".into(),
                listen_port: 51820,
                public_key: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".into(),
                peers: vec![
                    WireguardPeerReport {
                        public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
                        endpoint: Some("10.10.1.3:51820".parse().unwrap()),
                        allowed_ips: vec!["10.244.2.0/24".parse().unwrap()],
                        last_handshake: Some("x".into()),
                        last_handshake_unix: Some(9_988),
                        handshakes: 3,
                        rx_bytes: 2048,
                        tx_bytes: 3 << 20,
                    },
                    WireguardPeerReport {
                        public_key: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=".into(),
                        endpoint: None,
                        allowed_ips: vec![],
                        last_handshake: None,
                        last_handshake_unix: None,
                        handshakes: 0,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    },
                ],
            }],
            skipped_leases: 1,
            error: None,
        };
        let mut out = String::new();
        wireguard(&mut out, &wg, 10_000);
        assert_eq!(
            out,
            "\nWireGuard (userspace):\n\
             \x20 1 peer lease(s) skipped: malformed PublicKey or BackendData (see the daemon log)\n\
             \x20 flannel-wg port 51820 public key HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\n\
             \x20 PEER                                         ENDPOINT        HANDSHAKE (COUNT) RX      TX\n\
             \x20 xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= 10.10.1.3:51820 12s ago (3)       2.0 KiB 3.0 MiB\n\
             \x20 TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0= none            never             0 B     0 B\n"
        );
    }
}

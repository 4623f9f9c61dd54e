//! Gateway calculation over the IPAM result (upstream's `calcGateways`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netconf::{CniResult, Route};

/// Index of the container interface in the result: bridge, host veth, container veth.
pub const CONTAINER_IFACE_INDEX: usize = 2;

/// Gateway addresses (with the container IP's prefix length) that go on the bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gateways {
    pub v4: Vec<IpNet>,
    pub v6: Vec<IpNet>,
}

impl Gateways {
    pub fn families(&self) -> [&[IpNet]; 2] {
        [&self.v4, &self.v6]
    }
}

/// The first address of `net`'s network plus one (`10.244.1.0/24` → `10.244.1.1`).
pub fn first_host(net: &IpNet) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

fn default_net(v4: bool) -> IpNet {
    if v4 {
        IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("/0 is valid")
    } else {
        IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("/0 is valid")
    }
}

/// Assigns every IP to the container interface, fills in missing gateways when the bridge is
/// the gateway, appends one default route per family for `isDefaultGateway` unless the routes
/// already hold a default route *with* a gateway, and returns the bridge addresses.
///
/// A default route without a gateway does not count (upstream's rule, kept so results are
/// identical); the duplicate kernel route that results is tolerated when routes are
/// installed (see `iface::configure`).
pub fn calc(result: &mut CniResult, is_gateway: bool, is_default_gateway: bool) -> Gateways {
    let mut gws = Gateways::default();
    let mut default_done = [false, false];
    for i in 0..result.ips.len() {
        let ip = &mut result.ips[i];
        ip.interface = Some(CONTAINER_IFACE_INDEX);
        if ip.gateway.is_none() && is_gateway {
            ip.gateway = Some(first_host(&ip.address));
        }
        let v4 = ip.address.addr().is_ipv4();
        let (address, gateway) = (ip.address, ip.gateway);
        let family = usize::from(!v4);
        if is_default_gateway && !default_done[family] {
            let dflt = default_net(v4);
            let present = result
                .routes
                .iter()
                .any(|r| r.gw.is_some() && r.dst == dflt);
            if !present {
                result.routes.push(Route::new(dflt, gateway));
            }
            default_done[family] = true;
        }
        if is_gateway {
            if let Some(gw) = gateway {
                let net = IpNet::new(gw, address.prefix_len()).expect("same family prefix");
                if v4 {
                    gws.v4.push(net)
                } else {
                    gws.v6.push(net)
                }
            }
        }
    }
    gws
}

#[cfg(test)]
mod tests {
    use super::*;
    use netconf::{CniVersion, IpConfig};

    fn result(ips: &[(&str, Option<&str>)], routes: &[(&str, Option<&str>)]) -> CniResult {
        let mut r = CniResult::new(CniVersion::V1_0_0);
        r.ips = ips
            .iter()
            .map(|(a, g)| IpConfig {
                address: a.parse().unwrap(),
                gateway: g.map(|g| g.parse().unwrap()),
                interface: None,
            })
            .collect();
        r.routes = routes
            .iter()
            .map(|(d, g)| Route::new(d.parse().unwrap(), g.map(|g| g.parse().unwrap())))
            .collect();
        r
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn first_host_of_network() {
        assert_eq!(
            first_host(&net("10.244.1.7/24")),
            "10.244.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            first_host(&net("fd00:1::9/64")),
            "fd00:1::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn not_a_gateway_leaves_ips_alone_but_sets_interface() {
        let mut r = result(&[("10.1.0.5/16", None)], &[]);
        let gws = calc(&mut r, false, false);
        assert_eq!(gws, Gateways::default());
        assert_eq!(r.ips[0].gateway, None);
        assert_eq!(r.ips[0].interface, Some(2));
        assert!(r.routes.is_empty());
    }

    #[test]
    fn gateway_is_computed_when_ipam_gives_none() {
        let mut r = result(
            &[("10.1.0.5/16", None), ("10.2.0.5/24", Some("10.2.0.254"))],
            &[],
        );
        let gws = calc(&mut r, true, false);
        assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
        assert_eq!(gws.v4, vec![net("10.1.0.1/16"), net("10.2.0.254/24")]);
        assert!(gws.v6.is_empty());
    }

    #[test]
    fn default_gateway_appends_one_default_route_per_family() {
        let mut r = result(
            &[
                ("10.1.0.5/16", Some("10.1.0.1")),
                ("10.3.0.5/16", None),
                ("fd00::5/64", None),
            ],
            &[("10.9.0.0/16", None)],
        );
        let gws = calc(&mut r, true, true);
        let routes: Vec<_> = r.routes.iter().map(|r| (r.dst.to_string(), r.gw)).collect();
        assert_eq!(
            routes,
            vec![
                ("10.9.0.0/16".to_string(), None),
                ("0.0.0.0/0".to_string(), Some("10.1.0.1".parse().unwrap())),
                ("::/0".to_string(), Some("fd00::1".parse().unwrap())),
            ]
        );
        assert_eq!(gws.v6, vec![net("fd00::1/64")]);
    }

    #[test]
    fn default_route_with_gateway_suppresses_ours_but_one_without_does_not() {
        let mut r = result(
            &[("10.1.0.5/16", None)],
            &[("0.0.0.0/0", Some("10.1.0.254"))],
        );
        calc(&mut r, true, true);
        assert_eq!(r.routes.len(), 1);

        let mut r = result(&[("10.1.0.5/16", None)], &[("0.0.0.0/0", None)]);
        calc(&mut r, true, true);
        assert_eq!(
            r.routes.len(),
            2,
            "upstream shape: both defaults stay in the result"
        );
        assert_eq!(r.routes[1].gw, Some("10.1.0.1".parse().unwrap()));
    }
}

//! Upstream's `CheckNetworkConfig`: validation plus the derived SubnetLen/Min/Max defaults.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{FlannelConfigError as E, NetworkConfig};

/// The default subnet length for a network prefix: /24 (v4) or /64 (v6) when the network is
/// large enough, otherwise a quarter of the network.
fn default_len(prefix: u32, roomy_up_to: u32, default: u32) -> u32 {
    if prefix <= roomy_up_to {
        default
    } else {
        prefix + 2
    }
}

impl NetworkConfig {
    /// Validates the config and fills in `subnet_len`, `subnet_min`, `subnet_max` (and the IPv6
    /// counterparts) for each enabled family. The first subnet of the network is skipped by
    /// default, the last one is used; `min <= max` is not checked (neither is it upstream).
    pub fn check(&mut self) -> Result<(), E> {
        if self.enable_ipv4 {
            self.check_v4()?;
        }
        if self.enable_ipv6 {
            self.check_v6()?;
        }
        Ok(())
    }

    fn check_v4(&mut self) -> Result<(), E> {
        let net = self
            .network
            .filter(|n| !(n.network().is_unspecified() && n.prefix_len() == 0))
            .ok_or(E::NoNetwork)?;
        let prefix = u32::from(net.prefix_len());
        if self.subnet_len > 0 {
            if self.subnet_len > 30 {
                return Err(E::SubnetLenTooLong);
            }
            if self.subnet_len < prefix + 2 {
                return Err(E::TooFewSubnets);
            }
        } else {
            if prefix > 28 {
                return Err(E::NetworkTooSmall);
            }
            self.subnet_len = default_len(prefix, 22, 24);
        }
        let size = 1u32 << (32 - self.subnet_len);
        let base = u32::from(net.network());
        let next = base.wrapping_add(1u32 << (32 - prefix));
        let min = match self.subnet_min.filter(|a| !a.is_unspecified()) {
            None => Ipv4Addr::from(base.wrapping_add(size)),
            Some(a) if net.contains(&a) => a,
            Some(_) => return Err(E::SubnetMinOutside),
        };
        let max = match self.subnet_max.filter(|a| !a.is_unspecified()) {
            None => Ipv4Addr::from(next.wrapping_sub(size)),
            Some(a) if net.contains(&a) => a,
            Some(_) => return Err(E::SubnetMaxOutside),
        };
        self.subnet_min = Some(min);
        self.subnet_max = Some(max);
        let mask = u32::MAX << (32 - self.subnet_len);
        if u32::from(min) & !mask != 0 {
            return Err(E::SubnetMinUnaligned(min));
        }
        if u32::from(max) & !mask != 0 {
            return Err(E::SubnetMaxUnaligned(max));
        }
        Ok(())
    }

    fn check_v6(&mut self) -> Result<(), E> {
        let net = self
            .ipv6_network
            .filter(|n| !(n.network().is_unspecified() && n.prefix_len() == 0))
            .ok_or(E::NoIpv6Network)?;
        let prefix = u32::from(net.prefix_len());
        if self.ipv6_subnet_len > 0 {
            if self.ipv6_subnet_len > 126 {
                return Err(E::Ipv6SubnetLenTooLong);
            }
            if self.ipv6_subnet_len < prefix + 2 {
                return Err(E::TooFewSubnets);
            }
        } else {
            if prefix > 124 {
                return Err(E::Ipv6NetworkTooSmall);
            }
            self.ipv6_subnet_len = default_len(prefix, 62, 64);
        }
        let size = 1u128 << (128 - self.ipv6_subnet_len);
        let base = u128::from(net.network());
        let next = base.wrapping_add(1u128 << (128 - prefix));
        let min = match self.ipv6_subnet_min {
            None => Ipv6Addr::from(base.wrapping_add(size)),
            Some(a) if net.contains(&a) => a,
            Some(_) => return Err(E::Ipv6SubnetMinOutside),
        };
        let max = match self.ipv6_subnet_max {
            None => Ipv6Addr::from(next.wrapping_sub(size)),
            Some(a) if net.contains(&a) => a,
            Some(_) => return Err(E::Ipv6SubnetMaxOutside),
        };
        self.ipv6_subnet_min = Some(min);
        self.ipv6_subnet_max = Some(max);
        let mask = u128::MAX << (128 - self.ipv6_subnet_len);
        if u128::from(min) & !mask != 0 {
            return Err(E::Ipv6SubnetMinUnaligned(min));
        }
        if u128::from(max) & !mask != 0 {
            return Err(E::Ipv6SubnetMaxUnaligned(max));
        }
        Ok(())
    }
}

//! Subnet allocation rules: which subnets a config allows, which are free, which to pick.
//!
//! Pure functions over a checked [`NetworkConfig`] (SubnetLen/Min/Max filled in by `check()`).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use netconf::flannel::NetworkConfig;

/// Upstream collects at most this many free subnets, then picks one of them at random: random
/// enough to make two nodes starting together unlikely to collide, without scanning a /8.
pub const MAX_CANDIDATES: usize = 100;

/// Whether `subnet` is one this config could hand out: on the SubnetLen grid between
/// SubnetMin and SubnetMax.
pub fn v4_compatible(cfg: &NetworkConfig, subnet: Ipv4Net) -> bool {
    let (Some(min), Some(max)) = (cfg.subnet_min, cfg.subnet_max) else {
        return false;
    };
    u32::from(subnet.prefix_len()) == cfg.subnet_len && min <= subnet.addr() && subnet.addr() <= max
}

pub fn v6_compatible(cfg: &NetworkConfig, subnet: Ipv6Net) -> bool {
    let (Some(min), Some(max)) = (cfg.ipv6_subnet_min, cfg.ipv6_subnet_max) else {
        return false;
    };
    u32::from(subnet.prefix_len()) == cfg.ipv6_subnet_len
        && min <= subnet.addr()
        && subnet.addr() <= max
}

/// Whether a lease slot fits the config as a whole: the v4 part, and the v6 part exactly when
/// IPv6 is enabled (a v6 part without IPv6 enabled makes a lease incompatible).
pub fn lease_compatible(
    cfg: &NetworkConfig,
    subnet: Ipv4Net,
    ipv6_subnet: Option<Ipv6Net>,
) -> bool {
    let v4 = !cfg.enable_ipv4 || v4_compatible(cfg, subnet);
    let v6 = match (cfg.enable_ipv6, ipv6_subnet) {
        (true, Some(s)) => v6_compatible(cfg, s),
        (true, None) => false,
        (false, s) => s.is_none(),
    };
    v4 && v6
}

/// The direct definition, kept as the oracle for [`Taken`]'s tests.
#[cfg(test)]
fn overlaps_v4(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
fn overlaps_v6(a: Ipv6Net, b: Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Taken subnets as address intervals sorted by their first address, with the running
/// maximum of their last address, so "does this candidate overlap anything taken" is one
/// binary search instead of a scan of every lease: with thousands of leases the scan made
/// each allocation attempt quadratic (the lease storm of `scripts/bench-scale.sh`).
struct Taken {
    firsts: Vec<u128>,
    max_last: Vec<u128>,
}

impl Taken {
    fn new(mut intervals: Vec<(u128, u128)>) -> Taken {
        intervals.sort_unstable();
        let mut running = 0;
        let max_last = intervals
            .iter()
            .map(|&(_, last)| {
                running = running.max(last);
                running
            })
            .collect();
        Taken {
            firsts: intervals.into_iter().map(|(first, _)| first).collect(),
            max_last,
        }
    }

    fn v4(taken: &[Ipv4Net]) -> Taken {
        let span = |n: &Ipv4Net| {
            (
                u32::from(n.network()).into(),
                u32::from(n.broadcast()).into(),
            )
        };
        Taken::new(taken.iter().map(span).collect())
    }

    fn v6(taken: &[Ipv6Net]) -> Taken {
        let span = |n: &Ipv6Net| (u128::from(n.network()), u128::from(n.broadcast()));
        Taken::new(taken.iter().map(span).collect())
    }

    /// Whether `[first, last]` meets any taken interval: among those starting at or before
    /// `last`, one must reach `first`.
    fn overlaps(&self, first: u128, last: u128) -> bool {
        let n = self.firsts.partition_point(|&f| f <= last);
        n > 0 && self.max_last[n - 1] >= first
    }
}

/// Free v4 subnets from SubnetMin upwards (at most [`MAX_CANDIDATES`]), skipping any that
/// overlap a taken subnet of any prefix length.
pub fn v4_candidates(cfg: &NetworkConfig, taken: &[Ipv4Net]) -> Vec<Ipv4Net> {
    v4_candidates_within(cfg, taken, MAX_CANDIDATES)
}

/// The first `limit` free v4 subnets from SubnetMin upwards.
pub fn v4_candidates_within(cfg: &NetworkConfig, taken: &[Ipv4Net], limit: usize) -> Vec<Ipv4Net> {
    let (Some(min), Some(max)) = (cfg.subnet_min, cfg.subnet_max) else {
        return Vec::new();
    };
    let Ok(len) = u8::try_from(cfg.subnet_len) else {
        return Vec::new();
    };
    let step = 1u64 << (32 - u32::from(len).min(32));
    let taken = Taken::v4(taken);
    let mut out = Vec::new();
    let mut at = u64::from(u32::from(min));
    while at <= u64::from(u32::from(max)) && out.len() < limit {
        let Ok(candidate) = Ipv4Net::new(Ipv4Addr::from(at as u32), len) else {
            break;
        };
        let (first, last) = (
            u32::from(candidate.network()),
            u32::from(candidate.broadcast()),
        );
        if !taken.overlaps(first.into(), last.into()) {
            out.push(candidate);
        }
        at += step;
    }
    out
}

pub fn v6_candidates(cfg: &NetworkConfig, taken: &[Ipv6Net]) -> Vec<Ipv6Net> {
    v6_candidates_within(cfg, taken, MAX_CANDIDATES)
}

pub fn v6_candidates_within(cfg: &NetworkConfig, taken: &[Ipv6Net], limit: usize) -> Vec<Ipv6Net> {
    let (Some(min), Some(max)) = (cfg.ipv6_subnet_min, cfg.ipv6_subnet_max) else {
        return Vec::new();
    };
    let Ok(len) = u8::try_from(cfg.ipv6_subnet_len) else {
        return Vec::new();
    };
    if len == 0 || len > 128 {
        return Vec::new();
    }
    let step = 1u128 << (128 - u32::from(len));
    let taken = Taken::v6(taken);
    let mut out = Vec::new();
    let mut at = u128::from(min);
    let end = u128::from(max);
    while at <= end && out.len() < limit {
        let Ok(candidate) = Ipv6Net::new(Ipv6Addr::from(at), len) else {
            break;
        };
        let (first, last) = (
            u128::from(candidate.network()),
            u128::from(candidate.broadcast()),
        );
        if !taken.overlaps(first, last) {
            out.push(candidate);
        }
        match at.checked_add(step) {
            Some(next) => at = next,
            None => break,
        }
    }
    out
}

/// Picks uniformly among `candidates` with `rng(n)` returning an index below `n`.
pub fn pick<T: Copy>(candidates: &[T], rng: impl FnOnce(usize) -> usize) -> Option<T> {
    if candidates.is_empty() {
        return None;
    }
    candidates.get(rng(candidates.len())).copied()
}

/// A new lease slot for this node: a free v4 subnet (when v4 is enabled) and a free v6 subnet
/// (when v6 is enabled), each chosen at random among the first free ones. `None` is upstream's
/// `out of subnets`.
pub fn allocate(
    cfg: &NetworkConfig,
    taken_v4: &[Ipv4Net],
    taken_v6: &[Ipv6Net],
    rng: impl FnMut(usize) -> usize,
) -> Option<(Ipv4Net, Option<Ipv6Net>)> {
    allocate_within(cfg, taken_v4, taken_v6, MAX_CANDIDATES, rng)
}

/// [`allocate`] choosing among the first `window` free subnets instead of upstream's 100.
pub fn allocate_within(
    cfg: &NetworkConfig,
    taken_v4: &[Ipv4Net],
    taken_v6: &[Ipv6Net],
    window: usize,
    mut rng: impl FnMut(usize) -> usize,
) -> Option<(Ipv4Net, Option<Ipv6Net>)> {
    let v4 = if cfg.enable_ipv4 {
        pick(&v4_candidates_within(cfg, taken_v4, window), &mut rng)?
    } else {
        // An IPv6-only lease still carries the zero v4 subnet in its key, as upstream's does.
        Ipv4Net::default()
    };
    let v6 = if cfg.enable_ipv6 {
        Some(pick(
            &v6_candidates_within(cfg, taken_v6, window),
            &mut rng,
        )?)
    } else {
        None
    };
    Some((v4, v6))
}

#[cfg(test)]
mod tests {
    #[test]
    fn interval_index_agrees_with_the_direct_overlap_test() {
        // Mixed prefix lengths, nested and disjoint, against every /24 and /20 of a /16.
        let mut state = 0x2545_f491_u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for _ in 0..50 {
            let taken: Vec<Ipv4Net> = (0..next() % 40)
                .map(|_| {
                    let len = 17 + (next() % 12) as u8;
                    Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (next() & 0xffff)), len)
                        .unwrap()
                        .trunc()
                })
                .collect();
            let index = super::Taken::v4(&taken);
            for len in [20u8, 24] {
                for at in (0..=0xffffu32).step_by(1 << (32 - len)) {
                    let c = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | at), len).unwrap();
                    let direct = taken.iter().any(|t| super::overlaps_v4(*t, c));
                    let first = u32::from(c.network()).into();
                    let last = u32::from(c.broadcast()).into();
                    assert_eq!(index.overlaps(first, last), direct, "{c} vs {taken:?}");
                }
            }
            let v6: Vec<Ipv6Net> = taken
                .iter()
                .map(|t| {
                    let hi = u128::from(u32::from(t.network())) << 96;
                    Ipv6Net::new(Ipv6Addr::from(hi), t.prefix_len()).unwrap()
                })
                .collect();
            let index6 = super::Taken::v6(&v6);
            for c in &v6 {
                let direct = v6.iter().any(|t| super::overlaps_v6(*t, *c));
                let (first, last) = (u128::from(c.network()), u128::from(c.broadcast()));
                assert_eq!(index6.overlaps(first, last), direct);
            }
        }
    }

    use super::*;

    fn cfg(json: &str) -> NetworkConfig {
        let mut c = NetworkConfig::parse(json.as_bytes()).unwrap();
        c.check().unwrap();
        c
    }

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn candidates_start_at_subnet_min_and_stop_at_max() {
        let c = cfg(r#"{"Network":"10.0.0.0/26"}"#); // SubnetLen 28, Min .16, Max .48
        assert_eq!(
            v4_candidates(&c, &[]),
            vec![n("10.0.0.16/28"), n("10.0.0.32/28"), n("10.0.0.48/28")]
        );
        let c = cfg(r#"{"Network":"10.0.0.0/16","SubnetMin":"10.0.5.0","SubnetMax":"10.0.7.0"}"#);
        assert_eq!(
            v4_candidates(&c, &[]),
            vec![n("10.0.5.0/24"), n("10.0.6.0/24"), n("10.0.7.0/24")]
        );
    }

    #[test]
    fn overlapping_leases_of_any_size_are_skipped() {
        let c = cfg(r#"{"Network":"10.0.0.0/16","SubnetMax":"10.0.8.0"}"#);
        let taken = [
            n("10.0.2.0/24"),
            n("10.0.4.128/25"),
            n("10.0.6.0/23"),
            n("10.0.8.1/32"),
        ];
        assert_eq!(
            v4_candidates(&c, &taken),
            vec![n("10.0.1.0/24"), n("10.0.3.0/24"), n("10.0.5.0/24")]
        );
    }

    #[test]
    fn at_most_one_hundred_candidates() {
        let c = cfg(r#"{"Network":"10.0.0.0/8"}"#);
        let all = v4_candidates(&c, &[]);
        assert_eq!(all.len(), MAX_CANDIDATES);
        assert_eq!(all[0], n("10.0.1.0/24"));
        assert_eq!(all[99], n("10.0.100.0/24"));
    }

    #[test]
    fn a_wider_window_reaches_past_the_first_hundred_free_subnets() {
        let c = cfg(r#"{"Network":"10.0.0.0/8"}"#);
        let taken = [n("10.0.2.0/24")];
        let wide = v4_candidates_within(&c, &taken, 1600);
        assert_eq!(wide.len(), 1600);
        assert_eq!(wide[..100], v4_candidates(&c, &taken)[..]);
        assert!(!wide.contains(&n("10.0.2.0/24")));
        assert_eq!(wide[1599], n("10.6.65.0/24"));
        let last = allocate_within(&c, &taken, &[], 1600, |len| len - 1);
        assert_eq!(last, Some((n("10.6.65.0/24"), None)));
        // A window larger than the pool offers every free subnet, no more.
        let small = cfg(r#"{"Network":"10.0.0.0/26"}"#);
        assert_eq!(v4_candidates_within(&small, &[], 1600).len(), 3);
        let v6 = cfg(r#"{"Network":"10.0.0.0/26","EnableIPv6":true,"IPv6Network":"fc00::/48"}"#);
        assert_eq!(v6_candidates_within(&v6, &[], 300).len(), 300);
        assert_eq!(v6_candidates(&v6, &[]).len(), MAX_CANDIDATES);
    }

    #[test]
    fn exhaustion_is_none() {
        let c = cfg(r#"{"Network":"10.0.0.0/26"}"#);
        let taken = [n("10.0.0.16/28"), n("10.0.0.32/28"), n("10.0.0.48/28")];
        assert_eq!(allocate(&c, &taken, &[], |_| 0), None);
        assert_eq!(
            allocate(&c, &taken[..2], &[], |_| 0),
            Some((n("10.0.0.48/28"), None))
        );
        // The whole network as one taken lease covers every candidate.
        assert_eq!(allocate(&c, &[n("10.0.0.0/24")], &[], |_| 0), None);
    }

    #[test]
    fn pick_uses_the_index_it_is_given() {
        let c = cfg(r#"{"Network":"10.0.0.0/26"}"#);
        let got = allocate(&c, &[], &[], |len| {
            assert_eq!(len, 3);
            2
        });
        assert_eq!(got, Some((n("10.0.0.48/28"), None)));
        assert_eq!(pick::<u8>(&[], |_| 0), None);
    }

    #[test]
    fn compatibility_follows_grid_and_range() {
        let c = cfg(r#"{"Network":"10.244.0.0/16"}"#);
        assert!(v4_compatible(&c, n("10.244.1.0/24")));
        assert!(v4_compatible(&c, n("10.244.255.0/24")));
        assert!(
            !v4_compatible(&c, n("10.244.0.0/24")),
            "the first subnet is skipped"
        );
        assert!(!v4_compatible(&c, n("10.244.1.0/25")));
        assert!(!v4_compatible(&c, n("10.245.1.0/24")));
        assert!(lease_compatible(&c, n("10.244.1.0/24"), None));
        assert!(!lease_compatible(
            &c,
            n("10.244.1.0/24"),
            Some("fc00::/64".parse().unwrap())
        ));
    }

    #[test]
    fn dual_stack_allocates_both_families() {
        let c = cfg(r#"{"Network":"10.0.0.0/26","EnableIPv6":true,"IPv6Network":"fc00::/124"}"#);
        let (a, b) = allocate(&c, &[], &[], |_| 0).unwrap();
        assert_eq!(a, n("10.0.0.16/28"));
        assert_eq!(b, Some("fc00::4/126".parse().unwrap()));
        assert!(lease_compatible(&c, a, b));
        assert!(!lease_compatible(&c, a, None));
        let all_v6: Vec<Ipv6Net> = ["fc00::4/126", "fc00::8/126", "fc00::c/126"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            allocate(&c, &[], &all_v6, |_| 0),
            None,
            "no v6 candidate is out of subnets"
        );
    }
}

//! A range set: the ranges one address is drawn from, walked round-robin across range boundaries.

use std::fmt;
use std::net::IpAddr;

use crate::error::RangeError;
use crate::ip;
use crate::range::{Range, RangeSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
}

impl RangeSet {
    /// Upstream's `RangeSet.Canonicalize`: every range valid, one family, no two ranges overlapping.
    pub fn canonicalize(specs: &[RangeSpec]) -> Result<RangeSet, RangeError> {
        if specs.is_empty() {
            return Err(RangeError::EmptySet);
        }
        let mut ranges: Vec<Range> = Vec::with_capacity(specs.len());
        for spec in specs {
            let r = spec.canonicalize()?;
            if ranges
                .first()
                .is_some_and(|first| first.start.is_ipv4() != r.start.is_ipv4())
            {
                return Err(RangeError::MixedFamilies);
            }
            ranges.push(r);
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(RangeError::SubnetsOverlap(a.to_string(), b.to_string()));
            }
        }
        Ok(RangeSet { ranges })
    }

    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    pub fn is_ipv4(&self) -> bool {
        self.ranges[0].start.is_ipv4()
    }

    /// The first range that can hand out `addr`.
    pub fn range_for(&self, addr: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(addr))
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.range_for(addr).is_some()
    }

    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }

    /// Candidate addresses in upstream's round-robin order: right after `last_reserved` when that
    /// address is still part of the set, otherwise from the first range's start; wrapping from each
    /// range's end to the next range's start; never a range's gateway; every address at most once.
    pub fn candidates(&self, last_reserved: Option<IpAddr>) -> Candidates<'_> {
        let resume = last_reserved.map(ip::canonical).and_then(|last| {
            self.ranges
                .iter()
                .position(|r| r.contains(last))
                .map(|idx| (idx, last))
        });
        match resume {
            Some((idx, last)) => Candidates {
                set: self,
                idx,
                cur: Some(last),
                stop_at: None,
                done: false,
            },
            None => Candidates {
                set: self,
                idx: 0,
                cur: None,
                stop_at: None,
                done: false,
            },
        }
    }
}

/// Iterator returned by [`RangeSet::candidates`]; yields each address with the range it belongs to.
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    /// First position visited; reaching it again means the whole set has been offered.
    stop_at: Option<IpAddr>,
    done: bool,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let ranges = &self.set.ranges;
            let cur = match self.cur {
                None => {
                    let start = ranges[self.idx].start;
                    self.stop_at = Some(start);
                    start
                }
                Some(cur) => {
                    let advanced = if cur == ranges[self.idx].end {
                        self.idx = (self.idx + 1) % ranges.len();
                        ranges[self.idx].start
                    } else {
                        ip::next(cur)
                    };
                    match self.stop_at {
                        None => self.stop_at = Some(advanced),
                        Some(stop) if stop == advanced => {
                            self.done = true;
                            return None;
                        }
                        Some(_) => {}
                    }
                    advanced
                }
            };
            self.cur = Some(cur);
            let range = &ranges[self.idx];
            if cur != range.gateway {
                return Some((cur, range));
            }
        }
        None
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::Cidr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: Some(Cidr::parse(subnet).unwrap()),
            ..RangeSpec::default()
        }
    }

    fn set(subnets: &[&str]) -> RangeSet {
        RangeSet::canonicalize(&subnets.iter().map(|s| spec(s)).collect::<Vec<_>>()).unwrap()
    }

    fn walk(s: &RangeSet, last: Option<&str>) -> Vec<String> {
        s.candidates(last.map(ip))
            .map(|(a, _)| a.to_string())
            .collect()
    }

    #[test]
    fn fresh_walk_skips_gateway_and_broadcast() {
        let s = set(&["10.9.0.0/29"]);
        assert_eq!(
            walk(&s, None),
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        );
        assert_eq!(s.to_string(), "10.9.0.1-10.9.0.6");
    }

    #[test]
    fn resumes_after_last_reserved_and_wraps_across_ranges() {
        let s = set(&["10.9.0.0/29", "10.9.1.0/29"]);
        assert_eq!(
            walk(&s, Some("10.9.1.5")),
            [
                "10.9.1.6", "10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.1.2",
                "10.9.1.3", "10.9.1.4", "10.9.1.5"
            ]
        );
        assert_eq!(s.to_string(), "10.9.0.1-10.9.0.6,10.9.1.1-10.9.1.6");
    }

    #[test]
    fn last_reserved_outside_the_set_restarts_from_the_beginning() {
        let s = set(&["10.9.0.0/29"]);
        assert_eq!(walk(&s, Some("10.9.0.7"))[0], "10.9.0.2");
        assert_eq!(walk(&s, Some("192.168.0.1"))[0], "10.9.0.2");
        assert_eq!(walk(&s, Some("fd00::1")).len(), 5);
    }

    #[test]
    fn last_reserved_right_before_gateway_still_offers_everything_once() {
        let mut sp = spec("10.9.0.0/29");
        sp.gateway = Some(ip("10.9.0.4"));
        let s = RangeSet::canonicalize(&[sp]).unwrap();
        assert_eq!(
            walk(&s, Some("10.9.0.3")),
            ["10.9.0.5", "10.9.0.6", "10.9.0.1", "10.9.0.2", "10.9.0.3"]
        );
    }

    #[test]
    fn single_address_range_whose_only_address_is_the_gateway_yields_nothing() {
        let mut sp = spec("10.9.0.0/29");
        sp.range_start = Some(ip("10.9.0.1"));
        sp.range_end = Some(ip("10.9.0.1"));
        let s = RangeSet::canonicalize(&[sp]).unwrap();
        assert!(walk(&s, None).is_empty());
        assert!(walk(&s, Some("10.9.0.1")).is_empty());
    }

    #[test]
    fn ipv6_walk_reaches_the_last_address() {
        let s = set(&["fd00::/126"]);
        assert_eq!(walk(&s, None), ["fd00::2", "fd00::3"]);
    }

    #[test]
    fn set_errors() {
        assert_eq!(
            RangeSet::canonicalize(&[]).unwrap_err().to_string(),
            "empty range set"
        );
        let e = RangeSet::canonicalize(&[spec("10.1.0.0/24"), spec("fd00::/64")]).unwrap_err();
        assert_eq!(e.to_string(), "mixed address families");
        let e = RangeSet::canonicalize(&[spec("10.1.0.0/24"), spec("10.1.0.0/25")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnets 10.1.0.1-10.1.0.254 and 10.1.0.1-10.1.0.126 overlap"
        );
    }

    #[test]
    fn membership() {
        let s = set(&["10.1.0.0/24", "10.2.0.0/24"]);
        assert_eq!(s.range_for(ip("10.2.0.7")).unwrap().network, ip("10.2.0.0"));
        assert!(!s.contains(ip("10.3.0.1")));
        assert!(s.overlaps(&set(&["10.2.0.0/16"])));
        assert!(!s.overlaps(&set(&["fd00::/64"])));
    }
}

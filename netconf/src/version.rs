//! CNI specification versions, and the loose version arithmetic Go's `pkg/version` applies to
//! version strings this library does not know.

use std::fmt;
use std::str::FromStr;

use crate::error::{codes, CniError};
use crate::gofmt;

/// A CNI specification version this implementation speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// Which Go result type serves a version: results convert losslessly within a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFamily {
    /// 0.1.0 / 0.2.0: `ip4` / `ip6` objects.
    V02,
    /// 0.3.0 / 0.3.1 / 0.4.0: `ips[]` with `version`.
    V04,
    /// 1.0.0 / 1.1.0.
    V1,
}

impl CniVersion {
    pub const ALL: [CniVersion; 7] = [
        CniVersion::V0_1_0,
        CniVersion::V0_2_0,
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The version VERSION reports as `cniVersion` (Go's `version.Current()`).
    pub const CURRENT: CniVersion = CniVersion::V1_1_0;

    /// Parses one of the known version strings; anything else is the error Go's skel reports
    /// for a config version the plugin does not support.
    pub fn parse(s: &str) -> Result<CniVersion, CniError> {
        CniVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| incompatible(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_1_0 => "0.1.0",
            CniVersion::V0_2_0 => "0.2.0",
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    pub fn family(self) -> ResultFamily {
        match self {
            CniVersion::V0_1_0 | CniVersion::V0_2_0 => ResultFamily::V02,
            CniVersion::V0_3_0 | CniVersion::V0_3_1 | CniVersion::V0_4_0 => ResultFamily::V04,
            CniVersion::V1_0_0 | CniVersion::V1_1_0 => ResultFamily::V1,
        }
    }

    /// All supported version strings, in ascending order.
    pub fn all_strs() -> Vec<&'static str> {
        CniVersion::ALL.iter().map(|v| v.as_str()).collect()
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CniVersion {
    type Err = CniError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CniVersion::parse(s)
    }
}

/// Go skel's version-gate error: `incompatible CNI versions`, details
/// `config is "X", plugin supports ["0.1.0" "0.2.0" ...]` (Go's `%q` of a string slice).
pub fn incompatible(config: &str) -> CniError {
    CniError::new(codes::INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(format!(
        "config is {}, plugin supports {}",
        gofmt::quote(config),
        gofmt::quote_list(&CniVersion::all_strs())
    ))
}

/// A version string split the way Go's `version.ParseVersion` does it: up to three
/// dot-separated integers, missing parts are 0, the empty string means 0.1.0.
pub fn parse_loose(s: &str) -> Result<(i64, i64, i64), String> {
    if s.is_empty() {
        return Ok((0, 1, 0));
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() >= 4 {
        return Err(format!(
            "invalid version {}: too many parts",
            gofmt::quote(s)
        ));
    }
    let mut out = [0i64; 3];
    for (i, (part, name)) in parts.iter().zip(["major", "minor", "micro"]).enumerate() {
        out[i] = gofmt::atoi(part).map_err(|e| {
            format!(
                "failed to convert {name} version part {}: {e}",
                gofmt::quote(part)
            )
        })?;
    }
    Ok((out[0], out[1], out[2]))
}

/// Go's `version.GreaterThanOrEqualTo(a, b)`.
pub fn greater_or_equal(a: &str, b: &str) -> Result<bool, String> {
    Ok(parse_loose(a)? >= parse_loose(b)?)
}

/// Go's `version.GreaterThan(a, b)`.
pub fn greater_than(a: &str, b: &str) -> Result<bool, String> {
    Ok(parse_loose(a)? > parse_loose(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_known_version_and_round_trips() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()).unwrap(), v);
            assert_eq!(v.to_string().parse::<CniVersion>().unwrap(), v);
        }
        assert!(CniVersion::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_version_names_itself_and_the_supported_list() {
        let e = CniVersion::parse("9.9.9").unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(e.msg, "incompatible CNI versions");
        assert_eq!(
            e.details.as_deref(),
            Some(
                r#"config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
            )
        );
        assert!(CniVersion::parse("").is_err());
        assert!(CniVersion::parse("1.1").is_err());
    }

    #[test]
    fn families() {
        assert_eq!(CniVersion::V0_2_0.family(), ResultFamily::V02);
        assert_eq!(CniVersion::V0_3_1.family(), ResultFamily::V04);
        assert_eq!(CniVersion::V1_0_0.family(), ResultFamily::V1);
    }

    #[test]
    fn loose_versions_follow_go() {
        assert_eq!(parse_loose(""), Ok((0, 1, 0)));
        assert_eq!(parse_loose("1"), Ok((1, 0, 0)));
        assert_eq!(parse_loose("0.4"), Ok((0, 4, 0)));
        assert_eq!(
            parse_loose("1.2.3.4").unwrap_err(),
            r#"invalid version "1.2.3.4": too many parts"#
        );
        assert_eq!(
            parse_loose("a.1").unwrap_err(),
            r#"failed to convert major version part "a": strconv.Atoi: parsing "a": invalid syntax"#
        );
        assert_eq!(
            parse_loose("1.x").unwrap_err(),
            r#"failed to convert minor version part "x": strconv.Atoi: parsing "x": invalid syntax"#
        );
        assert!(greater_or_equal("0.4.0", "0.4.0").unwrap());
        assert!(greater_or_equal("0.10.0", "0.4.0").unwrap());
        assert!(!greater_or_equal("0.3.1", "0.4.0").unwrap());
        assert!(greater_than("1.2.0", "1.1.0").unwrap());
        assert!(!greater_than("1.1.0", "1.1.0").unwrap());
    }
}

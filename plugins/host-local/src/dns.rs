//! `resolvConf`: the DNS settings handed back in the ADD result, read from a resolv.conf file.

use std::path::Path;

use netconf::Dns;

use crate::error::{Error, PathError};

/// Reads `path`; only a missing or unreadable file is an error, unknown lines are skipped.
pub fn read_resolv_conf(path: &Path) -> Result<Dns, Error> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::ResolvConf(PathError::new("open", path, e)))?;
    Ok(parse_resolv_conf(&String::from_utf8_lossy(&bytes)))
}

/// `nameserver` and `search`/`options` accumulate, the last `domain` wins; comments start with
/// `#` or `;`, and a keyword without a value is ignored.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [keyword, values @ ..] = fields.as_slice() else {
            continue;
        };
        if values.is_empty() {
            continue;
        }
        match *keyword {
            "nameserver" => dns.nameservers.push(values[0].to_string()),
            "domain" => dns.domain = Some(values[0].to_string()),
            "search" => dns.search.extend(values.iter().map(|s| s.to_string())),
            "options" => dns.options.extend(values.iter().map(|s| s.to_string())),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_keywords() {
        let text = "# comment\n; other comment\nnameserver 10.0.0.10 extra\r\nnameserver fd00::a\n\
                    domain a.example\ndomain b.example\nsearch x.example  y.example\nsearch z.example\n\
                    options ndots:5 rotate\nsortlist 10.0.0.0\nnameserver\n   \n";
        let dns = parse_resolv_conf(text);
        assert_eq!(dns.nameservers, ["10.0.0.10", "fd00::a"]);
        assert_eq!(dns.domain.as_deref(), Some("b.example"));
        assert_eq!(dns.search, ["x.example", "y.example", "z.example"]);
        assert_eq!(dns.options, ["ndots:5", "rotate"]);
    }

    #[test]
    fn missing_file_reads_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        let e = read_resolv_conf(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("open {}: no such file or directory", path.display())
        );
    }
}

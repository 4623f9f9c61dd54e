//! The token syntax of `iptables-restore` input and `iptables-save` output.
//!
//! iptables-restore splits a line on blanks, except inside double quotes; inside quotes a
//! backslash takes the next character literally and the closing quote ends the token.
//! Outside quotes a backslash is an ordinary character. iptables-save prints values that
//! need it in exactly that form, so one tokenizer reads both.

use super::IptablesError;

/// Renders one argument so that iptables-restore reads it back as exactly `token`.
pub fn quote(token: &str) -> Result<String, IptablesError> {
    if token.contains(['\n', '\r', '\0']) {
        // Input is read line by line: no quoting can carry a line break through.
        return Err(IptablesError::InvalidToken(token.to_string()));
    }
    let plain = !token.is_empty() && !token.contains([' ', '\t', '"', '\\', '\'']);
    if plain {
        return Ok(token.to_string());
    }
    let mut out = String::with_capacity(token.len() + 2);
    out.push('"');
    for c in token.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// Joins arguments into one restore-syntax fragment.
pub fn join<S: AsRef<str>>(tokens: &[S]) -> Result<String, IptablesError> {
    let quoted = tokens
        .iter()
        .map(|t| quote(t.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(quoted.join(" "))
}

/// Splits a line the way iptables-restore does.
pub fn tokenize(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_quotes {
            if escaped {
                current.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                // A closing quote ends the token even if it is empty (`""`).
                in_quotes = false;
                tokens.push(std::mem::take(&mut current));
            } else {
                current.push(c);
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ' ' | '\t' | '\n' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portmap_comment_round_trips() {
        let comment = r#"dnat name: "cbr0" id: "ctr1""#;
        let q = quote(comment).unwrap();
        assert_eq!(q, r#""dnat name: \"cbr0\" id: \"ctr1\"""#);
        assert_eq!(tokenize(&q), vec![comment.to_string()]);
    }

    #[test]
    fn plain_tokens_stay_bare() {
        assert_eq!(quote("10.244.0.0/16").unwrap(), "10.244.0.0/16");
        assert_eq!(quote("--set-xmark").unwrap(), "--set-xmark");
        assert_eq!(quote("0x2000/0x2000").unwrap(), "0x2000/0x2000");
    }

    #[test]
    fn awkward_tokens_round_trip() {
        for t in [
            "",
            "a b",
            "tab\there",
            r"back\slash",
            r#"a"b"#,
            "it's",
            r#"\""#,
            "  lead",
        ] {
            let line = format!("-A X {} -j RETURN", quote(t).unwrap());
            assert_eq!(
                tokenize(&line),
                vec!["-A", "X", t, "-j", "RETURN"],
                "token {t:?} via {line:?}"
            );
        }
    }

    #[test]
    fn line_breaks_are_rejected() {
        assert!(quote("a\nb").is_err());
        assert!(quote("a\0b").is_err());
    }

    #[test]
    fn tokenizes_save_output() {
        let line = r#"-A POSTROUTING -s 10.244.1.2/32 -m comment --comment "name: \"cbr0\" id: \"ctr1\"" -j CNI-9cccacf967e00a3c04e26966"#;
        assert_eq!(
            tokenize(line),
            vec![
                "-A",
                "POSTROUTING",
                "-s",
                "10.244.1.2/32",
                "-m",
                "comment",
                "--comment",
                r#"name: "cbr0" id: "ctr1""#,
                "-j",
                "CNI-9cccacf967e00a3c04e26966"
            ]
        );
        // Outside quotes a backslash is literal, and blanks collapse.
        assert_eq!(tokenize(r"a\b   c"), vec![r"a\b", "c"]);
    }
}

//! What a failed libcni call reports, parsed from `cnidriver`'s stderr.

/// Marks the driver's machine-readable error line (see cnidriver/report.go).
const ERROR_LINE_PREFIX: &str = "CNI_ERROR ";

/// A CNI operation that failed: either a plugin error (with its CNI error
/// code) or a refusal by libcni itself (no code, e.g. CHECK on a 0.3.1 list).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct CniFailure {
    /// The CNI error code, when the error was a CNI error result.
    pub code: Option<u32>,
    /// The CNI error's `msg`, or the whole error text when there is no code.
    pub msg: String,
    /// The CNI error's `details`, when non-empty.
    pub details: Option<String>,
    /// The error as libcni reports it, wrapping included, e.g.
    /// `plugin type="bridge" failed (add): ...`.
    pub error: String,
    /// Everything the driver and plugins wrote to stderr.
    pub stderr: String,
}

impl CniFailure {
    pub(crate) fn parse(verb: &str, stderr: &str) -> CniFailure {
        let mut body = stderr.trim_end();
        let mut coded: Option<(u32, String, String)> = None;
        let (before, last) = body.rsplit_once('\n').unwrap_or(("", body));
        if let Some(json) = last.strip_prefix(ERROR_LINE_PREFIX) {
            coded = parse_error_line(json);
            if coded.is_some() {
                body = before;
            }
        }
        let marker = format!("cnidriver: {verb}: ");
        let error = match body.rfind(&marker) {
            Some(i) => body[i + marker.len()..].trim_end().to_owned(),
            None => body.trim().to_owned(),
        };
        match coded {
            Some((code, msg, details)) => CniFailure {
                code: Some(code),
                msg,
                details: (!details.is_empty()).then_some(details),
                error,
                stderr: stderr.to_owned(),
            },
            None => CniFailure {
                code: None,
                msg: error.clone(),
                details: None,
                error,
                stderr: stderr.to_owned(),
            },
        }
    }
}

fn parse_error_line(json: &str) -> Option<(u32, String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let code = u32::try_from(v["code"].as_u64()?).ok()?;
    Some((
        code,
        v["msg"].as_str()?.to_owned(),
        v["details"].as_str().unwrap_or("").to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_error_takes_code_msg_details_from_last_line() {
        let stderr =
            "plugin log line\ncnidriver: add: plugin type=\"bridge\" failed (add): boom; why\n\
                      CNI_ERROR {\"code\":7,\"msg\":\"boom\",\"details\":\"why\"}\n";
        let f = CniFailure::parse("add", stderr);
        assert_eq!(f.code, Some(7));
        assert_eq!(f.msg, "boom");
        assert_eq!(f.details.as_deref(), Some("why"));
        assert_eq!(f.error, "plugin type=\"bridge\" failed (add): boom; why");
        assert_eq!(f.stderr, stderr);
    }

    #[test]
    fn multi_line_error_text_is_kept_whole() {
        let stderr = "cnidriver: del: netplugin failed: \"line1\nline2\"\nCNI_ERROR {\"code\":0,\"msg\":\"x\",\"details\":\"\"}";
        let f = CniFailure::parse("del", stderr);
        assert_eq!(f.code, Some(0));
        assert_eq!(f.details, None);
        assert_eq!(f.error, "netplugin failed: \"line1\nline2\"");
    }

    #[test]
    fn uncoded_error_uses_the_error_text_as_msg() {
        let stderr = "cnidriver: check: configuration version \"0.3.1\" does not support the CHECK command\n";
        let f = CniFailure::parse("check", stderr);
        assert_eq!(f.code, None);
        assert_eq!(
            f.msg,
            "configuration version \"0.3.1\" does not support the CHECK command"
        );
        assert_eq!(f.msg, f.error);
    }

    #[test]
    fn a_malformed_error_line_is_not_mistaken_for_a_code() {
        let f = CniFailure::parse("add", "cnidriver: add: x\nCNI_ERROR {not json");
        assert_eq!(f.code, None);
        assert!(f.error.ends_with("CNI_ERROR {not json"), "{}", f.error);
    }
}

//! Go's `strconv.ParseBool`, `ParseInt(s, 0, 64)` and `ParseUint(s, 0, 64)`, with the two
//! error texts Go's `flag` package reports for them, and `strconv.Atoi` with the whole error
//! text Go prints for it (environment variables upstream reads with `Atoi`).

const PARSE_ERROR: &str = "parse error";
const RANGE_ERROR: &str = "value out of range";

pub fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(PARSE_ERROR),
    }
}

pub fn parse_int(s: &str) -> Result<i64, &'static str> {
    let (negative, magnitude) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = parse_uint_base0(magnitude, s)?;
    let limit = 1u64 << 63;
    match negative {
        false if n >= limit => Err(RANGE_ERROR),
        true if n > limit => Err(RANGE_ERROR),
        // -(1 << 63) is representable only through wrapping from the unsigned magnitude.
        true => Ok((n as i64).wrapping_neg()),
        false => Ok(n as i64),
    }
}

pub fn parse_uint(s: &str) -> Result<u64, &'static str> {
    parse_uint_base0(s, s)
}

/// `digits` is the unsigned part; `whole` the original text, for the underscore rule (which
/// Go checks on the string including its sign).
fn parse_uint_base0(digits: &str, whole: &str) -> Result<u64, &'static str> {
    let b = digits.as_bytes();
    if b.is_empty() {
        return Err(PARSE_ERROR);
    }
    let (base, body): (u32, &[u8]) = if b[0] == b'0' {
        match b.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if b.len() >= 3 => (2, &b[2..]),
            Some(b'o') if b.len() >= 3 => (8, &b[2..]),
            Some(b'x') if b.len() >= 3 => (16, &b[2..]),
            _ => (8, &b[1..]),
        }
    } else {
        (10, b)
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    let mut overflow = false;
    for &c in body {
        if c == b'_' {
            underscores = true;
            continue;
        }
        let d = (c as char)
            .to_digit(36)
            .filter(|d| *d < base)
            .ok_or(PARSE_ERROR)?;
        match n
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => n = v,
            None => overflow = true,
        }
    }
    if underscores && !underscores_ok(whole) {
        return Err(PARSE_ERROR);
    }
    if overflow {
        return Err(RANGE_ERROR);
    }
    Ok(n)
}

/// Underscores may only separate digits (a base prefix counts as a digit).
fn underscores_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some(b'-' | b'+') = b.first() {
        b = &b[1..];
    }
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let mut saw = Saw::Start;
    let mut hex = false;
    let mut i = 0;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = Saw::Digit;
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &b[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = Saw::Digit;
        } else if c == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else if saw == Saw::Underscore {
            return false;
        } else {
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

/// `strconv.Atoi` on a 64-bit platform: an optional sign and decimal digits only (no base
/// prefix, no `_`), within `i64`. The error prints as Go's `*strconv.NumError` does.
pub fn atoi(s: &str) -> Result<i64, AtoiError> {
    let fail = |reason| AtoiError {
        text: s.to_owned(),
        reason,
    };
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(PARSE_ERROR_ATOI));
    }
    // Every digit string fits in i128 long before it could overflow it, except absurdly long
    // ones, which are out of range anyway.
    let magnitude: i128 = digits.parse().unwrap_or(i128::MAX);
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| fail(RANGE_ERROR))
}

const PARSE_ERROR_ATOI: &str = "invalid syntax";

/// A value `strconv.Atoi` refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtoiError {
    text: String,
    reason: &'static str,
}

impl std::fmt::Display for AtoiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "strconv.Atoi: parsing {}: {}",
            netconf::gofmt::quote(&self.text),
            self.reason
        )
    }
}

impl std::error::Error for AtoiError {}

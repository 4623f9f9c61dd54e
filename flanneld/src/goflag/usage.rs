//! Go's `FlagSet.PrintDefaults` layout.

use super::{Flag, Kind};

/// The value name shown after `-flag`: a backquoted word in the usage text if there is one
/// (removed of its quotes in the text), else one derived from the type; booleans show none.
fn value_name(flag: &Flag) -> (String, String) {
    let usage = flag.usage;
    if let Some(start) = usage.find('`') {
        if let Some(len) = usage[start + 1..].find('`') {
            let name = &usage[start + 1..start + 1 + len];
            let text = format!("{}{}{}", &usage[..start], name, &usage[start + len + 2..]);
            return (name.to_owned(), text);
        }
    }
    let name = match flag.kind {
        Kind::Bool => "",
        Kind::String => "string",
        Kind::Int => "int",
        Kind::Uint => "uint",
        Kind::List => "value",
    };
    (name.to_owned(), usage.to_owned())
}

fn is_zero(flag: &Flag) -> bool {
    match flag.kind {
        Kind::Bool => flag.default == "false",
        Kind::Int | Kind::Uint => flag.default == "0",
        Kind::String | Kind::List => flag.default.is_empty(),
    }
}

pub(super) fn defaults(flags: &[Flag]) -> String {
    let mut sorted: Vec<&Flag> = flags.iter().collect();
    sorted.sort_by_key(|f| f.name);
    let mut out = String::new();
    for flag in sorted {
        let mut line = format!("  -{}", flag.name);
        let (name, usage) = value_name(flag);
        if !name.is_empty() {
            line.push(' ');
            line.push_str(&name);
        }
        // Single-letter booleans keep their help on the same line, as Go prints them.
        line.push_str(if line.len() <= 4 { "\t" } else { "\n    \t" });
        line.push_str(&usage.replace('\n', "\n    \t"));
        if !is_zero(flag) {
            match flag.kind {
                Kind::String => line.push_str(&format!(" (default {:?})", flag.default)),
                _ => line.push_str(&format!(" (default {})", flag.default)),
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

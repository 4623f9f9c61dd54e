//! `metav1.LabelSelector`: `matchLabels` and `matchExpressions`, ANDed, as the API reference
//! defines them (and `k8s.io/apimachinery/pkg/apis/meta/v1/helpers.go`
//! `LabelSelectorAsSelector` implements them).
//!
//! - An empty selector (`{}`) matches every object.
//! - `In`: the key is present and its value is one of `values`; `NotIn`: the key is absent or
//!   its value is none of `values`; `Exists` / `DoesNotExist`: presence alone.
//! - `In` and `NotIn` need at least one value; `Exists` and `DoesNotExist` take none. Anything
//!   else (an unknown operator, a value list where none belongs) is an error, and a policy
//!   holding such a selector fails closed (see [`super::policy`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: Operator,
}

/// A parsed selector. Requirements are kept sorted so that two selectors written differently
/// but meaning the same share one canonical form ([`Selector::canonical`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    labels: Vec<(String, String)>,
    exprs: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything (`{}`).
    pub fn everything() -> Selector {
        Selector::default()
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.exprs.is_empty()
    }

    /// Parses a `LabelSelector` JSON object. `null` is not a selector; callers decide what a
    /// missing one means.
    pub fn parse(v: &Value) -> Result<Selector, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("a label selector must be an object, not {v}"))?;
        let mut sel = Selector::default();
        for (field, val) in obj {
            match field.as_str() {
                "matchLabels" => sel.labels = parse_match_labels(val)?,
                "matchExpressions" => sel.exprs = parse_expressions(val)?,
                other => return Err(format!("unknown label selector field {other:?}")),
            }
        }
        sel.labels.sort();
        sel.labels.dedup();
        sel.exprs.sort();
        sel.exprs.dedup();
        Ok(sel)
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
            && self.exprs.iter().all(|r| r.matches(labels))
    }

    /// A stable text naming what this selector selects, for sharing one nft set between
    /// policies that use the same selector.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.labels {
            let _ = write!(out, "{k}={v},");
        }
        for r in &self.exprs {
            let _ = match &r.op {
                Operator::In(vs) => write!(out, "{} in ({}),", r.key, vs.join("|")),
                Operator::NotIn(vs) => write!(out, "{} notin ({}),", r.key, vs.join("|")),
                Operator::Exists => write!(out, "{},", r.key),
                Operator::DoesNotExist => write!(out, "!{},", r.key),
            };
        }
        out
    }
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            Operator::In(vs) => value.is_some_and(|v| vs.contains(v)),
            Operator::NotIn(vs) => !value.is_some_and(|v| vs.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

fn parse_match_labels(v: &Value) -> Result<Vec<(String, String)>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("matchLabels[{k:?}] must be a string, not {other}")),
            })
            .collect(),
        other => Err(format!("matchLabels must be an object, not {other}")),
    }
}

fn parse_expressions(v: &Value) -> Result<Vec<Requirement>, String> {
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(l) => l,
        other => return Err(format!("matchExpressions must be a list, not {other}")),
    };
    list.iter().map(parse_requirement).collect()
}

fn parse_requirement(v: &Value) -> Result<Requirement, String> {
    let key = v
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("a matchExpressions entry needs a key: {v}"))?
        .to_owned();
    let op = v.get("operator").and_then(Value::as_str).unwrap_or("");
    let values: Vec<String> = match v.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(l)) => l
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("values of {key:?} must be strings, not {x}"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("values of {key:?} must be a list, not {other}")),
    };
    let op = match op {
        "In" | "NotIn" if values.is_empty() => {
            return Err(format!(
                "operator {op} on {key:?} needs at least one value"
            ))
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            return Err(format!("operator {op} on {key:?} takes no values"))
        }
        "In" | "NotIn" => {
            let mut values = values;
            values.sort();
            values.dedup();
            if op == "In" {
                Operator::In(values)
            } else {
                Operator::NotIn(values)
            }
        }
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(format!(
                "unknown label selector operator {other:?} on {key:?} (known: In, NotIn, Exists, DoesNotExist)"
            ))
        }
    };
    Ok(Requirement { key, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sel(v: Value) -> Selector {
        Selector::parse(&v).unwrap()
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = sel(json!({}));
        assert!(s.is_everything());
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("pod", "a")])));
        assert!(sel(json!({"matchLabels": {}, "matchExpressions": []})).is_everything());
        assert!(sel(json!({"matchLabels": null})).is_everything());
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let s = sel(json!({
            "matchLabels": {"pod": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]
        }));
        assert!(s.matches(&labels(&[("pod", "a"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("pod", "a"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("pod", "b"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("pod", "a")])));
    }

    #[test]
    fn operators_follow_the_api_reference() {
        let not_in =
            sel(json!({"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}));
        assert!(not_in.matches(&labels(&[])), "NotIn matches an absent key");
        assert!(not_in.matches(&labels(&[("ns", "y")])));
        assert!(!not_in.matches(&labels(&[("ns", "x")])));
        let exists = sel(json!({"matchExpressions": [{"key": "ns", "operator": "Exists"}]}));
        assert!(exists.matches(&labels(&[("ns", "")])));
        assert!(!exists.matches(&labels(&[])));
        let absent = sel(
            json!({"matchExpressions": [{"key": "ns", "operator": "DoesNotExist", "values": []}]}),
        );
        assert!(absent.matches(&labels(&[("other", "1")])));
        assert!(!absent.matches(&labels(&[("ns", "x")])));
    }

    #[test]
    fn selectors_flanneld_cannot_understand_are_errors() {
        for bad in [
            json!({"matchExpressions": [{"key": "a", "operator": "Matches", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"operator": "Exists"}]}),
            json!({"matchLabels": {"a": 1}}),
            json!({"matchLabels": ["a"]}),
            json!({"matchFields": {}}),
            json!("pod=a"),
        ] {
            assert!(Selector::parse(&bad).is_err(), "{bad} parsed");
        }
        let e = Selector::parse(
            &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap_err();
        assert!(e.contains("unknown label selector operator \"Gt\""), "{e}");
    }

    #[test]
    fn canonical_form_ignores_spelling_order() {
        let a = sel(json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x", "x"]}]}));
        let b = sel(
            json!({"matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}],
            "matchLabels": {"a": "1", "b": "2"}}),
        );
        assert_eq!(a, b);
        assert_eq!(a.canonical(), b.canonical());
        assert_ne!(
            a.canonical(),
            sel(json!({"matchLabels": {"a": "1"}})).canonical()
        );
    }
}

//! Label and field selectors, parsed from their query-string form and matched against objects.
//!
//! The grammar is the one `kubectl -l` and `?labelSelector=` use: comma-separated requirements of
//! the forms `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` and `!k`. Field selectors
//! allow only `=`, `==` and `!=` on dotted paths into the object (`spec.nodeName=n1`).

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid selector {selector:?}: {reason}")]
    Invalid { selector: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// One requirement on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Equals(want), Some(v)) => v == want,
            (Op::Equals(_), None) => false,
            (Op::NotEquals(want), Some(v)) => v != want,
            (Op::NotEquals(_), None) => true,
            (Op::In(set), Some(v)) => set.iter().any(|s| s == v),
            (Op::In(_), None) => false,
            (Op::NotIn(set), Some(v)) => !set.iter().any(|s| s == v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::Invalid {
            selector: input.to_string(),
            reason: reason.to_string(),
        };
        let mut requirements = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement {
                    key: check_key(key.trim(), input)?,
                    op: Op::DoesNotExist,
                }
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement {
                    key: check_key(key.trim(), input)?,
                    op: Op::NotEquals(check_value(value.trim(), input)?),
                }
            } else if let Some((key, value)) =
                part.split_once("==").or_else(|| part.split_once('='))
            {
                Requirement {
                    key: check_key(key.trim(), input)?,
                    op: Op::Equals(check_value(value.trim(), input)?),
                }
            } else if let Some((key, set)) = split_set(part, " notin ") {
                Requirement {
                    key: check_key(key, input)?,
                    op: Op::NotIn(parse_set(set, input)?),
                }
            } else if let Some((key, set)) = split_set(part, " in ") {
                Requirement {
                    key: check_key(key, input)?,
                    op: Op::In(parse_set(set, input)?),
                }
            } else if part.contains(['(', ')', ' ']) {
                return Err(invalid("expected an operator (=, ==, !=, in, notin)"));
            } else {
                Requirement {
                    key: check_key(part, input)?,
                    op: Op::Exists,
                }
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Builds the selector a `matchLabels` / `matchExpressions` pair describes.
    pub fn from_label_selector(
        selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Self {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Op::Equals(v.clone()),
            })
            .collect();
        for expr in selector.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            let op = match expr.operator.as_str() {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" => Op::Exists,
                _ => Op::DoesNotExist,
            };
            requirements.push(Requirement {
                key: expr.key.clone(),
                op,
            });
        }
        Self { requirements }
    }

    /// Builds an equality selector from a map (a Service's or ReplicaSet's `selector`).
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        Self {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    op: Op::Equals(v.clone()),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }

    /// Matches against the `metadata.labels` of a JSON object.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let value = object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(&r.key))
                .and_then(Value::as_str);
            r.matches(value)
        })
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<Requirement>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, Error> {
        let mut requirements = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, op) = if let Some((k, v)) = part.split_once("!=") {
                (k, Op::NotEquals(v.trim().to_string()))
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, Op::Equals(v.trim().to_string()))
            } else {
                return Err(Error::Invalid {
                    selector: input.to_string(),
                    reason: format!("{part:?} is not of the form field=value or field!=value"),
                });
            };
            requirements.push(Requirement {
                key: key.trim().to_string(),
                op,
            });
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value a field selector compares, read from the object by dotted path; absent fields
    /// compare as the empty string, as the Kubernetes field sets do.
    pub fn field_value(object: &Value, path: &str) -> String {
        let mut cur = object;
        for seg in path.split('.') {
            match cur.get(seg) {
                Some(next) => cur = next,
                None => return String::new(),
            }
        }
        match cur {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    pub fn matches_object(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let value = Self::field_value(object, &r.key);
            r.matches(Some(value.as_str()))
        })
    }

    /// The value an equality requirement on `key` asks for, if any.
    pub fn equals(&self, key: &str) -> Option<&str> {
        self.requirements.iter().find_map(|r| match &r.op {
            Op::Equals(v) if r.key == key => Some(v.as_str()),
            _ => None,
        })
    }
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn split_set<'a>(part: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let (key, rest) = part.split_once(op)?;
    Some((key.trim(), rest.trim()))
}

fn parse_set(set: &str, input: &str) -> Result<Vec<String>, Error> {
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| Error::Invalid {
            selector: input.to_string(),
            reason: "expected a parenthesised set".into(),
        })?;
    inner
        .split(',')
        .map(|v| check_value(v.trim(), input))
        .collect()
}

fn check_key(key: &str, input: &str) -> Result<String, Error> {
    let ok = !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_string())
    } else {
        Err(Error::Invalid {
            selector: input.to_string(),
            reason: format!("invalid label key {key:?}"),
        })
    }
}

fn check_value(value: &str, input: &str) -> Result<String, Error> {
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::Invalid {
            selector: input.to_string(),
            reason: format!("invalid label value {value:?}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_sets() {
        let s = LabelSelector::parse("app=web,tier in (front, back),!legacy,env!=prod").unwrap();
        assert_eq!(s.requirements.len(), 4);
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "front"),
            ("legacy", "1")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("tier", "back"),
            ("env", "prod")
        ])));
    }

    #[test]
    fn exists_and_notin() {
        let s = LabelSelector::parse("app,tier notin (db)").unwrap();
        assert!(s.matches(&labels(&[("app", "x")])));
        assert!(!s.matches(&labels(&[("tier", "front")])));
        assert!(!s.matches(&labels(&[("app", "x"), ("tier", "db")])));
        assert!(LabelSelector::parse("").unwrap().matches(&labels(&[])));
    }

    #[test]
    fn rejects_garbage() {
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn fields() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "n1"}});
        let s = FieldSelector::parse("spec.nodeName=n1,metadata.name!=db").unwrap();
        assert!(s.matches_object(&pod));
        assert_eq!(s.equals("spec.nodeName"), Some("n1"));
        assert!(
            !FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches_object(&pod)
        );
        assert!(
            FieldSelector::parse("status.phase=")
                .unwrap()
                .matches_object(&pod)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}

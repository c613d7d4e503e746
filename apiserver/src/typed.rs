//! Decoding through the typed model: every object is checked against its `k8s-openapi` type
//! before it is stored.
//!
//! The round trip JSON → typed struct → JSON catches wrong types (with the field path), and
//! whatever does not survive it was a field the type does not have: an unknown field, which
//! `fieldValidation=Strict` rejects, `Warn` reports, and `Ignore` drops silently. What is stored
//! is the round-tripped form, so unknown fields never reach storage.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A decoding failure with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

/// Round-trips `value` through the type registered for `group`/`version`/`kind`. Returns the
/// normalised object and the paths of fields the type does not know.
pub fn normalize(
    group: &str,
    version: &str,
    kind: &str,
    value: Value,
) -> Result<(Value, Vec<String>), DecodeError> {
    match crate::strategy::find_kind(group, version, kind) {
        Some(strategy) => strategy.roundtrip(value),
        None => Ok((value, Vec::new())),
    }
}

/// Round-trips `value` through `T`.
pub(crate) fn roundtrip<T: DeserializeOwned + Serialize>(
    value: Value,
) -> Result<(Value, Vec<String>), DecodeError> {
    let typed: T = serde_path_to_error::deserialize(&value).map_err(|e| DecodeError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    let back = serde_json::to_value(&typed).map_err(|e| DecodeError {
        path: String::new(),
        message: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    diff_unknown(&value, &back, String::new(), &mut unknown);
    Ok((back, unknown))
}

/// Collects the paths present (and non-null) in `input` but absent from `output`.
fn diff_unknown(input: &Value, output: &Value, path: String, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(w) => diff_unknown(v, w, child, out),
                    None if v.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff_unknown(v, w, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_and_dropped() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}], "alsoBogus": true},
            "status": null});
        let (out, unknown) = normalize("", "v1", "Pod", pod).unwrap();
        assert_eq!(unknown, ["spec.alsoBogus", "spec.containers[0].bogus"]);
        assert!(out["spec"]["containers"][0].get("bogus").is_none());
    }

    #[test]
    fn wrong_types_name_the_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": "eighty"}]}]}});
        let e = normalize("", "v1", "Pod", pod).unwrap_err();
        assert_eq!(e.path, "spec.containers[0].ports[0].containerPort");
    }

    #[test]
    fn quantities_accept_numbers() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}});
        let (out, unknown) = normalize("", "v1", "Pod", pod).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }
}

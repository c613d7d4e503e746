//! `v1 LimitRange` validation, as upstream's `ValidateLimitRange`: a known `type`, valid
//! quantities, `min ≤ defaultRequest ≤ default ≤ max`, a `maxLimitRequestRatio` of at least 1,
//! and no defaults on the `Pod` type (a pod has no resources of its own to default).

use std::collections::BTreeSet;

use ekube_api::quantity::parse_milli;
use serde_json::{Value, json};

use super::quantity_map;
use crate::errors::Cause;

const TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];
const LISTS: &[&str] = &[
    "min",
    "max",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
];

pub(crate) fn validate(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(limits) = obj.pointer("/spec/limits").and_then(Value::as_array) else {
        causes.push(Cause::required("spec.limits"));
        return;
    };
    for (i, item) in limits.iter().enumerate() {
        let field = format!("spec.limits[{i}]");
        match item["type"].as_str() {
            None | Some("") => causes.push(Cause::required(format!("{field}.type"))),
            Some(t) if !TYPES.contains(&t) => {
                causes.push(Cause::not_supported(format!("{field}.type"), t, TYPES))
            }
            Some("Pod") => {
                for list in ["default", "defaultRequest"] {
                    if item
                        .get(list)
                        .and_then(Value::as_object)
                        .is_some_and(|m| !m.is_empty())
                    {
                        causes.push(Cause::forbidden(
                            format!("{field}.{list}"),
                            "may not be specified when `type` is 'Pod'",
                        ));
                    }
                }
            }
            Some(_) => {}
        }
        let before = causes.len();
        for list in LISTS {
            quantity_map(item, list, causes);
        }
        for c in &mut causes[before..] {
            c.field = format!("{field}.{}", c.field);
        }
        // The order checks need every quantity to parse.
        if causes.len() > before {
            continue;
        }
        ordering(item, &field, causes);
    }
}

/// The amount `item.<list>[res]`, with its text.
fn amount<'a>(item: &'a Value, list: &str, res: &str) -> Option<(&'a str, i128)> {
    let text = item.get(list)?.get(res)?.as_str()?;
    Some((text, parse_milli(text).ok()?))
}

fn ordering(item: &Value, field: &str, causes: &mut Vec<Cause>) {
    let names: BTreeSet<&str> = LISTS
        .iter()
        .filter_map(|l| item.get(*l).and_then(Value::as_object))
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    for res in names {
        let get = |list| amount(item, list, res);
        let (min, max) = (get("min"), get("max"));
        let (default, request) = (get("default"), get("defaultRequest"));
        // (lower, upper, where the complaint goes, how upstream words it)
        let pairs = [
            (
                min,
                max,
                "min",
                "min value {a} is greater than max value {b}",
            ),
            (
                min,
                request,
                "defaultRequest",
                "min value {a} is greater than default request value {b}",
            ),
            (
                request,
                max,
                "defaultRequest",
                "default request value {a} is greater than max value {b}",
            ),
            (
                min,
                default,
                "default",
                "min value {a} is greater than default value {b}",
            ),
            (
                default,
                max,
                "default",
                "default value {a} is greater than max value {b}",
            ),
            (
                request,
                default,
                "defaultRequest",
                "default request value {a} is greater than default limit value {b}",
            ),
        ];
        for (lower, upper, list, wording) in pairs {
            if let (Some((a, lo)), Some((b, hi))) = (lower, upper)
                && lo > hi
            {
                let value = item[list][res].as_str().unwrap_or_default();
                causes.push(Cause::invalid(
                    format!("{field}.{list}[{res}]"),
                    json!(value),
                    &wording.replace("{a}", a).replace("{b}", b),
                ));
            }
        }
        if let Some((text, ratio)) = get("maxLimitRequestRatio")
            && ratio < 1000
        {
            causes.push(Cause::invalid(
                format!("{field}.maxLimitRequestRatio[{res}]"),
                json!(text),
                &format!("ratio {text} is less than 1"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(limits: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate(&json!({"spec": {"limits": limits}}), &mut causes);
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn bounds_must_be_ordered() {
        assert!(check(json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"},
            "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "200m"}, "maxLimitRequestRatio": {"cpu": "4"}}])).is_empty());
        assert_eq!(
            check(json!([{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}])),
            [
                "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"
            ]
        );
        assert_eq!(
            check(
                json!([{"type": "Container", "default": {"memory": "1Gi"}, "max": {"memory": "512Mi"}}])
            ),
            [
                "spec.limits[0].default[memory]: Invalid value: \"1Gi\": default value 1Gi is greater than max value 512Mi"
            ]
        );
        assert_eq!(
            check(json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}}])),
            [
                "spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: \"500m\": ratio 500m is less than 1"
            ]
        );
    }

    #[test]
    fn types_and_pod_defaults() {
        assert_eq!(
            check(json!([{"type": "Pod", "default": {"cpu": "1"}}])),
            ["spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'"]
        );
        assert_eq!(
            check(json!([{"max": {"cpu": "1"}}])),
            ["spec.limits[0].type: Required value"]
        );
        assert_eq!(check(json!([{"type": "Node"}])).len(), 1);
        assert_eq!(
            check(json!([{"type": "Container", "max": {"cpu": "lots"}}])).len(),
            1
        );
    }
}

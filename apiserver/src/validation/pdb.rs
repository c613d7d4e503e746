//! `policy/v1 PodDisruptionBudget` validation, as upstream's `ValidatePodDisruptionBudget`:
//! `minAvailable` and `maxUnavailable` are each a non-negative integer or a percentage of at
//! most 100%, never both set; the selector is a valid label selector (it may be left out: a
//! budget without one selects no pod); `unhealthyPodEvictionPolicy` is a known policy; and the
//! status counts are never negative.

use serde_json::Value;

use super::{labels, qualified_name};
use crate::errors::Cause;

const EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];
const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

pub(crate) fn validate(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        causes.push(Cause::invalid(
            "spec",
            spec,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(v) = min {
        int_or_percent(v, "spec.minAvailable", causes);
    }
    if let Some(v) = max {
        int_or_percent(v, "spec.maxUnavailable", causes);
    }
    if let Some(sel) = spec.get("selector").filter(|v| !v.is_null()) {
        label_selector(sel, "spec.selector", causes);
    }
    if let Some(policy) = spec
        .get("unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        && !EVICTION_POLICIES.contains(&policy)
    {
        causes.push(Cause::not_supported(
            "spec.unhealthyPodEvictionPolicy",
            policy,
            EVICTION_POLICIES,
        ));
    }
    for field in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        if let Some(n) = obj
            .pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            && n < 0
        {
            causes.push(Cause::invalid(
                format!("status.{field}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// Upstream's `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`.
fn int_or_percent(v: &Value, field: &str, causes: &mut Vec<Cause>) {
    match v {
        Value::Number(n) => {
            if n.as_i64().is_some_and(|n| n < 0) {
                causes.push(Cause::invalid(
                    field,
                    n,
                    "must be greater than or equal to 0",
                ));
            }
        }
        Value::String(s) => match ekube_api::intstr::percent(s) {
            Some(p) if p > 100 => causes.push(Cause::invalid(
                field,
                format!("\"{s}\""),
                "must not be greater than 100%",
            )),
            Some(_) => {}
            None => causes.push(Cause::invalid(
                field,
                format!("\"{s}\""),
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        other => causes.push(Cause::invalid(
            field,
            other,
            "must be an integer or percentage (e.g '5%')",
        )),
    }
}

/// Upstream's `ValidateLabelSelector`: valid label keys and values, known operators, values
/// exactly where the operator takes them.
pub(super) fn label_selector(sel: &Value, at: &str, causes: &mut Vec<Cause>) {
    labels(sel.get("matchLabels"), &format!("{at}.matchLabels"), causes);
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, e) in exprs.iter().enumerate() {
        let at = format!("{at}.matchExpressions[{i}]");
        let op = e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let has_values = e
            .get("values")
            .and_then(Value::as_array)
            .is_some_and(|v| !v.is_empty());
        match op {
            "In" | "NotIn" if !has_values => causes.push(Cause::required_with(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if has_values => causes.push(Cause::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            _ if !OPERATORS.contains(&op) => causes.push(Cause::invalid(
                format!("{at}.operator"),
                format!("\"{op}\""),
                "not a valid selector operator",
            )),
            _ => {}
        }
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        for msg in qualified_name(key) {
            causes.push(Cause::invalid(
                format!("{at}.key"),
                format!("\"{key}\""),
                &msg,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(spec: Value) -> Vec<String> {
        let mut causes = Vec::new();
        validate(&json!({"spec": spec}), &mut causes);
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn valid_budgets() {
        for spec in [
            json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
            json!({"maxUnavailable": "25%", "selector": {}}),
            json!({"minAvailable": "100%"}),
            json!({}),
            json!({"maxUnavailable": 0, "unhealthyPodEvictionPolicy": "AlwaysAllow",
                   "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]}}),
        ] {
            assert_eq!(check(spec.clone()), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn invalid_budgets() {
        let cases = [
            (
                json!({"minAvailable": 1, "maxUnavailable": 1}),
                "spec: Invalid value: {",
            ),
            (
                json!({"minAvailable": -1}),
                "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                json!({"maxUnavailable": "150%"}),
                "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
            ),
            (
                json!({"minAvailable": "half"}),
                "spec.minAvailable: Invalid value: \"half\": a valid percent string",
            ),
            (
                json!({"unhealthyPodEvictionPolicy": "Never"}),
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\"",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
                "spec.selector.matchExpressions[0].values: Required value: must be specified",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}}),
                "spec.selector.matchExpressions[0].values: Forbidden: may not be specified",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}),
                "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
            ),
            (
                json!({"selector": {"matchLabels": {"-bad": "x"}}}),
                "spec.selector.matchLabels: Invalid value: \"-bad\"",
            ),
        ];
        for (spec, want) in cases {
            let got = check(spec.clone());
            assert!(
                got.len() == 1 && got[0].starts_with(want),
                "{spec}: got {got:?}, want {want}"
            );
        }
        let both = check(json!({"minAvailable": 1, "maxUnavailable": 1}));
        assert!(
            both[0].ends_with("minAvailable and maxUnavailable cannot be both set"),
            "{both:?}"
        );
        let mut causes = Vec::new();
        validate(
            &json!({"spec": {}, "status": {"disruptionsAllowed": -1}}),
            &mut causes,
        );
        assert_eq!(causes[0].field, "status.disruptionsAllowed");
    }
}

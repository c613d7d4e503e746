//! `autoscaling` HorizontalPodAutoscaler validation, as upstream's
//! `ValidateHorizontalPodAutoscaler`, on the `autoscaling/v2` form every version is converted to
//! first: `minReplicas` at least 1 (0 needs the `HPAScaleToZero` alpha gate, which ekube does
//! not offer), `maxReplicas` at least 1 and `minReplicas`, a `scaleTargetRef` with a kind and a
//! name, well-formed metrics (checked once the reference is valid) and behavior policies
//! (checked once the metrics are).

use ekube_api::quantity::parse_nano;
use serde_json::Value;

use super::names::path_segment_errors;
use super::resources::container_resource_name;
use crate::errors::Cause;

/// `MaxPeriodSeconds`: the longest period a scaling policy may look back.
const MAX_PERIOD_SECONDS: i64 = 1800;
/// `MaxStabilizationWindowSeconds`.
const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;
/// Sorted, as upstream lists them (`sets.List()`).
const METRIC_SOURCE_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];
const SELECT_POLICIES: &[&str] = &["Disabled", "Max", "Min"];
const POLICY_TYPES: &[&str] = &["Percent", "Pods"];

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

pub(crate) fn validate(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = spec.get("minReplicas").and_then(int);
    let max = spec.get("maxReplicas").and_then(int).unwrap_or(0);
    if let Some(min) = min.filter(|m| *m < 1) {
        causes.push(Cause::invalid(
            "spec.minReplicas",
            min,
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let before = causes.len();
    cross_version_ref(&spec["scaleTargetRef"], "spec.scaleTargetRef", causes);
    if causes.len() != before {
        return;
    }
    if let Some(metrics) = spec.get("metrics").and_then(Value::as_array) {
        for (i, m) in metrics.iter().enumerate() {
            metric_spec(m, &format!("spec.metrics[{i}]"), causes);
        }
    }
    if causes.len() != before {
        return;
    }
    if let Some(behavior) = spec.get("behavior").filter(|b| b.is_object()) {
        for dir in ["scaleUp", "scaleDown"] {
            if let Some(rules) = behavior.get(dir).filter(|r| r.is_object()) {
                scaling_rules(rules, &format!("spec.behavior.{dir}"), causes);
            }
        }
    }
    status(obj, causes);
}

fn status(obj: &Value, causes: &mut Vec<Cause>) {
    for field in ["currentReplicas", "desiredReplicas"] {
        if let Some(n) = obj.pointer(&format!("/status/{field}")).and_then(int)
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

/// `ValidateCrossVersionObjectReference`.
fn cross_version_ref(r: &Value, at: &str, causes: &mut Vec<Cause>) {
    for field in ["kind", "name"] {
        let value = r.get(field).and_then(Value::as_str).unwrap_or_default();
        if value.is_empty() {
            causes.push(Cause::required(format!("{at}.{field}")));
        } else {
            for msg in path_segment_errors(value) {
                causes.push(Cause::invalid(
                    format!("{at}.{field}"),
                    format!("\"{value}\""),
                    &msg,
                ));
            }
        }
    }
}

/// `validateMetricSpec`: a known type whose source, and only that source, is set.
fn metric_spec(m: &Value, at: &str, causes: &mut Vec<Cause>) {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
    if ty.is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.type"),
            "must specify a metric source type",
        ));
    }
    if !METRIC_SOURCE_TYPES.contains(&ty) {
        causes.push(Cause::not_supported(
            format!("{at}.type"),
            ty,
            METRIC_SOURCE_TYPES,
        ));
    }
    const SOURCES: &[(&str, &str)] = &[
        ("object", "Object"),
        ("external", "External"),
        ("pods", "Pods"),
        ("resource", "Resource"),
        ("containerResource", "ContainerResource"),
    ];
    let present: Vec<&str> = SOURCES
        .iter()
        .map(|(field, _)| *field)
        .filter(|f| m.get(*f).is_some_and(|v| !v.is_null()))
        .collect();
    if let [only] = present[..] {
        let src = &m[only];
        let path = format!("{at}.{only}");
        match only {
            "object" => object_source(src, &path, causes),
            "external" => external_source(src, &path, causes),
            "pods" => pods_source(src, &path, causes),
            "resource" => resource_source(src, &path, false, causes),
            _ => resource_source(src, &path, true, causes),
        }
    }
    let expected = SOURCES.iter().find(|(_, t)| *t == ty).map(|(f, _)| *f);
    if let Some(field) = expected
        && !present.contains(&field)
    {
        causes.push(Cause::required_with(
            format!("{at}.{field}"),
            "must populate information for the given metric source",
        ));
    }
    if present.len() != 1 {
        for field in present.iter().filter(|f| Some(**f) != expected) {
            causes.push(Cause::forbidden(
                format!("{at}.{field}"),
                "must populate the given metric source only",
            ));
        }
    }
}

fn quantity_sign(v: &Value) -> Option<i128> {
    v.as_str()
        .and_then(|q| parse_nano(q).ok())
        .map(i128::signum)
}

/// `validateMetricTarget`.
fn metric_target(t: &Value, at: &str, causes: &mut Vec<Cause>) {
    let ty = t.get("type").and_then(Value::as_str).unwrap_or_default();
    if ty.is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.type"),
            "must specify a metric target type",
        ));
    }
    if !["Utilization", "Value", "AverageValue"].contains(&ty) {
        causes.push(Cause::invalid(
            format!("{at}.type"),
            format!("\"{ty}\""),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for field in ["value", "averageValue"] {
        if let Some(v) = t.get(field).filter(|v| !v.is_null())
            && quantity_sign(v) != Some(1)
        {
            let shown = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            causes.push(Cause::invalid(
                format!("{at}.{field}"),
                format!("\"{shown}\""),
                "must be positive",
            ));
        }
    }
    if let Some(u) = t.get("averageUtilization").and_then(int)
        && u < 1
    {
        causes.push(Cause::invalid(
            format!("{at}.averageUtilization"),
            u,
            "must be greater than 0",
        ));
    }
}

fn has(t: &Value, field: &str) -> bool {
    t.get(field).is_some_and(|v| !v.is_null())
}

/// `validateResourceSource` and `validateContainerResourceSource`.
fn resource_source(src: &Value, at: &str, container: bool, causes: &mut Vec<Cause>) {
    let name = src.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.name"),
            "must specify a resource name",
        ));
    } else {
        container_resource_name(name, &format!("{at}.name"), causes);
    }
    if container {
        let c = src
            .get("container")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if c.is_empty() {
            causes.push(Cause::required_with(
                format!("{at}.container"),
                "must specify a container",
            ));
        } else if !super::is_dns1123_label(c) {
            causes.push(Cause::invalid(
                format!("{at}.container"),
                format!("\"{c}\""),
                super::DNS1123_LABEL,
            ));
        }
    }
    let t = src.get("target").unwrap_or(&Value::Null);
    metric_target(t, &format!("{at}.target"), causes);
    match (has(t, "averageUtilization"), has(t, "averageValue")) {
        (false, false) => causes.push(Cause::required_with(
            format!("{at}.target.averageUtilization"),
            "must set either a target raw value or a target utilization",
        )),
        (true, true) => causes.push(Cause::forbidden(
            format!("{at}.target.averageValue"),
            "may not set both a target raw value and a target utilization",
        )),
        _ => {}
    }
}

/// `validateMetricIdentifier`.
fn metric_identifier(id: &Value, at: &str, causes: &mut Vec<Cause>) {
    let name = id.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.name"),
            "must specify a metric name",
        ));
    } else {
        for msg in path_segment_errors(name) {
            causes.push(Cause::invalid(
                format!("{at}.name"),
                format!("\"{name}\""),
                &msg,
            ));
        }
    }
}

fn pods_source(src: &Value, at: &str, causes: &mut Vec<Cause>) {
    metric_identifier(&src["metric"], &format!("{at}.metric"), causes);
    let t = src.get("target").unwrap_or(&Value::Null);
    metric_target(t, &format!("{at}.target"), causes);
    if !has(t, "averageValue") {
        causes.push(Cause::required_with(
            format!("{at}.target.averageValue"),
            "must specify a positive target averageValue",
        ));
    }
}

fn object_source(src: &Value, at: &str, causes: &mut Vec<Cause>) {
    cross_version_ref(
        &src["describedObject"],
        &format!("{at}.describedObject"),
        causes,
    );
    metric_identifier(&src["metric"], &format!("{at}.metric"), causes);
    let t = src.get("target").unwrap_or(&Value::Null);
    metric_target(t, &format!("{at}.target"), causes);
    if !has(t, "value") && !has(t, "averageValue") {
        causes.push(Cause::required_with(
            format!("{at}.target.averageValue"),
            "must set either a target value or averageValue",
        ));
    }
}

fn external_source(src: &Value, at: &str, causes: &mut Vec<Cause>) {
    metric_identifier(&src["metric"], &format!("{at}.metric"), causes);
    let t = src.get("target").unwrap_or(&Value::Null);
    metric_target(t, &format!("{at}.target"), causes);
    match (has(t, "value"), has(t, "averageValue")) {
        (false, false) => causes.push(Cause::required_with(
            format!("{at}.target.averageValue"),
            "must set either a target value for metric or a per-pod target",
        )),
        (true, true) => causes.push(Cause::forbidden(
            format!("{at}.target.value"),
            "may not set both a target value for metric and a per-pod target",
        )),
        _ => {}
    }
}

/// `validateScalingRules` and `validateScalingPolicy`.
fn scaling_rules(rules: &Value, at: &str, causes: &mut Vec<Cause>) {
    if let Some(w) = rules.get("stabilizationWindowSeconds").and_then(int) {
        if w < 0 {
            causes.push(Cause::invalid(
                format!("{at}.stabilizationWindowSeconds"),
                w,
                "must be greater than or equal to zero",
            ));
        }
        if w > MAX_STABILIZATION_WINDOW_SECONDS {
            causes.push(Cause::invalid(
                format!("{at}.stabilizationWindowSeconds"),
                w,
                &format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(t) = rules.get("tolerance").filter(|t| !t.is_null())
        && quantity_sign(t).is_some_and(|s| s < 0)
    {
        let shown = t.as_str().map_or_else(|| t.to_string(), str::to_string);
        causes.push(Cause::invalid(
            format!("{at}.tolerance"),
            format!("\"{shown}\""),
            "must be greater than or equal to zero",
        ));
    }
    if let Some(p) = rules.get("selectPolicy").and_then(Value::as_str)
        && !SELECT_POLICIES.contains(&p)
    {
        causes.push(Cause::not_supported(
            format!("{at}.selectPolicy"),
            p,
            SELECT_POLICIES,
        ));
    }
    let policies = rules
        .get("policies")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if policies.is_empty() {
        causes.push(Cause::required_with(
            format!("{at}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let path = format!("{at}.policies[{i}]");
        let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
        if !POLICY_TYPES.contains(&ty) {
            causes.push(Cause::not_supported(
                format!("{path}.type"),
                ty,
                POLICY_TYPES,
            ));
        }
        let value = p.get("value").and_then(int).unwrap_or(0);
        if value <= 0 {
            causes.push(Cause::invalid(
                format!("{path}.value"),
                value,
                "must be greater than zero",
            ));
        }
        let period = p.get("periodSeconds").and_then(int).unwrap_or(0);
        if period <= 0 {
            causes.push(Cause::invalid(
                format!("{path}.periodSeconds"),
                period,
                "must be greater than zero",
            ));
        }
        if period > MAX_PERIOD_SECONDS {
            causes.push(Cause::invalid(
                format!("{path}.periodSeconds"),
                period,
                &format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::errors::Cause;

    fn check(spec: Value) -> Vec<String> {
        let mut obj = json!({"metadata": {"name": "web"}, "spec": spec});
        crate::defaults::apply_kind("autoscaling", "HorizontalPodAutoscaler", &mut obj);
        let mut causes: Vec<Cause> = Vec::new();
        super::validate(&obj, &mut causes);
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn base() -> Value {
        json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
               "minReplicas": 1, "maxReplicas": 5})
    }

    fn with(extra: Value) -> Value {
        let mut spec = base();
        json_patch::merge(&mut spec, &extra);
        spec
    }

    #[test]
    fn a_defaulted_autoscaler_is_valid() {
        assert!(check(base()).is_empty());
    }

    #[test]
    fn replica_bounds() {
        assert_eq!(
            check(with(json!({"minReplicas": 0}))),
            ["spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"]
        );
        assert_eq!(
            check(with(json!({"minReplicas": 6}))),
            ["spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`"]
        );
        assert_eq!(
            check(with(json!({"minReplicas": null, "maxReplicas": 0}))),
            [
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`"
            ]
        );
    }

    #[test]
    fn scale_target_ref_is_required_and_checked_first() {
        assert_eq!(
            check(with(json!({"scaleTargetRef": {"kind": "", "name": "a/b"},
                "metrics": [{"type": "Bogus"}]}))),
            [
                "spec.scaleTargetRef.kind: Required value",
                "spec.scaleTargetRef.name: Invalid value: \"a/b\": may not contain '/'"
            ]
        );
    }

    #[test]
    fn metric_specs() {
        let errs = check(with(json!({"metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}},
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
            {"type": "Pods", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "-1"}}},
            {"type": "Bogus"},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}},
             "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1"}}},
        ]})));
        assert_eq!(
            errs,
            [
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
                "spec.metrics[1].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization",
                "spec.metrics[2].resource.target.averageValue: Invalid value: \"-1\": must be positive",
                "spec.metrics[2].pods: Required value: must populate information for the given metric source",
                "spec.metrics[3].type: Unsupported value: \"Bogus\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
                "spec.metrics[4].external: Forbidden: must populate the given metric source only",
            ]
        );
        let errs = check(with(json!({"metrics": [
            {"type": "ContainerResource", "containerResource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "1", "averageValue": "2"}}},
        ]})));
        assert_eq!(
            errs,
            [
                "spec.metrics[0].containerResource.container: Required value: must specify a container",
                "spec.metrics[1].external.target.value: Forbidden: may not set both a target value for metric and a per-pod target",
            ]
        );
    }

    #[test]
    fn behavior_policies() {
        let errs = check(with(json!({"behavior": {
            "scaleUp": {"selectPolicy": "Fastest", "stabilizationWindowSeconds": 3601,
                "policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]},
            "scaleDown": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 0}]},
        }})));
        assert_eq!(
            errs,
            [
                "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 3601: must be less than or equal to 3600",
                "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Fastest\": supported values: \"Disabled\", \"Max\", \"Min\"",
                "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
                "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800",
                "spec.behavior.scaleDown.policies[0].type: Unsupported value: \"Nodes\": supported values: \"Percent\", \"Pods\"",
                "spec.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 0: must be greater than zero",
            ]
        );
        assert!(
            check(with(
                json!({"behavior": {"scaleDown": {"selectPolicy": "Disabled"}}})
            ))
            .is_empty()
        );
    }
}

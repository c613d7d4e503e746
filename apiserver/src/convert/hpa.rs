//! `autoscaling/v1` ↔ `autoscaling/v2` HorizontalPodAutoscalers, as upstream converts them.
//!
//! v1 knows one metric, the CPU utilization target (`spec.targetCPUUtilizationPercentage`) and
//! its current value (`status.currentCPUUtilizationPercentage`). Everything else a v2 object
//! holds travels in v1 in upstream's round-trip annotations, in v1's own metric shapes
//! (`targetAverageUtilization`, `metricName`…): the other metrics
//! (`autoscaling.alpha.kubernetes.io/metrics`), all current metrics (`…/current-metrics`),
//! the conditions (`…/conditions`) and the behavior (`…/behavior`). Converting back reads
//! them and drops them, so a v1 client that keeps the annotations loses nothing.

use serde_json::{Map, Value, json};

/// The version HorizontalPodAutoscalers are stored in.
pub const STORAGE_VERSION: &str = "v2";

pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

const ROUND_TRIP: &[&str] = &[
    METRIC_SPECS_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    CONDITIONS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
];

fn is_cpu_resource(m: &Value) -> bool {
    m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu"))
}

/// Copies `keys` of `from` that are present and not null into `to`, renamed.
fn copy(from: &Value, to: &mut Map<String, Value>, keys: &[(&str, &str)]) {
    for (src, dst) in keys {
        if let Some(v) = from.get(*src).filter(|v| !v.is_null()) {
            to.insert((*dst).to_string(), v.clone());
        }
    }
}

fn annotation_list(annotations: &Value, key: &str) -> Option<Vec<Value>> {
    let text = annotations.get(key)?.as_str()?;
    // Upstream ignores an annotation it cannot parse.
    serde_json::from_str::<Vec<Value>>(text).ok()
}

/// A v2 `MetricSpec` in v1's shape.
fn spec_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m["type"].clone());
    let target = |src: &Value| src.get("target").cloned().unwrap_or(Value::Null);
    match m["type"].as_str().unwrap_or_default() {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut r = Map::new();
            copy(src, &mut r, &[("name", "name"), ("container", "container")]);
            copy(
                &target(src),
                &mut r,
                &[
                    ("averageUtilization", "targetAverageUtilization"),
                    ("averageValue", "targetAverageValue"),
                ],
            );
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            let mut r = Map::new();
            copy(
                &src["metric"],
                &mut r,
                &[("name", "metricName"), ("selector", "selector")],
            );
            copy(
                &target(src),
                &mut r,
                &[("averageValue", "targetAverageValue")],
            );
            out.insert("pods".into(), Value::Object(r));
        }
        "Object" => {
            let src = &m["object"];
            let mut r = Map::new();
            copy(src, &mut r, &[("describedObject", "target")]);
            copy(
                &src["metric"],
                &mut r,
                &[("name", "metricName"), ("selector", "selector")],
            );
            copy(
                &target(src),
                &mut r,
                &[("value", "targetValue"), ("averageValue", "averageValue")],
            );
            out.insert("object".into(), Value::Object(r));
        }
        "External" => {
            let src = &m["external"];
            let mut r = Map::new();
            copy(
                &src["metric"],
                &mut r,
                &[("name", "metricName"), ("selector", "metricSelector")],
            );
            copy(
                &target(src),
                &mut r,
                &[
                    ("value", "targetValue"),
                    ("averageValue", "targetAverageValue"),
                ],
            );
            out.insert("external".into(), Value::Object(r));
        }
        _ => return m.clone(),
    }
    Value::Object(out)
}

/// A v1-shaped `MetricSpec` (from the annotation) in v2's shape.
fn spec_from_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m["type"].clone());
    match m["type"].as_str().unwrap_or_default() {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut r = Map::new();
            copy(src, &mut r, &[("name", "name"), ("container", "container")]);
            let mut t = Map::new();
            copy(
                src,
                &mut t,
                &[
                    ("targetAverageUtilization", "averageUtilization"),
                    ("targetAverageValue", "averageValue"),
                ],
            );
            let ty = if t.contains_key("averageUtilization") {
                "Utilization"
            } else {
                "AverageValue"
            };
            t.insert("type".into(), json!(ty));
            r.insert("target".into(), Value::Object(t));
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            let mut metric = Map::new();
            copy(
                src,
                &mut metric,
                &[("metricName", "name"), ("selector", "selector")],
            );
            let mut t = Map::new();
            t.insert("type".into(), json!("AverageValue"));
            copy(src, &mut t, &[("targetAverageValue", "averageValue")]);
            out.insert(
                "pods".into(),
                json!({"metric": metric, "target": Value::Object(t)}),
            );
        }
        "Object" => {
            let src = &m["object"];
            let mut metric = Map::new();
            copy(
                src,
                &mut metric,
                &[("metricName", "name"), ("selector", "selector")],
            );
            let mut t = Map::new();
            copy(
                src,
                &mut t,
                &[("targetValue", "value"), ("averageValue", "averageValue")],
            );
            let ty = if t.contains_key("averageValue") {
                "AverageValue"
            } else {
                "Value"
            };
            t.insert("type".into(), json!(ty));
            let mut r = Map::new();
            copy(src, &mut r, &[("target", "describedObject")]);
            r.insert("metric".into(), Value::Object(metric));
            r.insert("target".into(), Value::Object(t));
            out.insert("object".into(), Value::Object(r));
        }
        "External" => {
            let src = &m["external"];
            let mut metric = Map::new();
            copy(
                src,
                &mut metric,
                &[("metricName", "name"), ("metricSelector", "selector")],
            );
            let mut t = Map::new();
            copy(
                src,
                &mut t,
                &[
                    ("targetValue", "value"),
                    ("targetAverageValue", "averageValue"),
                ],
            );
            let ty = if t.contains_key("averageValue") {
                "AverageValue"
            } else {
                "Value"
            };
            t.insert("type".into(), json!(ty));
            out.insert(
                "external".into(),
                json!({"metric": metric, "target": Value::Object(t)}),
            );
        }
        _ => return m.clone(),
    }
    Value::Object(out)
}

/// A v2 `MetricStatus` in v1's shape.
fn status_to_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m["type"].clone());
    let current = |src: &Value| src.get("current").cloned().unwrap_or(Value::Null);
    match m["type"].as_str().unwrap_or_default() {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut r = Map::new();
            copy(src, &mut r, &[("name", "name"), ("container", "container")]);
            copy(
                &current(src),
                &mut r,
                &[
                    ("averageUtilization", "currentAverageUtilization"),
                    ("averageValue", "currentAverageValue"),
                ],
            );
            // v1's currentAverageValue is required.
            r.entry("currentAverageValue").or_insert(json!("0"));
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            let mut r = Map::new();
            copy(
                &src["metric"],
                &mut r,
                &[("name", "metricName"), ("selector", "selector")],
            );
            copy(
                &current(src),
                &mut r,
                &[("averageValue", "currentAverageValue")],
            );
            out.insert("pods".into(), Value::Object(r));
        }
        "Object" => {
            let src = &m["object"];
            let mut r = Map::new();
            copy(src, &mut r, &[("describedObject", "target")]);
            copy(
                &src["metric"],
                &mut r,
                &[("name", "metricName"), ("selector", "selector")],
            );
            copy(
                &current(src),
                &mut r,
                &[("value", "currentValue"), ("averageValue", "averageValue")],
            );
            out.insert("object".into(), Value::Object(r));
        }
        "External" => {
            let src = &m["external"];
            let mut r = Map::new();
            copy(
                &src["metric"],
                &mut r,
                &[("name", "metricName"), ("selector", "metricSelector")],
            );
            copy(
                &current(src),
                &mut r,
                &[
                    ("value", "currentValue"),
                    ("averageValue", "currentAverageValue"),
                ],
            );
            out.insert("external".into(), Value::Object(r));
        }
        _ => return m.clone(),
    }
    Value::Object(out)
}

/// A v1-shaped `MetricStatus` (from the annotation) in v2's shape.
fn status_from_v1(m: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), m["type"].clone());
    match m["type"].as_str().unwrap_or_default() {
        "Resource" | "ContainerResource" => {
            let key = if m["type"] == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &m[key];
            let mut r = Map::new();
            copy(src, &mut r, &[("name", "name"), ("container", "container")]);
            let mut c = Map::new();
            copy(
                src,
                &mut c,
                &[
                    ("currentAverageUtilization", "averageUtilization"),
                    ("currentAverageValue", "averageValue"),
                ],
            );
            r.insert("current".into(), Value::Object(c));
            out.insert(key.into(), Value::Object(r));
        }
        "Pods" => {
            let src = &m["pods"];
            let mut metric = Map::new();
            copy(
                src,
                &mut metric,
                &[("metricName", "name"), ("selector", "selector")],
            );
            let mut c = Map::new();
            copy(src, &mut c, &[("currentAverageValue", "averageValue")]);
            out.insert("pods".into(), json!({"metric": metric, "current": c}));
        }
        "Object" => {
            let src = &m["object"];
            let mut metric = Map::new();
            copy(
                src,
                &mut metric,
                &[("metricName", "name"), ("selector", "selector")],
            );
            let mut c = Map::new();
            copy(
                src,
                &mut c,
                &[("currentValue", "value"), ("averageValue", "averageValue")],
            );
            let mut r = Map::new();
            copy(src, &mut r, &[("target", "describedObject")]);
            r.insert("metric".into(), Value::Object(metric));
            r.insert("current".into(), Value::Object(c));
            out.insert("object".into(), Value::Object(r));
        }
        "External" => {
            let src = &m["external"];
            let mut metric = Map::new();
            copy(
                src,
                &mut metric,
                &[("metricName", "name"), ("metricSelector", "selector")],
            );
            let mut c = Map::new();
            copy(
                src,
                &mut c,
                &[
                    ("currentValue", "value"),
                    ("currentAverageValue", "averageValue"),
                ],
            );
            out.insert("external".into(), json!({"metric": metric, "current": c}));
        }
        _ => return m.clone(),
    }
    Value::Object(out)
}

/// Sets `obj[key]` to `value`, or removes it when `value` is `None`.
fn put(obj: &mut Value, key: &str, value: Option<Value>) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    match value {
        Some(v) => {
            map.insert(key.into(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

/// An `autoscaling/v1` object in `autoscaling/v2` form.
pub fn v1_to_v2(obj: &Value) -> Value {
    let mut out = obj.clone();
    if out.get("apiVersion").is_some() {
        out["apiVersion"] = json!(format!("autoscaling/{STORAGE_VERSION}"));
    }
    let annotations = obj
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(Value::Object(map)) = out.pointer_mut("/metadata/annotations") {
        for key in ROUND_TRIP {
            map.remove(*key);
        }
        if map.is_empty() {
            out["metadata"]
                .as_object_mut()
                .map(|m| m.remove("annotations"));
        }
    }
    if let Some(spec) = out.get_mut("spec").filter(|s| s.is_object()) {
        let cpu = spec
            .as_object_mut()
            .and_then(|s| s.remove("targetCPUUtilizationPercentage"))
            .filter(|v| !v.is_null());
        let mut metrics: Vec<Value> = annotation_list(&annotations, METRIC_SPECS_ANNOTATION)
            .unwrap_or_default()
            .iter()
            .map(spec_from_v1)
            .collect();
        if let Some(cpu) = cpu {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": cpu}}}));
        }
        put(
            spec,
            "metrics",
            (!metrics.is_empty()).then(|| json!(metrics)),
        );
        let behavior = annotations
            .get(BEHAVIOR_ANNOTATION)
            .and_then(Value::as_str)
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .filter(Value::is_object);
        if behavior.is_some() {
            put(spec, "behavior", behavior);
        }
    }
    if let Some(status) = out.get_mut("status").filter(|s| s.is_object()) {
        let cpu = status
            .as_object_mut()
            .and_then(|s| s.remove("currentCPUUtilizationPercentage"))
            .filter(|v| !v.is_null());
        let current = match annotation_list(&annotations, METRIC_STATUSES_ANNOTATION) {
            // The annotation holds every current metric, the CPU one included.
            Some(list) => list.iter().map(status_from_v1).collect(),
            None => cpu
                .map(|cpu| {
                    vec![json!({"type": "Resource", "resource": {"name": "cpu",
                        "current": {"averageUtilization": cpu}}})]
                })
                .unwrap_or_default(),
        };
        put(
            status,
            "currentMetrics",
            (!current.is_empty()).then(|| json!(current)),
        );
        if let Some(conditions) = annotation_list(&annotations, CONDITIONS_ANNOTATION) {
            put(status, "conditions", Some(json!(conditions)));
        }
        // v2 requires desiredReplicas; v1 does too, but be lenient with a missing one.
        if status.get("desiredReplicas").is_none() {
            status["desiredReplicas"] = json!(0);
        }
    }
    out
}

/// An `autoscaling/v2` object in `autoscaling/v1` form.
pub fn v2_to_v1(obj: &Value) -> Value {
    let mut out = obj.clone();
    if out.get("apiVersion").is_some() {
        out["apiVersion"] = json!("autoscaling/v1");
    }
    let mut annotations: Map<String, Value> = Map::new();
    if let Some(spec) = out.get_mut("spec").filter(|s| s.is_object()) {
        let metrics = spec
            .as_object_mut()
            .and_then(|s| s.remove("metrics"))
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        let cpu = metrics
            .iter()
            .find(|m| is_cpu_resource(m))
            .and_then(|m| m.pointer("/resource/target/averageUtilization"))
            .cloned();
        if let Some(cpu) = cpu {
            spec["targetCPUUtilizationPercentage"] = cpu;
        }
        let others: Vec<Value> = metrics
            .iter()
            .filter(|m| {
                !(is_cpu_resource(m) && m.pointer("/resource/target/averageUtilization").is_some())
            })
            .map(spec_to_v1)
            .collect();
        if !others.is_empty() {
            annotations.insert(
                METRIC_SPECS_ANNOTATION.into(),
                json!(Value::Array(others).to_string()),
            );
        }
        if let Some(behavior) = spec
            .as_object_mut()
            .and_then(|s| s.remove("behavior"))
            .filter(|b| !b.is_null())
        {
            annotations.insert(BEHAVIOR_ANNOTATION.into(), json!(behavior.to_string()));
        }
    }
    if let Some(status) = out.get_mut("status").filter(|s| s.is_object()) {
        let current = status
            .as_object_mut()
            .and_then(|s| s.remove("currentMetrics"))
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        if let Some(cpu) = current
            .iter()
            .filter(|m| is_cpu_resource(m))
            .find_map(|m| m.pointer("/resource/current/averageUtilization"))
        {
            status["currentCPUUtilizationPercentage"] = cpu.clone();
        }
        if !current.is_empty() {
            let list: Vec<Value> = current.iter().map(status_to_v1).collect();
            annotations.insert(
                METRIC_STATUSES_ANNOTATION.into(),
                json!(Value::Array(list).to_string()),
            );
        }
        // Both counts are required in v1.
        for field in ["currentReplicas", "desiredReplicas"] {
            if status.get(field).is_none_or(Value::is_null) {
                status[field] = json!(0);
            }
        }
        let conditions = status
            .as_object_mut()
            .and_then(|s| s.remove("conditions"))
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()));
        if let Some(conditions) = conditions {
            annotations.insert(CONDITIONS_ANNOTATION.into(), json!(conditions.to_string()));
        }
    }
    if !annotations.is_empty() {
        if !out["metadata"].is_object() {
            out["metadata"] = json!({});
        }
        let meta = &mut out["metadata"];
        if !meta["annotations"].is_object() {
            meta["annotations"] = json!({});
        }
        if let Some(map) = meta["annotations"].as_object_mut() {
            map.extend(annotations);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_hpa() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "80Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "12"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "350m"}}},
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        })
    }

    #[test]
    fn cpu_maps_to_the_v1_fields_and_the_rest_to_annotations() {
        let v1 = v2_to_v1(&v2_hpa());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 70);
        assert!(v1["spec"].get("metrics").is_none());
        let a = &v1["metadata"]["annotations"];
        assert_eq!(a["team"], "a");
        let others: Value =
            serde_json::from_str(a[METRIC_SPECS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            others,
            json!([
                {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
                {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}},
            ])
        );
        let current: Value =
            serde_json::from_str(a[METRIC_STATUSES_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(current.as_array().unwrap().len(), 3);
        assert_eq!(
            current[2],
            json!({"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 70, "currentAverageValue": "350m"}})
        );
        assert!(
            a[CONDITIONS_ANNOTATION]
                .as_str()
                .unwrap()
                .contains("ReadyForNewScale")
        );
        assert!(
            a[BEHAVIOR_ANNOTATION]
                .as_str()
                .unwrap()
                .contains("stabilizationWindowSeconds")
        );
    }

    #[test]
    fn v2_survives_a_round_trip_through_v1() {
        let v2 = v2_hpa();
        let back = v1_to_v2(&v2_to_v1(&v2));
        // The CPU metric comes back last, as upstream appends it after the annotated ones.
        assert_eq!(back, v2);
    }

    #[test]
    fn v1_without_annotations() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                     "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "desiredReplicas": 1, "currentCPUUtilizationPercentage": 12}});
        let v2 = v1_to_v2(&v1);
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            12
        );
        assert!(v2["metadata"].get("annotations").is_none());
        assert_eq!(v2_to_v1(&v2)["spec"], v1["spec"]);
        let no_target = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}});
        assert!(v1_to_v2(&no_target)["spec"].get("metrics").is_none());
    }

    #[test]
    fn unparsable_annotations_are_ignored() {
        let v1 = json!({"metadata": {"name": "web", "annotations": {METRIC_SPECS_ANNOTATION: "not json"}},
            "spec": {"maxReplicas": 5, "targetCPUUtilizationPercentage": 50}});
        let v2 = v1_to_v2(&v1);
        assert_eq!(v2["spec"]["metrics"].as_array().unwrap().len(), 1);
        assert!(v2["metadata"].get("annotations").is_none());
    }
}

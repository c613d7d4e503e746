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

fn annotation_list(annotations: &Value, key: &str) -> Option<Vec<Value>> {
    let text = annotations.get(key)?.as_str()?;
    // Upstream ignores an annotation it cannot parse.
    serde_json::from_str::<Vec<Value>>(text).ok()
}

/// One kind of metric in both versions: v2 nests its fields (`metric/name`,
/// `target/averageValue`), v1 flattens them into the kind's object under other names. Each
/// table pairs a v2 path with its v1 key, for specs and statuses; one table drives both
/// directions.
struct MetricKind {
    /// The `type`, and the key of the kind's object in both versions.
    kind: &'static str,
    key: &'static str,
    spec: &'static [(&'static str, &'static str)],
    status: &'static [(&'static str, &'static str)],
    /// The v2 target type when v1 names no value (which v2 requires).
    default_target: &'static str,
    /// Whether v2 has a `metric` identifier object for this kind.
    has_metric: bool,
}

const RESOURCE_SPEC: &[(&str, &str)] = &[
    ("name", "name"),
    ("container", "container"),
    ("target/averageUtilization", "targetAverageUtilization"),
    ("target/averageValue", "targetAverageValue"),
];
const RESOURCE_STATUS: &[(&str, &str)] = &[
    ("name", "name"),
    ("container", "container"),
    ("current/averageUtilization", "currentAverageUtilization"),
    ("current/averageValue", "currentAverageValue"),
];

const KINDS: &[MetricKind] = &[
    MetricKind {
        kind: "Resource",
        key: "resource",
        spec: RESOURCE_SPEC,
        status: RESOURCE_STATUS,
        default_target: "AverageValue",
        has_metric: false,
    },
    MetricKind {
        kind: "ContainerResource",
        key: "containerResource",
        spec: RESOURCE_SPEC,
        status: RESOURCE_STATUS,
        default_target: "AverageValue",
        has_metric: false,
    },
    MetricKind {
        kind: "Pods",
        key: "pods",
        spec: &[
            ("metric/name", "metricName"),
            ("metric/selector", "selector"),
            ("target/averageValue", "targetAverageValue"),
        ],
        status: &[
            ("metric/name", "metricName"),
            ("metric/selector", "selector"),
            ("current/averageValue", "currentAverageValue"),
        ],
        default_target: "AverageValue",
        has_metric: true,
    },
    MetricKind {
        kind: "Object",
        key: "object",
        spec: &[
            ("describedObject", "target"),
            ("metric/name", "metricName"),
            ("metric/selector", "selector"),
            ("target/value", "targetValue"),
            ("target/averageValue", "averageValue"),
        ],
        status: &[
            ("describedObject", "target"),
            ("metric/name", "metricName"),
            ("metric/selector", "selector"),
            ("current/value", "currentValue"),
            ("current/averageValue", "averageValue"),
        ],
        default_target: "Value",
        has_metric: true,
    },
    MetricKind {
        kind: "External",
        key: "external",
        spec: &[
            ("metric/name", "metricName"),
            ("metric/selector", "metricSelector"),
            ("target/value", "targetValue"),
            ("target/averageValue", "targetAverageValue"),
        ],
        status: &[
            ("metric/name", "metricName"),
            ("metric/selector", "metricSelector"),
            ("current/value", "currentValue"),
            ("current/averageValue", "currentAverageValue"),
        ],
        default_target: "Value",
        has_metric: true,
    },
];

/// A `MetricSpec` or a `MetricStatus`.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Spec,
    Status,
}

impl MetricKind {
    fn of(m: &Value) -> Option<&'static Self> {
        KINDS.iter().find(|k| m["type"] == k.kind)
    }

    fn fields(&self, part: Part) -> &'static [(&'static str, &'static str)] {
        match part {
            Part::Spec => self.spec,
            Part::Status => self.status,
        }
    }
}

/// `{"type": <kind>, <key>: body}`.
fn tagged(kind: &MetricKind, body: Value) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), json!(kind.kind));
    out.insert(kind.key.into(), body);
    Value::Object(out)
}

/// A v2 metric (spec or status) in v1's shape; an unknown kind is kept as it is.
fn metric_to_v1(m: &Value, part: Part) -> Value {
    let Some(kind) = MetricKind::of(m) else {
        return m.clone();
    };
    let src = &m[kind.key];
    let mut flat = Map::new();
    for (path, v1) in kind.fields(part) {
        if let Some(v) = src.pointer(&format!("/{path}")).filter(|v| !v.is_null()) {
            flat.insert((*v1).to_string(), v.clone());
        }
    }
    if part == Part::Status && !kind.has_metric {
        // v1's currentAverageValue is required (of the resource kinds, the ones without `metric`).
        flat.entry("currentAverageValue").or_insert(json!("0"));
    }
    tagged(kind, Value::Object(flat))
}

/// A v1-shaped metric (spec or status, from the annotation) in v2's shape.
fn metric_from_v1(m: &Value, part: Part) -> Value {
    let Some(kind) = MetricKind::of(m) else {
        return m.clone();
    };
    let src = &m[kind.key];
    let mut nested = json!({});
    if kind.has_metric {
        nested["metric"] = json!({});
    }
    let value_key = match part {
        Part::Spec => "target",
        Part::Status => "current",
    };
    nested[value_key] = json!({});
    for (path, v1) in kind.fields(part) {
        let Some(v) = src.get(*v1).filter(|v| !v.is_null()) else {
            continue;
        };
        match path.split_once('/') {
            Some((outer, inner)) => {
                if !nested[outer].is_object() {
                    nested[outer] = json!({});
                }
                nested[outer][inner] = v.clone();
            }
            None => nested[*path] = v.clone(),
        }
    }
    if part == Part::Spec {
        let target = &mut nested["target"];
        let ty = ["averageUtilization", "averageValue", "value"]
            .into_iter()
            .zip(["Utilization", "AverageValue", "Value"])
            .find(|(field, _)| target.get(*field).is_some())
            .map_or(kind.default_target, |(_, ty)| ty);
        target["type"] = json!(ty);
    }
    tagged(kind, nested)
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
            .map(|m| metric_from_v1(m, Part::Spec))
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
            Some(list) => list
                .iter()
                .map(|m| metric_from_v1(m, Part::Status))
                .collect(),
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
            .map(|m| metric_to_v1(m, Part::Spec))
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
            let list: Vec<Value> = current
                .iter()
                .map(|m| metric_to_v1(m, Part::Status))
                .collect();
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

    /// An autoscaler with every other kind of metric, as v2 writes them.
    fn v2_other_metrics() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 5,
                "metrics": [
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                        "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Object", "object": {
                        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                        "metric": {"name": "requests", "selector": {"matchLabels": {"verb": "GET"}}},
                        "target": {"type": "Value", "value": "10k"}}},
                    {"type": "Object", "object": {
                        "describedObject": {"kind": "Service", "name": "web"},
                        "metric": {"name": "rps"},
                        "target": {"type": "AverageValue", "averageValue": "50"}}},
                    {"type": "External", "external": {
                        "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "jobs"}}},
                        "target": {"type": "AverageValue", "averageValue": "30"}}},
                    {"type": "External", "external": {"metric": {"name": "lag"},
                        "target": {"type": "Value", "value": "100"}}},
                ],
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                        "current": {"averageUtilization": 40, "averageValue": "200m"}}},
                    {"type": "Object", "object": {
                        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                        "metric": {"name": "requests", "selector": {"matchLabels": {"verb": "GET"}}},
                        "current": {"value": "8k"}}},
                    {"type": "External", "external": {
                        "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "jobs"}}},
                        "current": {"value": "90", "averageValue": "45"}}},
                ],
            },
        })
    }

    #[test]
    fn other_metric_kinds_keep_upstreams_v1_annotation_shape_and_round_trip() {
        let v2 = v2_other_metrics();
        let v1 = v2_to_v1(&v2);
        assert!(v1["spec"].get("targetCPUUtilizationPercentage").is_none());
        let a = &v1["metadata"]["annotations"];
        let specs: Value =
            serde_json::from_str(a[METRIC_SPECS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            specs,
            json!([
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "targetAverageUtilization": 60}},
                {"type": "Object", "object": {
                    "target": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                    "metricName": "requests", "selector": {"matchLabels": {"verb": "GET"}}, "targetValue": "10k"}},
                {"type": "Object", "object": {"target": {"kind": "Service", "name": "web"},
                    "metricName": "rps", "averageValue": "50"}},
                {"type": "External", "external": {"metricName": "queue_depth",
                    "metricSelector": {"matchLabels": {"queue": "jobs"}}, "targetAverageValue": "30"}},
                {"type": "External", "external": {"metricName": "lag", "targetValue": "100"}},
            ])
        );
        let statuses: Value =
            serde_json::from_str(a[METRIC_STATUSES_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            statuses,
            json!([
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                    "currentAverageUtilization": 40, "currentAverageValue": "200m"}},
                {"type": "Object", "object": {
                    "target": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                    "metricName": "requests", "selector": {"matchLabels": {"verb": "GET"}}, "currentValue": "8k"}},
                {"type": "External", "external": {"metricName": "queue_depth",
                    "metricSelector": {"matchLabels": {"queue": "jobs"}},
                    "currentValue": "90", "currentAverageValue": "45"}},
            ])
        );
        assert_eq!(v1_to_v2(&v1), v2);
    }

    #[test]
    fn a_v1_resource_status_without_a_value_reads_zero() {
        // v1's currentAverageValue is required; a v2 status with utilization only fills it.
        let v2 = json!({"status": {"desiredReplicas": 1, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "memory", "current": {"averageUtilization": 30}}}]}});
        let v1 = v2_to_v1(&v2);
        let statuses: Value = serde_json::from_str(
            v1["metadata"]["annotations"][METRIC_STATUSES_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            statuses[0]["resource"],
            json!({"name": "memory", "currentAverageUtilization": 30, "currentAverageValue": "0"})
        );
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

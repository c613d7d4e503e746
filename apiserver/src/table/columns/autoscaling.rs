//! autoscaling: HorizontalPodAutoscalers, as upstream's `printHorizontalPodAutoscaler`.
//!
//! Rows are printed from the `autoscaling/v2` form; an `autoscaling/v1` object is converted
//! first, as upstream prints its internal version.

use serde_json::{Value, json};

use super::{
    KindColumns, Printer, age_col, arr_at, at, int_at, integer_col, name_col, str_at, string_col,
};

pub(crate) fn horizontal_pod_autoscaler_columns() -> KindColumns {
    KindColumns {
        columns: vec![
            name_col(),
            string_col(
                "Reference",
                0,
                "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
            ),
            string_col(
                "Targets",
                0,
                "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
            ),
            string_col(
                "MinPods",
                0,
                "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
            ),
            integer_col(
                "MaxPods",
                0,
                "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
            ),
            integer_col(
                "Replicas",
                0,
                "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
            ),
            age_col(),
        ],
        cells: Printer::horizontal_pod_autoscaler,
        conditions: None,
    }
}

/// A quantity as `Quantity.String()` prints it.
fn quantity(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return "<unknown>".into(),
    };
    ekube_api::quantity::canonical(&text).unwrap_or(text)
}

/// One metric's `current/target` as `formatHPAMetrics` writes it.
fn format_metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    let ty = str_at(spec, &["type"]);
    let current = |src: &str, field: &str| -> Option<&Value> {
        status
            .and_then(|s| s.get(src))
            .filter(|s| !s.is_null())
            .and_then(|s| s.get("current"))
            .and_then(|c| c.get(field))
            .filter(|v| !v.is_null())
    };
    match ty {
        "External" | "Object" => {
            let src = if ty == "External" {
                "external"
            } else {
                "object"
            };
            let target = at(spec, &[src, "target"]);
            if target.get("averageValue").is_some_and(|v| !v.is_null()) {
                let cur = current(src, "averageValue").map_or_else(unknown, quantity);
                format!("{cur}/{} (avg)", quantity(&target["averageValue"]))
            } else {
                let cur = current(src, "value").map_or_else(unknown, quantity);
                format!("{cur}/{}", quantity(&target["value"]))
            }
        }
        "Pods" => {
            let cur = current("pods", "averageValue").map_or_else(unknown, quantity);
            format!(
                "{cur}/{}",
                quantity(at(spec, &["pods", "target", "averageValue"]))
            )
        }
        "Resource" | "ContainerResource" => {
            let src = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let name = str_at(spec, &[src, "name"]);
            let target = at(spec, &[src, "target"]);
            if target.get("averageValue").is_some_and(|v| !v.is_null()) {
                let cur = current(src, "averageValue").map_or_else(unknown, quantity);
                format!("{name}: {cur}/{}", quantity(&target["averageValue"]))
            } else {
                let cur = current(src, "averageUtilization")
                    .and_then(Value::as_i64)
                    .map_or_else(unknown, |u| format!("{u}%"));
                let goal = target
                    .get("averageUtilization")
                    .and_then(Value::as_i64)
                    .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                format!("{name}: {cur}/{goal}")
            }
        }
        _ => "<unknown type>".into(),
    }
}

/// `formatHPAMetrics`: the first two metrics, then how many more.
fn format_metrics(hpa: &Value) -> String {
    let specs = arr_at(hpa, &["spec", "metrics"]);
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = arr_at(hpa, &["status", "currentMetrics"]);
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| format_metric(spec, statuses.get(i)))
        .collect();
    const MAX: usize = 2;
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    }
}

impl Printer {
    fn horizontal_pod_autoscaler(&self, obj: &Value) -> Vec<Value> {
        let v2;
        let hpa = if str_at(obj, &["apiVersion"]) == "autoscaling/v1" {
            v2 = crate::convert::hpa::v1_to_v2(obj);
            &v2
        } else {
            obj
        };
        let reference = format!(
            "{}/{}",
            str_at(hpa, &["spec", "scaleTargetRef", "kind"]),
            str_at(hpa, &["spec", "scaleTargetRef", "name"])
        );
        let min = at(hpa, &["spec", "minReplicas"])
            .as_i64()
            .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
        vec![
            Self::name(hpa),
            json!(reference),
            json!(format_metrics(hpa)),
            json!(min),
            json!(int_at(hpa, &["spec", "maxReplicas"])),
            json!(int_at(hpa, &["status", "currentReplicas"])),
            self.age(hpa),
        ]
    }
}

#[cfg(test)]
mod tests {
    use crate::table::test_support::cells;
    use serde_json::json;

    #[test]
    fn horizontal_pod_autoscalers() {
        let hpa = json!({"apiVersion": "autoscaling/v2", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12, "averageValue": "60m"}}}]}});
        assert_eq!(
            cells("HorizontalPodAutoscaler", hpa)[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: 12%/50%"),
                json!("1"),
                json!(5),
                json!(2)
            ]
        );
        let fresh = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 0, "desiredReplicas": 0}});
        assert_eq!(
            cells("HorizontalPodAutoscaler", fresh)[1..6],
            [
                json!("Deployment/web"),
                json!("cpu: <unknown>/50%"),
                json!("<unset>"),
                json!(5),
                json!(0)
            ]
        );
        let many = json!({"metadata": {"name": "web"}, "spec": {"maxReplicas": 5, "metrics": [
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
            {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
        ]}, "status": {"currentMetrics": [
            {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "52428800"}}},
        ]}});
        assert_eq!(
            cells("HorizontalPodAutoscaler", many)[2],
            json!("memory: 52428800/100Mi, <unknown>/10 + 1 more...")
        );
        let none = json!({"metadata": {"name": "web"}, "spec": {"maxReplicas": 1}});
        assert_eq!(cells("HorizontalPodAutoscaler", none)[2], json!("<none>"));
    }
}

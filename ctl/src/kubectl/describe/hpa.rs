//! `describe hpa`, laid out as kubectl's `describeHorizontalPodAutoscalerV2`: the reference,
//! each metric's current value beside its target, the replica bounds, the behavior when set,
//! the target's pod counts and the conditions.

use serde_json::Value;

use super::{W, arr, date, meta_head, s};

/// A quantity as the API returned it, `<unknown>` when absent.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(q) => q.clone(),
        Value::Number(n) => n.to_string(),
        _ => "<unknown>".into(),
    }
}

pub(super) fn horizontal_pod_autoscaler(w: &mut W, o: &Value) {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    meta_head(w, o, true);
    w.map(0, "Labels", &m["labels"], "=");
    w.map(0, "Annotations", &m["annotations"], ": ");
    w.kv(0, "CreationTimestamp", date(&m["creationTimestamp"]));
    let target = &spec["scaleTargetRef"];
    w.kv(
        0,
        "Reference",
        format!("{}/{}", s(&target["kind"]), s(&target["name"])),
    );
    w.kv(0, "Metrics", "( current / target )");
    let statuses = arr(&st["currentMetrics"]);
    if let Some(cpu) = spec["targetCPUUtilizationPercentage"].as_i64() {
        // An autoscaling/v1 object.
        let current = st["currentCPUUtilizationPercentage"]
            .as_i64()
            .map_or_else(|| "<unknown>".to_string(), |c| format!("{c}%"));
        w.kv(
            1,
            "resource cpu on pods  (as a percentage of request)",
            format!("{current} / {cpu}%"),
        );
    }
    for (i, metric) in arr(&spec["metrics"]).iter().enumerate() {
        let status = statuses.get(i).unwrap_or(&Value::Null);
        metric_line(w, metric, status);
    }
    w.kv(
        0,
        "Min replicas",
        spec["minReplicas"]
            .as_i64()
            .map_or_else(|| "<unset>".to_string(), |n| n.to_string()),
    );
    w.kv(
        0,
        "Max replicas",
        spec["maxReplicas"].as_i64().unwrap_or(0).to_string(),
    );
    if spec["behavior"].is_object() {
        w.head(0, "Behavior");
        direction(w, "Scale Up", &spec["behavior"]["scaleUp"]);
        direction(w, "Scale Down", &spec["behavior"]["scaleDown"]);
    }
    w.kv(
        0,
        &format!("{} pods", s(&target["kind"])),
        format!(
            "{} current / {} desired",
            st["currentReplicas"].as_i64().unwrap_or(0),
            st["desiredReplicas"].as_i64().unwrap_or(0)
        ),
    );
    let conditions = arr(&st["conditions"]);
    if !conditions.is_empty() {
        w.head(0, "Conditions");
        w.line(1, "Type\tStatus\tReason\tMessage");
        w.line(1, "----\t------\t------\t-------");
        for c in conditions {
            w.line(
                1,
                format!(
                    "{}\t{}\t{}\t{}",
                    s(&c["type"]),
                    s(&c["status"]),
                    s(&c["reason"]),
                    s(&c["message"])
                ),
            );
        }
    }
}

fn metric_line(w: &mut W, metric: &Value, status: &Value) {
    let current = |src: &str, field: &str| quantity(&status[src]["current"][field]);
    match s(&metric["type"]) {
        "External" => {
            let ext = &metric["external"];
            let name = s(&ext["metric"]["name"]);
            if ext["target"]["averageValue"].is_null() {
                w.kv(
                    1,
                    &format!("{name:?} (target value)"),
                    format!(
                        "{} / {}",
                        current("external", "value"),
                        quantity(&ext["target"]["value"])
                    ),
                );
            } else {
                w.kv(
                    1,
                    &format!("{name:?} (target average value)"),
                    format!(
                        "{} / {}",
                        current("external", "averageValue"),
                        quantity(&ext["target"]["averageValue"])
                    ),
                );
            }
        }
        "Pods" => {
            let pods = &metric["pods"];
            w.kv(
                1,
                &format!("{:?} on pods", s(&pods["metric"]["name"])),
                format!(
                    "{} / {}",
                    current("pods", "averageValue"),
                    quantity(&pods["target"]["averageValue"])
                ),
            );
        }
        "Object" => {
            let obj = &metric["object"];
            let head = format!(
                "\"{}\" on {}/{} ",
                s(&obj["metric"]["name"]),
                s(&obj["describedObject"]["kind"]),
                s(&obj["describedObject"]["name"])
            );
            if obj["target"]["type"] == "AverageValue" {
                w.kv(
                    1,
                    &format!("{head}(target average value)"),
                    format!(
                        "{} / {}",
                        current("object", "averageValue"),
                        quantity(&obj["target"]["averageValue"])
                    ),
                );
            } else {
                w.kv(
                    1,
                    &format!("{head}(target value)"),
                    format!(
                        "{} / {}",
                        current("object", "value"),
                        quantity(&obj["target"]["value"])
                    ),
                );
            }
        }
        ty @ ("Resource" | "ContainerResource") => {
            let src = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &metric[src];
            let on = if ty == "Resource" {
                format!("resource {} on pods", s(&r["name"]))
            } else {
                format!(
                    "resource {} of container \"{}\" on pods",
                    s(&r["name"]),
                    s(&r["container"])
                )
            };
            if !r["target"]["averageValue"].is_null() {
                w.kv(
                    1,
                    &on,
                    format!(
                        "{} / {}",
                        current(src, "averageValue"),
                        quantity(&r["target"]["averageValue"])
                    ),
                );
            } else {
                let cur = &status[src]["current"];
                let now = cur["averageUtilization"].as_i64().map_or_else(
                    || "<unknown>".to_string(),
                    |u| format!("{u}% ({})", quantity(&cur["averageValue"])),
                );
                let goal = r["target"]["averageUtilization"]
                    .as_i64()
                    .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                w.kv(
                    1,
                    &format!("{on}  (as a percentage of request)"),
                    format!("{now} / {goal}"),
                );
            }
        }
        other => w.line(1, format!("<unknown metric type {other:?}>")),
    }
}

fn direction(w: &mut W, title: &str, rules: &Value) {
    if !rules.is_object() {
        return;
    }
    w.head(1, title);
    if let Some(window) = rules["stabilizationWindowSeconds"].as_i64() {
        w.line(2, format!("Stabilization Window: {window} seconds"));
    }
    let policies = arr(&rules["policies"]);
    if !policies.is_empty() {
        let select = rules["selectPolicy"].as_str().unwrap_or("<unset>");
        w.line(2, format!("Select Policy: {select}"));
        w.line(2, "Policies:");
        for p in policies {
            w.line(
                3,
                format!(
                    "- Type: {}\tValue: {}\tPeriod: {} seconds",
                    s(&p["type"]),
                    p["value"].as_i64().unwrap_or(0),
                    p["periodSeconds"].as_i64().unwrap_or(0)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn metrics_behavior_and_conditions() {
        let hpa = json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 75, "averageValue": "150m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale",
                    "message": "the HPA controller was able to update the target scale to 3"}]},
        });
        let mut w = W::default();
        horizontal_pod_autoscaler(&mut w, &hpa);
        let text = w.text;
        assert!(text.contains("Reference:\tDeployment/web\n"), "{text}");
        assert!(
            text.contains(
                "  resource cpu on pods  (as a percentage of request):\t75% (150m) / 50%\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("Deployment pods:\t2 current / 3 desired\n"),
            "{text}"
        );
        assert!(
            text.contains("    Stabilization Window: 60 seconds\n"),
            "{text}"
        );
        assert!(
            text.contains("      - Type: Percent\tValue: 100\tPeriod: 15 seconds\n"),
            "{text}"
        );
        assert!(
            text.contains("  AbleToScale\tTrue\tSucceededRescale\tthe HPA controller was able to update the target scale to 3\n"),
            "{text}"
        );
    }
}

//! The size, quantity, key and port limits.

use serde_json::{Value, json};

use super::*;

const PORTS: (u16, u16) = (30000, 32767);

/// The messages of every cause for `field`.
fn messages(causes: &[Cause], field: &str) -> Vec<String> {
    causes
        .iter()
        .filter(|c| c.field == field)
        .map(|c| c.message.clone())
        .collect()
}

fn pod_requesting(cpu: &str) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}})
}

#[test]
fn negative_and_overflowing_quantities_are_refused() {
    let field = "spec.containers[0].resources.requests[cpu]";
    let negative = validate_kind("", "Pod", &pod_requesting("-100m"), None, PORTS);
    assert_eq!(
        messages(&negative, field),
        ["Invalid value: \"-100m\": must be greater than or equal to 0"]
    );
    for huge in ["1e400", "99999999999999999999999", "16Ei"] {
        let causes = validate_kind("", "Pod", &pod_requesting(huge), None, PORTS);
        let got = messages(&causes, field);
        assert!(
            got.len() == 1 && got[0].contains("must be less than or equal to"),
            "{huge}: {got:?}"
        );
    }
    assert!(validate_kind("", "Pod", &pod_requesting("250m"), None, PORTS).is_empty());
    let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "-1"}}});
    assert_eq!(
        messages(
            &validate_kind("", "ResourceQuota", &quota, None, PORTS),
            "spec.hard[pods]"
        )
        .len(),
        1
    );
}

#[test]
fn annotations_total_at_most_256_kib() {
    let with = |value_len: usize| json!({"metadata": {"name": "c", "annotations": {"k": "x".repeat(value_len)}}});
    // The key counts too: "k" plus the value.
    assert!(
        validate_kind(
            "",
            "ConfigMap",
            &with(TOTAL_ANNOTATION_SIZE - 1),
            None,
            PORTS
        )
        .is_empty()
    );
    let causes = validate_kind("", "ConfigMap", &with(TOTAL_ANNOTATION_SIZE), None, PORTS);
    assert_eq!(
        causes,
        [Cause::too_long(
            "metadata.annotations",
            TOTAL_ANNOTATION_SIZE
        )]
    );
    assert_eq!(
        causes[0].message,
        "Too long: must have at most 262144 bytes"
    );
}

#[test]
fn label_and_annotation_keys_are_qualified_names() {
    let obj = |labels: Value, annotations: Value| json!({"metadata": {"name": "c", "labels": labels, "annotations": annotations}});
    let long = "a".repeat(64);
    let causes = validate_kind(
        "",
        "ConfigMap",
        &obj(
            json!({"example.com/app": "web", long.clone(): "x", "a/b/c": "x", "k": long.clone()}),
            json!({"Example.com/Mixed-Case": "ok", "bad key": "x", "/empty-prefix": "x"}),
        ),
        None,
        PORTS,
    );
    let labels = messages(&causes, "metadata.labels");
    assert!(
        labels
            .iter()
            .any(|m| m.ends_with("name part must be no more than 63 characters")),
        "{labels:?}"
    );
    assert!(
        labels
            .iter()
            .any(|m| m.starts_with("Invalid value: \"a/b/c\": a qualified name"))
    );
    assert!(
        labels.iter().any(
            |m| m.ends_with(": must be no more than 63 characters") && !m.contains("name part")
        ),
        "{labels:?}"
    );
    assert_eq!(labels.len(), 3, "{labels:?}");
    let annotations = messages(&causes, "metadata.annotations");
    assert_eq!(annotations.len(), 2, "{annotations:?}");
    assert!(annotations.iter().any(|m| m.contains("\"bad key\"")));
    assert!(
        annotations
            .iter()
            .any(|m| m.ends_with("prefix part must be non-empty"))
    );
}

#[test]
fn config_keys_may_not_be_dot_or_dot_dot() {
    for (kind, field) in [("ConfigMap", "data"), ("Secret", "stringData")] {
        let obj = json!({"metadata": {"name": "c"},
            field: {".": "x", "..": "x", "..data": "x", "a..b": "x", ".hidden": "x"}});
        let causes = validate_kind("", kind, &obj, None, PORTS);
        let got: Vec<(String, String)> = causes
            .iter()
            .map(|c| (c.field.clone(), c.message.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    format!("{field}[.]"),
                    "Invalid value: \".\": must not be '.'".to_string()
                ),
                (
                    format!("{field}[..]"),
                    "Invalid value: \"..\": must not be '..'".to_string()
                ),
                (
                    format!("{field}[..data]"),
                    "Invalid value: \"..data\": must not start with '..'".to_string()
                ),
            ],
            "{kind}"
        );
    }
}

#[test]
fn health_check_node_port_must_be_in_range() {
    let svc = |hc: Value| {
        json!({"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer",
            "externalTrafficPolicy": "Local", "healthCheckNodePort": hc, "ports": [{"port": 80}]}})
    };
    let field = "spec.healthCheckNodePort";
    for bad in [
        json!(100_000),
        json!(20000),
        json!(-5),
        json!(65536 + 30000),
    ] {
        let causes = validate_kind("", "Service", &svc(bad.clone()), None, PORTS);
        assert_eq!(
            messages(&causes, field),
            [format!(
                "Invalid value: {bad}: provided port is not in the valid range. The range of valid ports is 30000-32767"
            )]
        );
    }
    for good in [json!(0), json!(30000), json!(32767)] {
        assert!(validate_kind("", "Service", &svc(good), None, PORTS).is_empty());
    }
}

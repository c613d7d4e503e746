//! `core/v1 ReplicationController` validation, as upstream's
//! `ValidateReplicationControllerSpec`: `replicas` and `minReadySeconds` are not negative, the
//! selector (a plain map, defaulted from the template's labels) is a non-empty set of valid
//! labels that the template's labels match, and the template runs its pods forever
//! (`restartPolicy: Always`, no `activeDeadlineSeconds`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{labels, pod_spec, render_map};
use crate::errors::Cause;

pub(crate) fn validate(obj: &Value, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for field in ["minReadySeconds", "replicas"] {
        if let Some(n) = spec.get(field).and_then(Value::as_i64)
            && n < 0
        {
            causes.push(Cause::invalid(
                format!("spec.{field}"),
                n,
                "must be greater than or equal to 0",
            ));
        }
    }
    let selector = as_labels(spec.get("selector"));
    if selector.is_empty() {
        causes.push(Cause::required("spec.selector"));
    } else {
        labels(spec.get("selector"), "spec.selector", causes);
    }
    let Some(template) = spec.get("template").filter(|t| t.is_object()) else {
        causes.push(Cause::required("spec.template"));
        return;
    };
    let template_labels = template.pointer("/metadata/labels");
    let have = as_labels(template_labels);
    if !selector.is_empty() && !selector.iter().all(|(k, v)| have.get(k) == Some(v)) {
        let shown = format!(
            "map[{}]",
            template_labels.map(render_map).unwrap_or_default()
        );
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            shown,
            "`selector` does not match template `labels`",
        ));
    }
    labels(template_labels, "spec.template.metadata.labels", causes);
    pod_spec(template.get("spec"), "spec.template.spec", causes);
    if let Some(policy) = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .filter(|p| *p != "Always")
    {
        causes.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if template
        .pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        causes.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicationController is not Supported",
        ));
    }
}

/// A label map as pairs; anything else is no labels.
fn as_labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::defaults;
    use crate::validation::validate_kind;

    /// Defaults, then validates, as a create does.
    fn messages(mut rc: Value) -> Vec<String> {
        defaults::apply_kind("", "ReplicationController", &mut rc);
        validate_kind("", "ReplicationController", &rc, None, (30000, 32767))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn rc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels},
               "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    }

    #[test]
    fn a_defaulted_selector_is_valid() {
        assert_eq!(
            messages(rc(json!({"template": template(json!({"app": "web"}))}))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_selector_must_match_the_template() {
        assert_eq!(
            messages(rc(json!({"selector": {"app": "db"},
                "template": template(json!({"app": "web", "tier": "front"}))}))),
            [
                "spec.template.metadata.labels: Invalid value: map[app:web tier:front]: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn an_empty_selector_and_a_missing_template_are_required() {
        assert_eq!(
            messages(rc(json!({"replicas": -1}))),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.selector: Required value",
                "spec.template: Required value",
            ]
        );
    }

    #[test]
    fn pods_run_forever() {
        let mut t = template(json!({"app": "web"}));
        t["spec"]["restartPolicy"] = json!("OnFailure");
        t["spec"]["activeDeadlineSeconds"] = json!(30);
        assert_eq!(
            messages(rc(json!({"template": t}))),
            [
                "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicationController is not Supported",
            ]
        );
    }
}

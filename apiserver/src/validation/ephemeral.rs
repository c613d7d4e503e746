//! Ephemeral containers (`spec.ephemeralContainers`), as upstream's
//! `validateEphemeralContainers` and `ValidatePodEphemeralContainersUpdate` check them.
//!
//! They are added to a running pod through `pods/ephemeralcontainers` only: a pod may not be
//! created with them, and once added one may be neither changed nor removed. They are not
//! part of the pod's service, so the fields that would make them so (ports, probes, resources,
//! lifecycle hooks, a restart policy) are refused.

use serde_json::Value;

use crate::errors::Cause;

/// The fields an ephemeral container may not set, in upstream's field order.
const FORBIDDEN_FIELDS: &[&str] = &[
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether a JSON field holds its zero value (how upstream decides a field was set).
fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.values().all(|v| is_unset(Some(v))),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Bool(b)) => !b,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
    }
}

/// Checks `spec.ephemeralContainers`; `names` holds the names of the other containers and
/// collects these.
pub(super) fn validate<'a>(
    spec: &'a Value,
    at: &str,
    names: &mut Vec<&'a str>,
    causes: &mut Vec<Cause>,
) {
    let others = names.clone();
    let list = spec.get("ephemeralContainers").and_then(Value::as_array);
    for (i, c) in list.into_iter().flatten().enumerate() {
        let at = format!("{at}.ephemeralContainers[{i}]");
        super::container(c, &at, names, causes);
        if let Some(target) = c
            .get("targetContainerName")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            && !others.contains(&target)
        {
            causes.push(Cause {
                reason: "FieldValueNotFound",
                field: format!("{at}.targetContainerName"),
                message: format!("Not found: \"{target}\""),
            });
        }
        for field in FORBIDDEN_FIELDS {
            if !is_unset(c.get(*field)) {
                causes.push(Cause::forbidden(
                    format!("{at}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        let mounts = c.get("volumeMounts").and_then(Value::as_array);
        for (j, m) in mounts.into_iter().flatten().enumerate() {
            for field in ["subPath", "subPathExpr"] {
                if !is_unset(m.get(field)) {
                    causes.push(Cause::forbidden(
                        format!("{at}.volumeMounts[{j}].{field}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

/// A pod is created without ephemeral containers.
pub(crate) fn create(pod: &Value, causes: &mut Vec<Cause>) {
    if !is_unset(pod.pointer("/spec/ephemeralContainers")) {
        causes.push(Cause::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
}

fn by_name(pod: &Value) -> Vec<(&str, &Value)> {
    pod.pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (c.get("name").and_then(Value::as_str).unwrap_or_default(), c))
        .collect()
}

/// A write through `pods/ephemeralcontainers`: the ones already there stay as they are.
pub fn update(old: &Value, new: &Value) -> Vec<Cause> {
    if old
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some()
    {
        return vec![Cause::forbidden(
            "",
            "static pods do not support ephemeral containers",
        )];
    }
    let added = by_name(new);
    let mut causes = Vec::new();
    for (name, before) in by_name(old) {
        match added.iter().find(|(n, _)| *n == name) {
            None => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                &format!("existing ephemeral containers \"{name}\" may not be removed\n"),
            )),
            Some((_, after)) if after != &before => causes.push(Cause::forbidden(
                format!("spec.ephemeralContainers[{name}]"),
                &format!("existing ephemeral containers \"{name}\" may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ephemeral: Value) -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{"name": "app", "image": "busybox"}],
                "ephemeralContainers": ephemeral,
            },
        })
    }

    fn messages(pod: &Value) -> Vec<String> {
        let mut names = vec!["app"];
        let mut causes = Vec::new();
        validate(&pod["spec"], "spec", &mut names, &mut causes);
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn forbidden_fields_and_names() {
        let p = pod(json!([
            {"name": "dbg", "image": "busybox", "resources": {}, "stdin": true, "tty": true},
            {"name": "app", "image": "busybox", "ports": [{"containerPort": 80}]},
            {"name": "dbg2", "image": "busybox", "targetContainerName": "nope",
             "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x"}]},
        ]));
        assert_eq!(
            messages(&p),
            [
                "spec.ephemeralContainers[1].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].targetContainerName: Not found: \"nope\"",
                "spec.ephemeralContainers[2].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
            ]
        );
        let ok = pod(json!([{"name": "dbg", "image": "busybox", "targetContainerName": "app"}]));
        assert!(messages(&ok).is_empty());
    }

    #[test]
    fn existing_ones_stay() {
        let old = pod(json!([{"name": "dbg", "image": "busybox"}]));
        let added = pod(json!([
            {"name": "dbg", "image": "busybox"},
            {"name": "dbg2", "image": "busybox"},
        ]));
        assert!(update(&old, &added).is_empty());
        let changed = pod(json!([{"name": "dbg", "image": "alpine"}]));
        assert_eq!(
            update(&old, &changed)[0].field,
            "spec.ephemeralContainers[dbg]"
        );
        let removed = pod(json!([]));
        assert_eq!(
            update(&old, &removed)[0].message,
            "Forbidden: existing ephemeral containers \"dbg\" may not be removed\n"
        );
        let mut mirror = old.clone();
        mirror["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: "x"});
        assert_eq!(update(&mirror, &added).len(), 1);
    }
}

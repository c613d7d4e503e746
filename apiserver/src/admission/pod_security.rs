//! PodSecurity: the namespace's `pod-security.kubernetes.io/*` labels name the Pod Security
//! Standard ([`crate::podsecurity`]) its pods must meet (`enforce`: a pod that breaks it is
//! refused) and the one clients are warned about (`warn`: a `Warning` header kubectl prints).
//! Pods are checked when created (their security fields cannot change afterwards); workloads
//! with a pod template (Deployments, Jobs, CronJobs, …) are warned about on create and update,
//! as upstream, never refused, since their pods are checked when created.
//!
//! A namespace whose labels change gets them checked (a bad value is refused) and, when its
//! enforce level tightens, a warning naming the running pods that break the new level.
//!
//! `audit` labels are accepted and checked like the others, but ekube has no audit log to
//! record their findings in.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::PodSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde_json::Value;

use super::{Attributes, Operation};
use crate::errors::{ApiError, Cause, Result};
use crate::podsecurity::{LevelVersion, Policy, Violation, describe, evaluate};
use crate::registry::{Registry, Warnings, decode, key};

pub(super) async fn validate(
    registry: &Registry,
    attrs: &Attributes<'_>,
    object: &Value,
    warnings: &mut Warnings,
) -> Result<()> {
    // Ephemeral containers are checked as the pod's other containers (upstream's
    // `pods/ephemeralcontainers` exemption from the subresource skip).
    let ephemeral = attrs.is("", "Pod") && attrs.subresource == Some("ephemeralcontainers");
    if (attrs.subresource.is_some() && !ephemeral) || attrs.operation == Operation::Delete {
        return Ok(());
    }
    if attrs.is("", "Namespace") {
        return namespace(registry, attrs, object, warnings).await;
    }
    let Some(ns) = attrs.namespace else {
        return Ok(());
    };
    let is_pod = attrs.is("", "Pod");
    if is_pod && attrs.operation != Operation::Create && !ephemeral {
        return Ok(());
    }
    let Some((meta, spec)) = pod_template(attrs, object) else {
        return Ok(());
    };
    let (policy, _) = Policy::from_labels(&labels(&namespace_object(registry, ns).await?));
    if is_pod {
        let violations = evaluate(policy.enforce, &meta, &spec);
        if !violations.is_empty() {
            return Err(attrs.forbidden(&format!(
                "violates PodSecurity {:?}: {}",
                policy.enforce.to_string(),
                describe(&violations)
            )));
        }
    }
    warn(policy.warn, &meta, &spec, warnings);
    Ok(())
}

fn warn(lv: LevelVersion, meta: &ObjectMeta, spec: &PodSpec, warnings: &mut Warnings) {
    let violations = evaluate(lv, meta, spec);
    if !violations.is_empty() {
        warnings.0.push(format!(
            "would violate PodSecurity {:?}: {}",
            lv.to_string(),
            describe(&violations)
        ));
    }
}

/// The pod metadata and spec of a pod or of a workload's pod template; `None` for other kinds
/// or a template that does not decode (validation has its own words for that).
fn pod_template(attrs: &Attributes<'_>, object: &Value) -> Option<(ObjectMeta, PodSpec)> {
    let template = match (attrs.resource.group, attrs.resource.kind) {
        ("", "Pod") => object,
        ("", "PodTemplate") => object.get("template")?,
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => object.pointer("/spec/template")?,
        ("batch", "CronJob") => object.pointer("/spec/jobTemplate/spec/template")?,
        _ => return None,
    };
    let meta = serde_json::from_value(template.get("metadata")?.clone()).unwrap_or_default();
    let spec = serde_json::from_value(template.get("spec")?.clone()).ok()?;
    Some((meta, spec))
}

fn labels(namespace: &Value) -> BTreeMap<String, String> {
    namespace
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

async fn namespace_object(registry: &Registry, ns: &str) -> Result<Value> {
    let nsr = ekube_api::resources::find("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not in the resource table"))?;
    let kv = registry
        .store
        .get(&key(nsr, None, ns))
        .await?
        .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
    Ok(decode(nsr, &kv))
}

/// A namespace's labels must be understood; a tighter enforce level warns about the pods
/// already there that break it.
async fn namespace(
    registry: &Registry,
    attrs: &Attributes<'_>,
    object: &Value,
    warnings: &mut Warnings,
) -> Result<()> {
    let (policy, errors) = Policy::from_labels(&labels(object));
    if !errors.is_empty() {
        let causes = errors
            .iter()
            .map(|e| {
                Cause::invalid(
                    format!("metadata.labels[{}]", e.label),
                    format!("{:?}", e.value),
                    e.message,
                )
            })
            .collect();
        return Err(ApiError::invalid("", "Namespace", attrs.name, causes));
    }
    let Some(old) = attrs.old_object else {
        return Ok(());
    };
    let (before, _) = Policy::from_labels(&labels(old));
    if policy.enforce == before.enforce {
        return Ok(());
    }
    let pods = super::list_in(registry, "pods", attrs.name).await?;
    let mut broken: Vec<(String, Vec<Violation>)> = Vec::new();
    for (pod, _) in &pods {
        let Some(spec) = pod
            .get("spec")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
        else {
            continue;
        };
        let meta: ObjectMeta = pod
            .get("metadata")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default();
        let violations = evaluate(policy.enforce, &meta, &spec);
        if !violations.is_empty() {
            broken.push((meta.name.unwrap_or_default(), violations));
        }
    }
    if broken.is_empty() {
        return Ok(());
    }
    warnings.0.push(format!(
        "existing pods in namespace {:?} violate the new PodSecurity enforce level {:?}",
        attrs.name,
        policy.enforce.to_string()
    ));
    // As upstream: pods with the same reasons are named once, with a count of the others.
    let mut by_reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, violations) in broken {
        let reasons: Vec<&str> = violations.iter().map(|v| v.reason.as_str()).collect();
        by_reasons.entry(reasons.join(", ")).or_default().push(name);
    }
    for (reasons, mut names) in by_reasons {
        names.sort();
        let first = &names[0];
        let line = match names.len() {
            1 => format!("{first}: {reasons}"),
            n => format!("{first} (and {} other pods): {reasons}", n - 1),
        };
        warnings.0.push(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admission::tests::{attrs, registry};

    fn privileged_pod() -> Value {
        json!({"metadata": {"name": "web", "namespace": "team"},
               "spec": {"containers": [{"name": "c", "image": "nginx",
                                        "securityContext": {"privileged": true}}]}})
    }

    async fn label_team(reg: &Registry, labels: Value) {
        let ns = ekube_api::resources::find("", "v1", "namespaces").unwrap();
        reg.guaranteed_update(ns, None, "team", None, &Default::default(), |mut team| {
            team["metadata"]["labels"] = labels.clone();
            Ok(team)
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn enforce_refuses_pods_and_warn_warns_about_templates() {
        let reg = registry().await;
        label_team(
            &reg,
            json!({"pod-security.kubernetes.io/enforce": "baseline",
                   "pod-security.kubernetes.io/warn": "restricted"}),
        )
        .await;
        let pods = ekube_api::resources::find("", "v1", "pods").unwrap();
        let mut w = Warnings::default();
        let err = validate(
            &reg,
            &attrs(pods, Operation::Create),
            &privileged_pod(),
            &mut w,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: violates PodSecurity \"baseline:latest\": privileged \
             (container \"c\" must not set securityContext.privileged=true)"
        );

        let deployments = ekube_api::resources::find("apps", "v1", "deployments").unwrap();
        let deployment = json!({"spec": {"template": privileged_pod()}});
        validate(
            &reg,
            &attrs(deployments, Operation::Create),
            &deployment,
            &mut w,
        )
        .await
        .unwrap();
        assert_eq!(w.0.len(), 1, "{w:?}");
        assert!(
            w.0[0].starts_with("would violate PodSecurity \"restricted:latest\": privileged"),
            "{w:?}"
        );
    }

    #[tokio::test]
    async fn bad_labels_are_refused() {
        let reg = registry().await;
        let ns = ekube_api::resources::find("", "v1", "namespaces").unwrap();
        let obj = json!({"metadata": {"name": "web",
            "labels": {"pod-security.kubernetes.io/enforce": "strict"}}});
        let err = validate(
            &reg,
            &attrs(ns, Operation::Create),
            &obj,
            &mut Warnings::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains(
                "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": \
                 must be one of privileged, baseline, restricted"
            ),
            "{}",
            err.message
        );
    }
}

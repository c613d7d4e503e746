//! Writes the bootstrap policy at every start, as upstream's RBAC post-start hook reconciles
//! it: missing objects are created; existing ones gain missing rules, aggregation selectors,
//! labels, annotations and subjects, unless annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` (an administrator's own version).
//! Nothing is ever removed. A binding whose `roleRef` differs is replaced, since a roleRef
//! cannot change in place.

use ekube_api::resources::find;
use serde_json::{Map, Value, json};

use super::cache::GROUP;
use super::policy::{self, BindingSpec, R, RoleSpec, Who};
use crate::errors::Result;
use crate::registry::{DeleteOptions, Registry, WriteOptions};

pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn rule_json(r: &R) -> Value {
    json!(r.to_rule())
}

fn metadata(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Value {
    let mut meta = json!({
        "name": name,
        "annotations": {AUTOUPDATE: "true"},
        "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>(),
    });
    if !namespace.is_empty() {
        meta["namespace"] = json!(namespace);
    }
    meta
}

/// The object a role spec describes.
pub fn role_object(spec: &RoleSpec) -> Value {
    let mut obj = json!({
        "metadata": metadata(spec.name, spec.namespace, spec.labels),
        "rules": spec.rules.iter().map(rule_json).collect::<Vec<_>>(),
    });
    if !spec.aggregate_from.is_empty() {
        let selectors: Vec<Value> = spec
            .aggregate_from
            .iter()
            .map(|k| json!({"matchLabels": {*k: "true"}}))
            .collect();
        obj["aggregationRule"] = json!({ "clusterRoleSelectors": selectors });
    }
    obj
}

fn subject_json(who: &Who) -> Value {
    match who {
        Who::User(n) => json!({"kind": "User", "apiGroup": GROUP, "name": n}),
        Who::Group(n) => json!({"kind": "Group", "apiGroup": GROUP, "name": n}),
        Who::ServiceAccount(ns, n) => json!({"kind": "ServiceAccount", "name": n, "namespace": ns}),
    }
}

/// The object a binding spec describes.
pub fn binding_object(spec: &BindingSpec) -> Value {
    let labels: &[(&str, &str)] = &[("kubernetes.io/bootstrapping", "rbac-defaults")];
    json!({
        "metadata": metadata(spec.name, spec.namespace, labels),
        "roleRef": {"apiGroup": GROUP, "kind": spec.role_kind, "name": spec.role},
        "subjects": spec.subjects.iter().map(subject_json).collect::<Vec<_>>(),
    })
}

/// The bindings of the per-controller roles to their ServiceAccounts.
fn controller_bindings() -> Vec<Value> {
    policy::CONTROLLER_ROLES
        .iter()
        .map(|role| {
            let sa = role.name.trim_start_matches("system:controller:");
            let mut b = binding_object(&BindingSpec {
                name: role.name,
                namespace: "",
                role_kind: "ClusterRole",
                role: role.name,
                subjects: &[],
            });
            b["subjects"] =
                json!([{"kind": "ServiceAccount", "name": sa, "namespace": "kube-system"}]);
            b
        })
        .collect()
}

/// Adds to `existing[field]` (an array) every element of `wanted` it lacks; whether it changed.
fn add_missing(existing: &mut Value, field: &str, wanted: &Value) -> bool {
    let Some(wanted) = wanted.get(field).and_then(Value::as_array) else {
        return false;
    };
    if !existing[field].is_array() {
        existing[field] = json!([]);
    }
    let list = existing[field].as_array_mut().expect("an array");
    let mut changed = false;
    for w in wanted {
        if !list.contains(w) {
            list.push(w.clone());
            changed = true;
        }
    }
    changed
}

/// Adds missing label and annotation keys (existing values win); whether it changed.
fn add_missing_meta(existing: &mut Value, wanted: &Value) -> bool {
    let mut changed = false;
    for field in ["labels", "annotations"] {
        let Some(want) = wanted["metadata"][field].as_object() else {
            continue;
        };
        if !existing["metadata"][field].is_object() {
            existing["metadata"][field] = json!({});
        }
        let have = existing["metadata"][field]
            .as_object_mut()
            .expect("an object");
        for (k, v) in want {
            if !have.contains_key(k) {
                have.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Reconciles one object of `plural` with what the policy wants.
async fn reconcile(registry: &Registry, plural: &str, wanted: Value) -> Result<()> {
    let r = find(GROUP, "v1", plural).expect("RBAC resources are served");
    let name = wanted["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ns = wanted["metadata"]["namespace"].as_str().map(str::to_string);
    let ns = ns.as_deref();
    let opts = WriteOptions::default();
    let existing = match registry.get(r, ns, &name).await {
        Err(e) if e.code == 404 => {
            registry.create(r, ns, wanted, &opts).await?;
            return Ok(());
        }
        other => other?,
    };
    if existing.pointer(&format!(
        "/metadata/annotations/{}",
        AUTOUPDATE.replace('/', "~1")
    )) == Some(&json!("false"))
    {
        return Ok(());
    }
    if wanted.get("roleRef").is_some() && existing.get("roleRef") != wanted.get("roleRef") {
        tracing::info!(%plural, %name, "replacing a bootstrap binding whose roleRef changed");
        registry
            .delete(r, ns, &name, &DeleteOptions::default())
            .await?;
        registry.create(r, ns, wanted, &opts).await?;
        return Ok(());
    }
    let mut next = existing.clone();
    let mut changed = add_missing_meta(&mut next, &wanted);
    for field in ["rules", "subjects"] {
        changed |= add_missing(&mut next, field, &wanted);
    }
    if let Some(agg) = wanted.get("aggregationRule") {
        if !next["aggregationRule"].is_object() {
            next["aggregationRule"] = json!({});
        }
        changed |= add_missing(&mut next["aggregationRule"], "clusterRoleSelectors", agg);
    }
    if changed {
        tracing::info!(%plural, %name, "adding missing bootstrap policy");
        registry
            .guaranteed_update(r, ns, &name, None, &opts, |_| Ok(next.clone()))
            .await?;
    }
    Ok(())
}

/// Every object of the bootstrap policy as `(resource plural, object)`.
pub fn objects() -> Vec<(&'static str, Value)> {
    let roles = policy::CLUSTER_ROLES.iter().chain(policy::CONTROLLER_ROLES);
    let cluster_bindings = policy::CLUSTER_ROLE_BINDINGS
        .iter()
        .map(binding_object)
        .chain(controller_bindings());
    roles
        .map(|spec| ("clusterroles", role_object(spec)))
        .chain(cluster_bindings.map(|b| ("clusterrolebindings", b)))
        .chain(
            policy::NAMESPACE_ROLES
                .iter()
                .map(|spec| ("roles", role_object(spec))),
        )
        .chain(
            policy::NAMESPACE_ROLE_BINDINGS
                .iter()
                .map(|spec| ("rolebindings", binding_object(spec))),
        )
        .collect()
}

/// Creates or completes every object of the bootstrap policy.
pub async fn run(registry: &Registry) -> Result<()> {
    for (plural, obj) in objects() {
        reconcile(registry, plural, obj).await?;
    }
    Ok(())
}

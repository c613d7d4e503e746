//! ResourceQuota: a create (or an update that makes an object cost more, such as a bigger claim
//! or a service turned `LoadBalancer`) is refused when it would take a namespace past a
//! quota's `hard` limits, and otherwise charged to the quotas' `status.used` in the same
//! request, as upstream's admission does: optimistically, each quota written against the
//! revision it was read at and re-checked when another writer got there first. The quota
//! controller recomputes the usage from scratch (releasing what deleted objects held), so a
//! charge for a write that later fails is only held until its next pass.
//!
//! Quotas with scopes (`BestEffort`, `Terminating`, `PriorityClass`, …) cover only the pods
//! their scopes describe. Updates that cost nothing more, which is nearly all of them, read no
//! quota at all.

use std::collections::BTreeSet;

use ekube_api::ResourceInfo;
use ekube_api::quota::{self, Usage};
use serde_json::{Map, Value, json};

use super::{Attributes, Operation, list_in};
use crate::errors::{ApiError, Result};
use crate::registry::{Registry, collection_prefix, decode, key};
use crate::storage;

/// How often one quota's charge is retried against concurrent writers before giving up.
const CHARGE_ATTEMPTS: usize = 16;

pub(super) async fn validate(
    registry: &Registry,
    attrs: &Attributes<'_>,
    obj: &Value,
) -> Result<()> {
    let (None, Some(ns)) = (attrs.subresource, attrs.namespace) else {
        return Ok(());
    };
    let cost = match (attrs.operation, attrs.old_object) {
        (Operation::Create, _) => quota::usage(attrs.resource, obj),
        (Operation::Update, Some(old)) => increase(
            &quota::usage(attrs.resource, obj),
            &quota::usage(attrs.resource, old),
        ),
        _ => return Ok(()),
    };
    if cost.is_empty() {
        return Ok(());
    }
    let quotas = list_in(registry, "resourcequotas", ns).await?;
    if quotas.is_empty() {
        return Ok(());
    }
    let mut charges = Vec::new();
    for (q, _) in &quotas {
        if let Some(requested) = check(registry, attrs, ns, q, obj, &cost).await? {
            charges.push((
                q["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                requested,
            ));
        }
    }
    if attrs.dry_run {
        return Ok(());
    }
    for (name, requested) in charges {
        charge(registry, attrs, ns, &name, obj, &cost, &requested).await?;
    }
    Ok(())
}

/// What `new` costs beyond `old`, resource by resource.
fn increase(new: &Usage, old: &Usage) -> Usage {
    new.iter()
        .map(|(k, v)| (k.clone(), v - old.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// A quota's limits: `status.hard` once the controller published it, else `spec.hard`.
fn hard_of(q: &Value) -> Usage {
    let status = quota::parse_list(q.pointer("/status/hard"));
    if status.is_empty() {
        quota::parse_list(q.pointer("/spec/hard"))
    } else {
        status
    }
}

/// Checks `cost` against quota `q`; returns what it charges (none when the quota counts
/// nothing the object costs).
async fn check(
    registry: &Registry,
    attrs: &Attributes<'_>,
    ns: &str,
    q: &Value,
    obj: &Value,
    cost: &Usage,
) -> Result<Option<Usage>> {
    let name = q["metadata"]["name"].as_str().unwrap_or_default();
    if !quota::in_scope(q, attrs.resource, obj) {
        return Ok(None);
    }
    let hard = hard_of(q);
    if attrs.operation == Operation::Create && attrs.is("", "Pod") && cost.contains_key("pods") {
        let names: BTreeSet<&str> = hard.keys().map(String::as_str).collect();
        let missing = quota::missing_compute(obj, &names);
        if !missing.is_empty() {
            let list: Vec<String> = missing.into_iter().collect();
            return Err(attrs.forbidden(&format!(
                "failed quota: {name}: must specify {}",
                list.join(",")
            )));
        }
    }
    let requested: Usage = cost
        .iter()
        .filter(|(k, v)| hard.contains_key(*k) && **v != 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let used = used_of(registry, ns, q, &requested).await?;
    let exceeded: Vec<&String> = requested
        .iter()
        .filter(|(k, v)| used.get(*k).copied().unwrap_or(0) + **v > hard[*k])
        .map(|(k, _)| k)
        .collect();
    if !exceeded.is_empty() {
        let mask = |u: &Usage| -> Usage {
            exceeded
                .iter()
                .map(|k| ((*k).clone(), u.get(*k).copied().unwrap_or(0)))
                .collect()
        };
        return Err(attrs.forbidden(&format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            quota::pretty(&mask(&requested)),
            quota::pretty(&mask(&used)),
            quota::pretty(&mask(&hard)),
        )));
    }
    Ok(Some(requested))
}

/// The quota's `status.used`, with whatever `names` it does not report yet (a quota the
/// controller has not seen) measured from storage.
async fn used_of(registry: &Registry, ns: &str, q: &Value, names: &Usage) -> Result<Usage> {
    let mut used = quota::parse_list(q.pointer("/status/used"));
    let unknown: Vec<&String> = names.keys().filter(|k| !used.contains_key(*k)).collect();
    if unknown.is_empty() {
        return Ok(used);
    }
    let mut resources: Vec<&'static ResourceInfo> = unknown
        .iter()
        .filter_map(|k| quota::resource_of(k))
        .collect();
    resources.sort_by_key(|r| r.plural);
    resources.dedup_by_key(|r| r.plural);
    let mut measured = Usage::new();
    for r in resources {
        let page = registry
            .store
            .list(&collection_prefix(r, Some(ns)), None, 0)
            .await?;
        for kv in &page.items {
            let obj = decode(r, kv);
            if quota::in_scope(q, r, &obj) {
                quota::add(&mut measured, &quota::usage(r, &obj));
            }
        }
    }
    for k in unknown {
        used.insert(k.clone(), measured.get(k).copied().unwrap_or(0));
    }
    Ok(used)
}

/// Adds `requested` to quota `name`'s `status.used`, re-reading and re-checking it when a
/// concurrent write moved it.
async fn charge(
    registry: &Registry,
    attrs: &Attributes<'_>,
    ns: &str,
    name: &str,
    obj: &Value,
    cost: &Usage,
    requested: &Usage,
) -> Result<()> {
    let r = ekube_api::resources::find("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::internal("resourcequotas are not in the resource table"))?;
    let k = key(r, Some(ns), name);
    let mut requested = requested.clone();
    for _ in 0..CHARGE_ATTEMPTS {
        // Deleted meanwhile: nothing left to charge.
        let Some(kv) = registry.store.get(&k).await? else {
            return Ok(());
        };
        let mut q = decode(r, &kv);
        let mut used = used_of(registry, ns, &q, &requested).await?;
        quota::add(&mut used, &requested);
        let hard = hard_of(&q);
        let status = crate::defaults::ensure(&mut q, "status");
        let mut rendered = status["used"].as_object().cloned().unwrap_or_else(Map::new);
        for (res, amount) in &used {
            if hard.contains_key(res) {
                rendered.insert(res.clone(), json!(quota::format(res, *amount)));
            }
        }
        status["used"] = Value::Object(rendered);
        match registry
            .store
            .update(&k, crate::registry::encode(r, &q), kv.mod_revision)
            .await
        {
            Ok(_) => return Ok(()),
            Err(storage::Error::Conflict { .. }) => {
                // Someone else charged or recomputed it: check again against what they left.
                let Some(kv) = registry.store.get(&k).await? else {
                    return Ok(());
                };
                match check(registry, attrs, ns, &decode(r, &kv), obj, cost).await? {
                    Some(again) => requested = again,
                    None => return Ok(()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::stale("", "resourcequotas", name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::registry;
    use crate::registry::WriteOptions;

    fn core(plural: &str) -> &'static ResourceInfo {
        ekube_api::resources::find("", "v1", plural).unwrap()
    }

    fn pod(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"automountServiceAccountToken": false, "containers": [
            {"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}]}})
    }

    async fn used(reg: &Registry, name: &str) -> Value {
        reg.get(core("resourcequotas"), Some("team"), name)
            .await
            .unwrap()["status"]["used"]
            .clone()
    }

    #[tokio::test]
    async fn creates_are_charged_until_the_quota_is_full() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        let q = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1"}}});
        reg.create(core("resourcequotas"), Some("team"), q, &opts)
            .await
            .unwrap();
        reg.create(core("pods"), Some("team"), pod("a", "250m"), &opts)
            .await
            .unwrap();
        assert_eq!(
            used(&reg, "q").await,
            json!({"pods": "1", "requests.cpu": "250m"})
        );
        // Too much cpu: refused, nothing stored, nothing charged.
        let err = reg
            .create(core("pods"), Some("team"), pod("b", "1"), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                403,
                "pods \"b\" is forbidden: exceeded quota: q, requested: requests.cpu=1, used: requests.cpu=250m, limited: requests.cpu=1"
            )
        );
        assert_eq!(
            reg.get(core("pods"), Some("team"), "b")
                .await
                .unwrap_err()
                .code,
            404
        );
        reg.create(core("pods"), Some("team"), pod("b", "250m"), &opts)
            .await
            .unwrap();
        let err = reg
            .create(core("pods"), Some("team"), pod("c", "100m"), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        assert_eq!(
            used(&reg, "q").await,
            json!({"pods": "2", "requests.cpu": "500m"})
        );
        // Other kinds and namespaces are not charged.
        let cm = json!({"metadata": {"name": "cm"}});
        reg.create(core("configmaps"), Some("team"), cm.clone(), &opts)
            .await
            .unwrap();
        reg.create(core("pods"), Some("default"), pod("c", "2"), &opts)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn scoped_quotas_and_growing_updates() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        let q = json!({"metadata": {"name": "be"}, "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}});
        reg.create(core("resourcequotas"), Some("team"), q, &opts)
            .await
            .unwrap();
        // Pods with requests are not BestEffort: the quota does not count them.
        for name in ["a", "b"] {
            reg.create(core("pods"), Some("team"), pod(name, "100m"), &opts)
                .await
                .unwrap();
        }
        let best_effort = |n: &str| json!({"metadata": {"name": n}, "spec": {"automountServiceAccountToken": false, "containers": [{"name": "c", "image": "x"}]}});
        reg.create(core("pods"), Some("team"), best_effort("c"), &opts)
            .await
            .unwrap();
        let err = reg
            .create(core("pods"), Some("team"), best_effort("d"), &opts)
            .await
            .unwrap_err();
        assert!(
            err.message
                .ends_with("exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1"),
            "{}",
            err.message
        );

        let q =
            json!({"metadata": {"name": "lb"}, "spec": {"hard": {"services.loadbalancers": "0"}}});
        reg.create(core("resourcequotas"), Some("team"), q, &opts)
            .await
            .unwrap();
        let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        reg.create(core("services"), Some("team"), svc, &opts)
            .await
            .unwrap();
        let err = reg
            .guaranteed_update(
                core("services"),
                Some("team"),
                "web",
                None,
                &opts,
                |mut s| {
                    s["spec"]["type"] = json!("LoadBalancer");
                    Ok(s)
                },
            )
            .await
            .unwrap_err();
        assert!(
            err.message
                .contains("exceeded quota: lb, requested: services.loadbalancers=1"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn compute_quotas_need_every_container_to_ask() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        let q =
            json!({"metadata": {"name": "compute"}, "spec": {"hard": {"limits.memory": "1Gi"}}});
        reg.create(core("resourcequotas"), Some("team"), q, &opts)
            .await
            .unwrap();
        let err = reg
            .create(core("pods"), Some("team"), pod("a", "1"), &opts)
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "pods \"a\" is forbidden: failed quota: compute: must specify limits.memory"
        );
    }

    #[tokio::test]
    async fn counts_existing_objects_before_the_controller_publishes_usage() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        for name in ["a", "b"] {
            let cm = json!({"metadata": {"name": name}});
            reg.create(core("configmaps"), Some("team"), cm, &opts)
                .await
                .unwrap();
        }
        let q = json!({"metadata": {"name": "q"}, "spec": {"hard": {"count/configmaps": "3"}}});
        reg.create(core("resourcequotas"), Some("team"), q, &opts)
            .await
            .unwrap();
        let dry = WriteOptions {
            dry_run: true,
            ..WriteOptions::default()
        };
        let cm = |n: &str| json!({"metadata": {"name": n}});
        reg.create(core("configmaps"), Some("team"), cm("c"), &dry)
            .await
            .unwrap();
        assert_eq!(
            used(&reg, "q").await,
            Value::Null,
            "a dry run charges nothing"
        );
        reg.create(core("configmaps"), Some("team"), cm("c"), &opts)
            .await
            .unwrap();
        assert_eq!(used(&reg, "q").await, json!({"count/configmaps": "3"}));
        let err = reg
            .create(core("configmaps"), Some("team"), cm("d"), &opts)
            .await
            .unwrap_err();
        assert!(err.message.ends_with("requested: count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3"), "{}", err.message);
    }
}

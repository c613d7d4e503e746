//! ResourceQuota controller (upstream's `resourcequota`): every quota's `status.hard` mirrors
//! its `spec.hard` and `status.used` is what the objects of its namespace cost, recomputed
//! from a fresh list whenever the quota changes, whenever a pod, service, configmap, secret or
//! claim in its namespace changes (so deletions give quota back promptly), and every
//! `--resource-quota-sync-period` for everything else a quota counts.
//!
//! The apiserver's admission charges creates to `status.used` as they happen; this controller
//! corrects the figure afterwards (releasing what deleted objects and failed writes held). Both
//! measure with [`ekube_api::quota`]. The status write (a PUT) carries the quota's
//! `resourceVersion`, so a charge admitted meanwhile is never overwritten: the write fails and
//! the quota is recomputed.

use std::sync::Arc;
use std::time::Duration;

use ekube_api::quota::{self, Usage};
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::{Map, Value, json};

use crate::gc::{api_resource, dynamic_api};
use crate::{Context as _, ReconcileError, Result};

/// The kinds whose changes trigger a recount of their namespace's quotas at once.
const WATCHED: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
];

struct Ctx {
    client: kube::Client,
    period: Duration,
}

pub async fn run(client: kube::Client, period: Duration) -> Result<(), String> {
    let mut controller = Controller::new(
        Api::<ResourceQuota>::all(client.clone()),
        watcher::Config::default(),
    );
    let quotas = controller.store();
    for plural in WATCHED {
        let r = ekube_api::resources::find("", "v1", plural)
            .ok_or_else(|| format!("{plural} are not in the resource table"))?;
        let quotas = quotas.clone();
        controller = controller.watches_with(
            dynamic_api(&client, r, None),
            api_resource(r),
            watcher::Config::default(),
            move |obj: DynamicObject| quotas_in(&quotas, obj.namespace().as_deref()),
        );
    }
    let ctx = Ctx { client, period };
    crate::runner::drive(
        "resourcequota",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

fn quotas_in(quotas: &Store<ResourceQuota>, ns: Option<&str>) -> Vec<ObjectRef<ResourceQuota>> {
    quotas
        .state()
        .iter()
        .filter(|q| q.namespace().as_deref() == ns)
        .map(|q| ObjectRef::from_obj(&**q))
        .collect()
}

async fn reconcile(q: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action> {
    if q.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (ns, name) = (q.namespace().unwrap_or_default(), q.name_any());
    let current = serde_json::to_value(&*q).map_err(|e| ReconcileError::Other(e.to_string()))?;
    let hard = quota::parse_list(current.pointer("/spec/hard"));
    let used = measure(&ctx.client, &ns, &current, &hard).await?;
    let patch = status_patch(&current, &used);
    if patch.as_object().is_some_and(Map::is_empty) {
        return Ok(Action::requeue(ctx.period));
    }
    // A PUT of the status as the cache has the quota, so it carries that resourceVersion: a
    // charge admission made meanwhile makes it a 409, not a lost update. (Upstream's role
    // grants `update` on the status, not `patch`.)
    let mut desired = current;
    json_patch::merge(&mut desired["status"], &patch);
    let desired: ResourceQuota =
        serde_json::from_value(desired).map_err(|e| ReconcileError::Other(e.to_string()))?;
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .replace_status(&name, &PostParams::default(), &desired)
        .await
    {
        Ok(_) => Ok(Action::requeue(ctx.period)),
        // Gone, or charged by an admission meanwhile: the watch brings the newer quota.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(e).ctx(|| format!("updating status of resourcequota {ns}/{name}")),
    }
}

/// What the objects of `ns` that quota `q` covers cost, for each resource `hard` names (zero
/// when nothing).
async fn measure(client: &kube::Client, ns: &str, q: &Value, hard: &Usage) -> Result<Usage> {
    let mut resources: Vec<_> = hard.keys().filter_map(|k| quota::resource_of(k)).collect();
    resources.sort_by_key(|r| (r.group, r.plural));
    resources.dedup();
    let mut total = Usage::new();
    for r in resources {
        let list = dynamic_api(client, r, Some(ns))
            .list(&ListParams::default())
            .await
            .ctx(|| format!("listing {} in {ns}", r.plural))?;
        for item in &list.items {
            let obj =
                serde_json::to_value(item).map_err(|e| ReconcileError::Other(e.to_string()))?;
            if quota::in_scope(q, r, &obj) {
                quota::add(&mut total, &quota::usage(r, &obj));
            }
        }
    }
    Ok(hard
        .keys()
        .map(|k| (k.clone(), total.get(k).copied().unwrap_or(0)))
        .collect())
}

/// The merge patch that takes the quota's status to `hard = spec.hard, used = used`: empty
/// when it is there already; entries no longer tracked are removed.
fn status_patch(current: &Value, used: &Usage) -> Value {
    let mut patch = Map::new();
    let spec_hard = current.pointer("/spec/hard").cloned().unwrap_or(json!({}));
    let rendered: Map<String, Value> = used
        .iter()
        .map(|(k, v)| (k.clone(), json!(quota::format(k, *v))))
        .collect();
    for (field, want) in [("hard", spec_hard), ("used", Value::Object(rendered))] {
        let have = current.pointer(&format!("/status/{field}"));
        let same = match field {
            // Compared by amount: `1000m` and `1` are the same quantity.
            "used" => have.is_some_and(|h| {
                quota::parse_list(Some(h)) == quota::parse_list(Some(&want))
                    && h.as_object().map(Map::len) == want.as_object().map(Map::len)
            }),
            _ => have == Some(&want),
        };
        if same {
            continue;
        }
        let mut entry = want.as_object().cloned().unwrap_or_default();
        for stale in have
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            entry.entry(stale.clone()).or_insert(Value::Null);
        }
        patch.insert(field.into(), Value::Object(entry));
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_publishes_hard_and_used_and_drops_what_is_no_longer_tracked() {
        let q = json!({"spec": {"hard": {"pods": "2", "requests.cpu": "1"}},
            "status": {"hard": {"pods": "2", "services": "1"}, "used": {"pods": "1", "services": "0"}}});
        let used = Usage::from([("pods".into(), 2000), ("requests.cpu".into(), 500)]);
        assert_eq!(
            status_patch(&q, &used),
            json!({"hard": {"pods": "2", "requests.cpu": "1", "services": null},
                   "used": {"pods": "2", "requests.cpu": "500m", "services": null}})
        );
        let settled = json!({"spec": {"hard": {"pods": "2"}},
            "status": {"hard": {"pods": "2"}, "used": {"pods": "2000m"}}});
        let used = Usage::from([("pods".into(), 2000)]);
        assert_eq!(status_patch(&settled, &used), json!({}));
    }
}

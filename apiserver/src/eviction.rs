//! `pods/eviction`: a pod deletion that honours the PodDisruptionBudget guarding the pod, as
//! upstream's `EvictionREST` does it (`pkg/registry/core/pod/storage/eviction.go`).
//!
//! Terminal, pending and already-terminating pods go without looking at any budget: they
//! disrupt nothing. Otherwise the budgets of the pod's namespace whose (non-empty) selector
//! matches the pod's labels are found: none, and the pod is deleted; more than one, and the
//! answer is upstream's 500. With one, a pod that is not Ready goes without spending the budget
//! when the budget says `unhealthyPodEvictionPolicy: AlwaysAllow`, or when the application is
//! healthy anyway (`currentHealthy >= desiredHealthy > 0`). Every other eviction spends one of
//! `status.disruptionsAllowed`: refused with 429 TooManyRequests and a `DisruptionBudget`
//! cause when none is left or the status has not observed the budget's current generation;
//! else the budget's status is written (optimistically: a concurrent writer makes the read,
//! check and write start over) with one disruption fewer and the pod in `disruptedPods`, which
//! the disruption controller honours until the pod is gone or two minutes have passed. Then
//! the pod gets the `DisruptionTarget` condition and is deleted, pinned to the version the
//! decision saw whenever a pod becoming Ready in between would change it.

use std::sync::Arc;

use ekube_api::ResourceInfo;
use ekube_api::disruption::{guards_pod, update_disruption_allowed};
use http::{Response, StatusCode};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::ApiServer;
use crate::errors::{ApiError, Result};
use crate::handler::{Body, json_response};
use crate::registry::{DeleteOptions, ListOptions, WriteOptions};

/// How many `disruptedPods` a budget may hold before evictions are refused: that many
/// evictions not yet confirmed by the disruption controller means it is not keeping up.
pub const MAX_DISRUPTED_PODS: usize = 2000;

const MULTIPLE_BUDGETS: &str = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// Evicts pod `name` as the Eviction `eviction` (already admitted) asks.
pub async fn create(
    api: &Arc<ApiServer>,
    pods: &'static ResourceInfo,
    ns: &str,
    name: &str,
    eviction: &Value,
    dry_run: bool,
) -> Result<Response<Body>> {
    let named = eviction
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !named.is_empty() && named != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let opts = delete_options(eviction, dry_run);
    let pinned_by_client = opts.resource_version.is_some();
    // Evictions that need no budget retry lost races, unless the client pinned a version.
    let attempts = if pinned_by_client { 1 } else { 20 };
    let mut pod = Value::Null;
    for attempt in 1..=attempts {
        pod = api.registry.get(pods, Some(ns), name).await?;
        if !can_ignore_budget(&pod) {
            break;
        }
        let pin = enforce_resource_version(&pod);
        match delete_pod(api, pods, ns, name, &pod, opts.clone(), pin).await {
            Err(e) if e.code == 409 && attempt < attempts => continue,
            other => return other.map(|_| success()),
        }
    }
    let budgets = guarding_budgets(api, ns, &pod).await?;
    let budget = match budgets.as_slice() {
        [] => {
            delete_pod(api, pods, ns, name, &pod, opts, false).await?;
            return Ok(success());
        }
        [one] => one,
        _ => {
            return Ok(json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": MULTIPLE_BUDGETS, "code": 500}),
            ));
        }
    };
    let budget_name = budget.metadata.name.clone().unwrap_or_default();
    let pin = if !pod_ready(&pod) && unhealthy_may_go(budget) {
        // Not spending the budget: only while the pod stays unready, hence the pin.
        true
    } else {
        spend(api, ns, &budget_name, name, opts.dry_run).await?;
        false
    };
    match delete_pod(api, pods, ns, name, &pod, opts, pin).await {
        Err(e) if e.code == 409 && pin && !pinned_by_client => Err(still_processing(&budget_name)),
        other => other.map(|_| success()),
    }
}

fn success() -> Response<Body> {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// The Eviction's `deleteOptions` (grace period and preconditions), dry-run when either the
/// request or the options ask for it.
fn delete_options(eviction: &Value, dry_run: bool) -> DeleteOptions {
    let o = eviction.get("deleteOptions").unwrap_or(&Value::Null);
    let text = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let options_dry_run = o
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|v| v == "All"));
    DeleteOptions {
        grace_period: o.get("gracePeriodSeconds").and_then(Value::as_i64),
        propagation: text("/propagationPolicy"),
        uid: text("/preconditions/uid"),
        resource_version: text("/preconditions/resourceVersion"),
        dry_run: dry_run || options_dry_run,
        ..Default::default()
    }
}

/// Upstream's `canIgnorePDB`: the pod has finished, never started, or is already going.
pub fn can_ignore_budget(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed" | "Pending")
    ) || pod.pointer("/metadata/deletionTimestamp").is_some()
}

/// Upstream's `shouldEnforceResourceVersion`: a live pod is deleted only as it was seen, so it
/// cannot have become Ready (and guarded) in between.
pub fn enforce_resource_version(pod: &Value) -> bool {
    !matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) && pod.pointer("/metadata/deletionTimestamp").is_none()
}

pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Whether an unready pod may go without spending `budget`: the budget allows it always, or
/// the application it guards is healthy without the pod.
pub fn unhealthy_may_go(budget: &PodDisruptionBudget) -> bool {
    let always = budget
        .spec
        .as_ref()
        .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
        == Some("AlwaysAllow");
    let status = budget.status.clone().unwrap_or_default();
    let (current, desired) = (
        status.current_healthy.unwrap_or(0),
        status.desired_healthy.unwrap_or(0),
    );
    always || (current >= desired && desired > 0)
}

/// The budgets of namespace `ns` that guard `pod`.
async fn guarding_budgets(
    api: &ApiServer,
    ns: &str,
    pod: &Value,
) -> Result<Vec<PodDisruptionBudget>> {
    let r = ekube_api::resources::find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("policy/v1 poddisruptionbudgets is not served"))?;
    let (items, _, _) = api
        .registry
        .list(r, Some(ns), &ListOptions::default())
        .await?;
    let labels = pod
        .pointer("/metadata/labels")
        .cloned()
        .and_then(|l| serde_json::from_value(l).ok())
        .unwrap_or_default();
    Ok(items
        .into_iter()
        .filter_map(|b| serde_json::from_value::<PodDisruptionBudget>(b).ok())
        .filter(|b| guards_pod(b, &labels))
        .collect())
}

/// Takes one disruption from budget `budget` for pod `pod`, retrying when the budget changed
/// under the write.
async fn spend(api: &ApiServer, ns: &str, budget: &str, pod: &str, dry_run: bool) -> Result<()> {
    let r = ekube_api::resources::find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("policy/v1 poddisruptionbudgets is not served"))?;
    let opts = WriteOptions {
        dry_run,
        ..Default::default()
    };
    let result = api
        .registry
        .guaranteed_update(r, Some(ns), budget, Some("status"), &opts, |current| {
            let mut pdb: PodDisruptionBudget = serde_json::from_value(current)
                .map_err(|e| ApiError::internal(format!("stored budget {budget}: {e}")))?;
            check_and_decrement(&mut pdb, pod, Time(Timestamp::now()), dry_run)?;
            serde_json::to_value(&pdb)
                .map_err(|e| ApiError::internal(format!("budget {budget}: {e}")))
        })
        .await;
    match result {
        Ok(_) => Ok(()),
        // Only lost races end in a conflict here.
        Err(e) if e.code == 409 => Err(ApiError::timeout(format!(
            "couldn't update PodDisruptionBudget {budget:?} due to conflicts"
        ))
        .retry_after(10)),
        Err(e) => Err(e),
    }
}

/// Upstream's `checkAndDecrement`: refuses when the budget's status is behind its spec or has
/// no disruption left, else takes one and records `pod` as disrupted at `now` (not for a dry
/// run, which writes nothing).
pub fn check_and_decrement(
    pdb: &mut PodDisruptionBudget,
    pod: &str,
    now: Time,
    dry_run: bool,
) -> Result<()> {
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let status = pdb.status.get_or_insert_with(Default::default);
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return Err(still_processing(&name));
    }
    let allowed = status.disruptions_allowed.unwrap_or(0);
    if allowed < 0 {
        return Err(ApiError::forbidden_object(
            "poddisruptionbudget.policy",
            &name,
            "pdb disruptions allowed is negative",
        ));
    }
    if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > MAX_DISRUPTED_PODS {
        return Err(ApiError::forbidden_object(
            "poddisruptionbudget.policy",
            &name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(ApiError::disruption_budget(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status.desired_healthy.unwrap_or(0),
            status.current_healthy.unwrap_or(0)
        )));
    }
    status.disruptions_allowed = Some(allowed - 1);
    if allowed == 1 {
        update_disruption_allowed(status, now.clone());
    }
    if !dry_run {
        status
            .disrupted_pods
            .get_or_insert_with(Default::default)
            .insert(pod.to_string(), now);
    }
    Ok(())
}

fn still_processing(budget: &str) -> ApiError {
    ApiError::disruption_budget(format!(
        "The disruption budget {budget} is still being processed by the server."
    ))
}

/// Marks the pod `DisruptionTarget` and deletes it; with `pin`, only as `seen` was (unless the
/// client pinned a version itself).
async fn delete_pod(
    api: &ApiServer,
    pods: &ResourceInfo,
    ns: &str,
    name: &str,
    seen: &Value,
    mut opts: DeleteOptions,
    pin: bool,
) -> Result<()> {
    if pin && opts.resource_version.is_none() {
        opts.resource_version = seen
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
    }
    if !opts.dry_run {
        let marked = mark_disruption_target(api, pods, ns, name, &opts).await?;
        if opts.resource_version.is_some() {
            // Ours is the change since the pinned version: pin the delete to it.
            opts.resource_version = marked
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
        }
    }
    api.registry.delete(pods, Some(ns), name, &opts).await?;
    Ok(())
}

/// Adds `DisruptionTarget=True` (reason `EvictionByEvictionAPI`) to the pod's conditions, as
/// upstream does before an eviction's delete; the delete's preconditions hold for this write.
async fn mark_disruption_target(
    api: &ApiServer,
    pods: &ResourceInfo,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value> {
    let precondition = opts
        .resource_version
        .as_deref()
        .map(|rv| {
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
        })
        .transpose()?;
    let write = WriteOptions {
        precondition,
        ..Default::default()
    };
    let uid = opts.uid.clone();
    let now = crate::registry::now();
    let (pod, _) = api
        .registry
        .guaranteed_update(pods, Some(ns), name, Some("status"), &write, |mut pod| {
            if let Some(uid) = &uid
                && pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
            {
                return Err(ApiError::conflict(
                    "",
                    "pods",
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}"),
                ));
            }
            let conditions =
                crate::defaults::ensure(crate::defaults::ensure(&mut pod, "status"), "conditions");
            if !conditions.is_array() {
                *conditions = json!([]);
            }
            let target = json!({"type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"});
            if let Some(list) = conditions.as_array_mut() {
                match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
                    Some(c) if c["status"] == "True" => {
                        c["reason"] = target["reason"].clone();
                        c["message"] = target["message"].clone();
                    }
                    Some(c) => {
                        *c = target;
                        c["lastTransitionTime"] = json!(now);
                    }
                    None => {
                        let mut c = target;
                        c["lastTransitionTime"] = json!(now);
                        list.push(c);
                    }
                }
            }
            Ok(pod)
        })
        .await?;
    Ok(pod)
}

#[cfg(test)]
mod tests;

//! Small helpers the controllers share: owner references, pod readiness, selectors, time,
//! status updates, the events of creating and deleting an owner's pods.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::events::{EventType, Recorder};

/// A controller ownerReference to `owner` (`controller: true`, `blockOwnerDeletion: true`).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The ownerReference with `controller: true`, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether `obj` has `deletionTimestamp` set.
pub fn deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// `Succeeded` or `Failed`.
pub fn pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Neither terminal nor being deleted: a pod that counts towards a replica count.
pub fn pod_active(pod: &Pod) -> bool {
    !pod_terminal(pod) && !deleting(pod)
}

/// The pod's `Ready` condition status is `True`.
pub fn pod_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's `Ready` condition last became `True`, if it is `True`.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if c.status != "True" {
        return None;
    }
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

pub fn labels_of<K: Resource>(obj: &K) -> BTreeMap<String, String> {
    obj.meta().labels.clone().unwrap_or_default()
}

/// An equality selector in query-string form.
pub fn map_selector_string(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Merges `status` (RFC 7386) into the status of `name`, an object of `api`'s kind in
/// namespace `ns`, and writes it with an update of the status subresource, as upstream's
/// controllers do (`UpdateStatus`; their roles grant `update` on `<kind>/status`, not `patch`).
/// A conflict is an error: the reconcile runs again on the newer object. `Ok(false)` when the
/// object is gone (nothing left to report on).
pub async fn patch_status<K>(
    api: &kube::Api<K>,
    ns: &str,
    name: &str,
    status: serde_json::Value,
) -> crate::Result<bool>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    use crate::Context;
    let action = || {
        format!(
            "updating status of {} {ns}/{name}",
            K::kind(&()).to_lowercase()
        )
    };
    let current = match api.get_opt(name).await.ctx(action)? {
        Some(obj) => obj,
        None => return Ok(false),
    };
    let mut obj = serde_json::to_value(&current)
        .map_err(|e| crate::ReconcileError::Other(format!("{}: {e}", action())))?;
    json_patch::merge(&mut obj["status"], &status);
    let updated: K = serde_json::from_value(obj)
        .map_err(|e| crate::ReconcileError::Other(format!("{}: {e}", action())))?;
    match api
        .replace_status(name, &kube::api::PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e).ctx(action),
    }
}

/// When to look at a workload again: soon while ready pods wait out `minReadySeconds` (they
/// become available without any event), else at the periodic resync.
pub fn requeue_for_availability(ready: i32, available: i32, min_ready: i32) -> Action {
    if ready > available && min_ready > 0 {
        Action::requeue(Duration::from_secs(1))
    } else {
        Action::requeue(Duration::from_secs(300))
    }
}

/// Reads object `name` through a LIST narrowed to it, where upstream's controller reads its
/// informer's cache: the list goes out with the controller-manager's identity (see
/// [`crate::credentials`]), so the controller's role needs no `get`, as upstream's does not.
pub async fn get_listed<K>(api: &kube::Api<K>, name: &str) -> kube::Result<Option<K>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(api.list(&params).await?.items.into_iter().next())
}

/// Records on `owner` how creating one of its pods went, with kube-controller-manager's pod
/// control's reasons and messages (`SuccessfulCreate` / `FailedCreate`).
pub async fn record_pod_create<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    owner: &K,
    result: &kube::Result<Pod>,
) {
    let (kind, reason, msg) = match result {
        Ok(pod) => (
            EventType::Normal,
            "SuccessfulCreate",
            format!("Created pod: {}", pod.name_any()),
        ),
        Err(e) => (
            EventType::Warning,
            "FailedCreate",
            format!("Error creating: {e}"),
        ),
    };
    recorder.record(owner, kind, reason, &msg).await;
}

/// Records on `owner` how deleting its pod `name` went (`SuccessfulDelete` / `FailedDelete`),
/// as [`record_pod_create`] does; a pod that was gone already (404) records nothing.
pub async fn record_pod_delete<K: Resource<DynamicType = ()>, T>(
    recorder: &Recorder,
    owner: &K,
    name: &str,
    result: &kube::Result<T>,
) {
    let (kind, reason, msg) = match result {
        Ok(_) => (
            EventType::Normal,
            "SuccessfulDelete",
            format!("Deleted pod: {name}"),
        ),
        Err(kube::Error::Api(e)) if e.code == 404 => return,
        Err(e) => (
            EventType::Warning,
            "FailedDelete",
            format!("Error deleting: {e}"),
        ),
    };
    recorder.record(owner, kind, reason, &msg).await;
}

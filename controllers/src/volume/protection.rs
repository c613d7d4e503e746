//! The protection controllers (upstream's `pvc-protection` and `pv-protection`): a claim
//! being deleted keeps its `kubernetes.io/pvc-protection` finalizer while a pod that is not
//! finished uses it, and a volume being deleted keeps `kubernetes.io/pv-protection` while it
//! is `Bound`. The apiserver adds the finalizers at creation; these controllers only remove
//! them, with the resourceVersion they read, so a pod or binding that appeared meanwhile makes
//! the write conflict and the object is looked at again.

use std::sync::Arc;
use std::time::Duration;

use ekube_api::storage::{PV_PROTECTION, PVC_PROTECTION};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::informer::Changes;
use crate::runner;
use crate::util::{deleting, pod_terminal};
use crate::{Context as _, Result};

/// The claims a pod's volumes name.
fn claims_of(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

pub async fn run_claims(client: kube::Client, pods: Changes<Pod>) -> Result<(), String> {
    let controller = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    // A pod that goes (or finishes) may free the claims it used.
    .watches_shared_stream(pods, |pod: Arc<Pod>| {
        let ns = pod.namespace().unwrap_or_default();
        claims_of(&pod)
            .map(|c| ObjectRef::new(c).within(&ns))
            .collect::<Vec<_>>()
    });
    runner::drive(
        "pvc-protection",
        controller,
        |pvc, client: Arc<kube::Client>| async move { sync_claim(&pvc, &client).await },
        client,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

pub async fn run_volumes(client: kube::Client) -> Result<(), String> {
    let controller = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    runner::drive(
        "pv-protection",
        controller,
        |pv, client: Arc<kube::Client>| async move { sync_volume(&pv, &client).await },
        client,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

async fn sync_claim(pvc: &PersistentVolumeClaim, client: &kube::Client) -> Result<Action> {
    if !deleting(pvc) || !pvc.finalizers().iter().any(|f| f == PVC_PROTECTION) {
        return Ok(Action::await_change());
    }
    let (ns, name) = (pvc.namespace().unwrap_or_default(), pvc.name_any());
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .ctx(|| format!("listing pods in {ns}"))?;
    let users: Vec<String> = pods
        .items
        .iter()
        .filter(|p| !pod_terminal(p) && claims_of(p).any(|c| c == name))
        .map(|p| p.name_any())
        .collect();
    if !users.is_empty() {
        tracing::debug!(claim = %format!("{ns}/{name}"), pods = ?users, "claim in use, kept");
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    remove_finalizer(&api, pvc, PVC_PROTECTION).await?;
    Ok(Action::await_change())
}

async fn sync_volume(pv: &PersistentVolume, client: &kube::Client) -> Result<Action> {
    if !deleting(pv) || !pv.finalizers().iter().any(|f| f == PV_PROTECTION) {
        return Ok(Action::await_change());
    }
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if bound {
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolume> = Api::all(client.clone());
    remove_finalizer(&api, pv, PV_PROTECTION).await?;
    Ok(Action::await_change())
}

/// Removes `finalizer` with an update carrying the resourceVersion the decision was made on
/// (the controllers' roles grant `update`, as upstream's do, not `patch`).
async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let mut updated = obj.clone();
    updated.finalizers_mut().retain(|f| f != finalizer);
    api.replace(&obj.name_any(), &PostParams::default(), &updated)
        .await
        .ctx(|| format!("removing {finalizer} from {}", obj.name_any()))?;
    Ok(())
}

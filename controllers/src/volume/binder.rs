//! The PersistentVolume controller (upstream's `persistentvolume-binder`): binds claims to
//! volumes and gives volumes back when their claims go.
//!
//! A claim is synced on its own changes and on those of the volume it names or that names it:
//! - Bound already (`spec.volumeName`): its volume is checked (gone: `Lost`), its half of the
//!   binding finished (the volume's `claimRef`) and its status made `Bound`, with the volume's
//!   access modes and capacity.
//! - Unbound: a claim made with no class while none was the default gets the default class
//!   once there is one (upstream's retroactive default). A claim of a `WaitForFirstConsumer`
//!   class waits for the scheduler to pick its
//!   node (`volume.kubernetes.io/selected-node`); then the best matching `Available` volume
//!   usable from that node ([`ekube_api::storage::best_match`]) is bound, the volume first
//!   (`claimRef`), then the claim. With none, a class with a provisioner is asked for one
//!   through `volume.kubernetes.io/storage-provisioner`, and the claim stays `Pending`; the
//!   provisioner's volume comes reserved for it (`claimRef`) and is bound on the next sync.
//!
//! A volume is `Available` without a claim (or reserved for one not yet made), `Bound` while
//! its claim holds it and `Released` when the claim is gone; then its reclaim policy applies:
//! `Retain` keeps it `Released`, `Delete` leaves it to the provisioner that made it (in-tree
//! deleters do not exist here, so a hand-made volume goes `Failed`), `Recycle` is not done
//! (`Failed`). Each reason is recorded as an Event once per change, not on every sync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ekube_api::storage::{
    self, BETA_STORAGE_PROVISIONER, BIND_COMPLETED, BOUND_BY_CONTROLLER, STORAGE_PROVISIONER,
};
use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::runner;
use crate::util::{deleting, get_listed, patch_status};
use crate::{Context as _, Result};

/// How often every claim and volume is looked at again (upstream's
/// `--pvclaimbinder-sync-period`): provisioners and the scheduler write annotations the
/// watches map to nothing else.
const SYNC_PERIOD: Duration = Duration::from_secs(15);

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    /// The last reason recorded per object UID, so a reason is recorded once per change.
    recorded: Mutex<HashMap<String, String>>,
}

impl Ctx {
    /// Records `reason` about `obj` unless it is the last reason recorded about it.
    async fn record_once<K>(&self, obj: &K, kind: EventType, reason: &str, message: &str)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let key = format!("{reason}\0{message}");
        if self.recorded.lock().unwrap().get(&uid) == Some(&key) {
            return;
        }
        if self.recorder.record(obj, kind, reason, message).await {
            self.recorded.lock().unwrap().insert(uid, key);
        }
    }
}

pub async fn run(client: kube::Client, recorder: Recorder) -> Result<(), String> {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder,
        recorded: Mutex::new(HashMap::new()),
    });
    // Claims, woken by the volumes that name them.
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
        |pv: PersistentVolume| {
            let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())?;
            Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
        },
    );
    // Volumes, woken by the claims that name them (a deleted claim releases its volume).
    let volumes = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
        |pvc: PersistentVolumeClaim| storage::bound_volume(&pvc).map(ObjectRef::new),
    );
    let retry = Duration::from_secs(1);
    tokio::join!(
        runner::drive(
            "persistentvolume-binder",
            claims,
            |pvc, ctx: Arc<Arc<Ctx>>| async move { sync_claim(&pvc, &ctx).await },
            ctx.clone(),
            retry,
        ),
        runner::drive(
            "persistentvolume-binder",
            volumes,
            |pv, ctx: Arc<Arc<Ctx>>| async move { sync_volume(&pv, &ctx).await },
            ctx,
            retry,
        ),
    );
    Ok(())
}

fn phase_of_claim(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.status.as_ref()?.phase.as_deref()
}

fn phase_of_volume(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref()?.phase.as_deref()
}

async fn sync_claim(pvc: &PersistentVolumeClaim, ctx: &Ctx) -> Result<Action> {
    if deleting(pvc) {
        return Ok(Action::await_change());
    }
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if let Some(volume) = storage::bound_volume(pvc) {
        let Some(pv) = get_listed(&volumes, volume)
            .await
            .ctx(|| format!("reading volume {volume}"))?
        else {
            set_claim_phase(ctx, pvc, "Lost", None).await?;
            let message = "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
            ctx.record_once(pvc, EventType::Warning, "ClaimLost", message)
                .await;
            return Ok(Action::requeue(SYNC_PERIOD));
        };
        let reserved = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some();
        if !reserved {
            // Named by the user (or our half written before a crash): finish the binding.
            if !storage::satisfies(&pv, pvc) {
                let message = format!(
                    "Cannot bind to requested volume \"{volume}\": it does not satisfy the claim (class, access modes, size, volume mode or selector)"
                );
                ctx.record_once(pvc, EventType::Warning, "VolumeMismatch", &message)
                    .await;
                set_claim_phase(ctx, pvc, "Pending", None).await?;
                return Ok(Action::requeue(SYNC_PERIOD));
            }
            let pv = bind_volume(ctx, &pv, pvc).await?;
            mark_claim_bound(ctx, pvc, &pv).await?;
            return Ok(Action::requeue(retry_soon()));
        }
        if !storage::claimed_by(&pv, pvc) {
            set_claim_phase(ctx, pvc, "Lost", None).await?;
            let message = "Two claims are bound to the same volume, this one is bound incorrectly";
            ctx.record_once(pvc, EventType::Warning, "ClaimMisbound", message)
                .await;
            return Ok(Action::requeue(SYNC_PERIOD));
        }
        mark_claim_bound(ctx, pvc, &pv).await?;
        return Ok(Action::requeue(SYNC_PERIOD * 20));
    }

    let classless = pvc
        .spec
        .as_ref()
        .is_some_and(|s| s.storage_class_name.is_none())
        && !pvc.annotations().contains_key(storage::BETA_CLASS);
    if classless && let Some(class) = default_class(ctx).await? {
        // Upstream's retroactive default: a claim made before any class was the default.
        let mut updated = pvc.clone();
        updated
            .spec
            .get_or_insert_with(Default::default)
            .storage_class_name = Some(class.clone());
        Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
            .replace(&name, &PostParams::default(), &updated)
            .await
            .ctx(|| format!("giving claim {ns}/{name} the default class {class}"))?;
        return Ok(Action::requeue(retry_soon()));
    }
    let class_name = storage::claim_class(pvc);
    // A class that does not exist still names the volumes made by hand for it.
    let class = if class_name.is_empty() {
        None
    } else {
        let classes: Api<StorageClass> = Api::all(ctx.client.clone());
        get_listed(&classes, class_name)
            .await
            .ctx(|| format!("reading storage class {class_name}"))?
    };
    let delayed = class
        .as_ref()
        .is_some_and(storage::waits_for_first_consumer);
    let node = match storage::selected_node(pvc) {
        Some(node) => {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            get_listed(&nodes, node)
                .await
                .ctx(|| format!("reading node {node}"))?
        }
        None if delayed => {
            set_claim_phase(ctx, pvc, "Pending", None).await?;
            let message = "waiting for first consumer to be created before binding";
            ctx.record_once(pvc, EventType::Normal, "WaitForFirstConsumer", message)
                .await;
            return Ok(Action::requeue(SYNC_PERIOD));
        }
        None => None,
    };
    let all = volumes
        .list(&ListParams::default())
        .await
        .ctx(|| "listing volumes".to_owned())?;
    if let Some(pv) = storage::best_match(&all.items, pvc, node.as_ref()) {
        tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv.name_any(), "binding");
        let pv = bind_volume(ctx, pv, pvc).await?;
        mark_claim_bound(ctx, pvc, &pv).await?;
        return Ok(Action::requeue(retry_soon()));
    }
    set_claim_phase(ctx, pvc, "Pending", None).await?;
    match class {
        None if !class_name.is_empty() => {
            let message = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
            ctx.record_once(pvc, EventType::Warning, "ProvisioningFailed", &message)
                .await;
        }
        Some(class) if storage::provisions(&class) => {
            ask_provisioner(ctx, pvc, &class.provisioner).await?;
            let message = format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                class.provisioner
            );
            ctx.record_once(pvc, EventType::Normal, "ExternalProvisioning", &message)
                .await;
        }
        Some(_) => {
            let message = "no persistent volumes available for this claim";
            ctx.record_once(pvc, EventType::Normal, "FailedBinding", message)
                .await;
        }
        None => {
            let message =
                "no persistent volumes available for this claim and no storage class is set";
            ctx.record_once(pvc, EventType::Normal, "FailedBinding", message)
                .await;
        }
    }
    Ok(Action::requeue(SYNC_PERIOD))
}

/// The default StorageClass (the newest, if several are marked), as the apiserver's
/// `DefaultStorageClass` admission picks it.
async fn default_class(ctx: &Ctx) -> Result<Option<String>> {
    let classes = Api::<StorageClass>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .ctx(|| "listing storage classes".to_owned())?;
    Ok(classes
        .items
        .iter()
        .filter(|c| storage::is_default(c))
        .max_by_key(|c| (c.metadata.creation_timestamp.clone(), c.name_any()))
        .map(|c| c.name_any()))
}

/// After one half of a binding is written, the other follows at once (the watch brings the
/// change too; this only bounds the wait).
fn retry_soon() -> Duration {
    Duration::from_millis(200)
}

/// Writes the volume's half of a binding: `claimRef` to the claim (with its UID), marked as
/// the controller's doing unless the claim was already reserved by its maker. Returns the
/// volume as written.
async fn bind_volume(
    ctx: &Ctx,
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
) -> Result<PersistentVolume> {
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let mut updated = pv.clone();
    let spec = updated.spec.get_or_insert_with(Default::default);
    let prebound = spec.claim_ref.is_some();
    spec.claim_ref = Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: pvc.metadata.namespace.clone(),
        name: pvc.metadata.name.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        ..Default::default()
    });
    if !prebound {
        updated
            .annotations_mut()
            .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    }
    if updated == *pv {
        return Ok(updated);
    }
    volumes
        .replace(&pv.name_any(), &PostParams::default(), &updated)
        .await
        .ctx(|| format!("binding volume {}", pv.name_any()))
}

/// Writes the claim's half of a binding (`volumeName` and the binder's annotations), then its
/// status: `Bound`, with the volume's access modes and capacity, and the volume's status.
async fn mark_claim_bound(
    ctx: &Ctx,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<()> {
    let ns = pvc.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let mut updated = pvc.clone();
    updated
        .spec
        .get_or_insert_with(Default::default)
        .volume_name = Some(pv.name_any());
    let annotations = updated.annotations_mut();
    annotations.insert(BIND_COMPLETED.into(), "yes".into());
    if pv
        .annotations()
        .get(BOUND_BY_CONTROLLER)
        .is_some_and(|v| v == "yes")
    {
        annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
    }
    let pvc = if updated == *pvc {
        updated
    } else {
        claims
            .replace(&pvc.name_any(), &PostParams::default(), &updated)
            .await
            .ctx(|| format!("binding claim {ns}/{}", pvc.name_any()))?
    };
    let spec = pv.spec.clone().unwrap_or_default();
    let wanted = json!({
        "phase": "Bound",
        "accessModes": spec.access_modes,
        "capacity": spec.capacity,
    });
    let status = pvc.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound")
        || status.access_modes != spec.access_modes
        || status.capacity != spec.capacity
    {
        patch_status(&claims, &ns, &pvc.name_any(), wanted).await?;
    }
    if phase_of_volume(pv) != Some("Bound") {
        patch_status(
            &Api::<PersistentVolume>::all(ctx.client.clone()),
            "",
            &pv.name_any(),
            json!({"phase": "Bound", "message": null, "reason": null}),
        )
        .await?;
    }
    Ok(())
}

/// Asks the class's provisioner for a volume: the annotations it watches claims for.
async fn ask_provisioner(ctx: &Ctx, pvc: &PersistentVolumeClaim, provisioner: &str) -> Result<()> {
    let asked = |key: &str| pvc.annotations().get(key).is_some_and(|p| p == provisioner);
    if asked(STORAGE_PROVISIONER) && asked(BETA_STORAGE_PROVISIONER) {
        return Ok(());
    }
    let ns = pvc.namespace().unwrap_or_default();
    let mut updated = pvc.clone();
    let annotations = updated.annotations_mut();
    annotations.insert(STORAGE_PROVISIONER.into(), provisioner.into());
    annotations.insert(BETA_STORAGE_PROVISIONER.into(), provisioner.into());
    Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
        .replace(&pvc.name_any(), &PostParams::default(), &updated)
        .await
        .ctx(|| {
            format!(
                "asking {provisioner} for a volume for {ns}/{}",
                pvc.name_any()
            )
        })?;
    Ok(())
}

async fn set_claim_phase(
    ctx: &Ctx,
    pvc: &PersistentVolumeClaim,
    phase: &str,
    message: Option<&str>,
) -> Result<()> {
    if phase_of_claim(pvc) == Some(phase) {
        return Ok(());
    }
    let ns = pvc.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    patch_status(
        &claims,
        &ns,
        &pvc.name_any(),
        json!({"phase": phase, "message": message}),
    )
    .await?;
    Ok(())
}

async fn set_volume_phase(
    ctx: &Ctx,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<()> {
    let current = pv.status.as_ref();
    if current.and_then(|s| s.phase.as_deref()) == Some(phase)
        && current.and_then(|s| s.message.as_deref()) == message
    {
        return Ok(());
    }
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    patch_status(
        &volumes,
        "",
        &pv.name_any(),
        json!({"phase": phase, "message": message}),
    )
    .await?;
    Ok(())
}

async fn sync_volume(pv: &PersistentVolume, ctx: &Ctx) -> Result<Action> {
    let name = pv.name_any();
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        set_volume_phase(ctx, pv, "Available", None).await?;
        return Ok(Action::requeue(SYNC_PERIOD * 20));
    };
    let ns = claim_ref.namespace.clone().unwrap_or_default();
    let claim_name = claim_ref.name.clone().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claim = get_listed(&claims, &claim_name)
        .await
        .ctx(|| format!("reading claim {ns}/{claim_name}"))?;
    let reserved_uid = claim_ref.uid.as_deref().filter(|u| !u.is_empty());
    let claim =
        claim.filter(|c| reserved_uid.is_none_or(|uid| c.metadata.uid.as_deref() == Some(uid)));
    match claim {
        // Reserved for a claim not made yet (by an administrator or a provisioner).
        None if reserved_uid.is_none() => {
            set_volume_phase(ctx, pv, "Available", None).await?;
            Ok(Action::requeue(SYNC_PERIOD))
        }
        None => release(ctx, pv).await,
        Some(claim) => match storage::bound_volume(&claim) {
            Some(v) if v == name => {
                set_volume_phase(ctx, pv, "Bound", None).await?;
                Ok(Action::requeue(SYNC_PERIOD * 20))
            }
            // The claim's half is not written yet: the claim's sync writes it.
            None => {
                if phase_of_volume(pv).is_none_or(|p| p == "Pending") {
                    set_volume_phase(ctx, pv, "Available", None).await?;
                }
                Ok(Action::requeue(SYNC_PERIOD))
            }
            // The claim went to another volume: give back what this controller reserved.
            Some(_) => {
                if pv
                    .annotations()
                    .get(BOUND_BY_CONTROLLER)
                    .is_some_and(|v| v == "yes")
                {
                    unbind(ctx, pv).await?;
                    Ok(Action::requeue(retry_soon()))
                } else {
                    release(ctx, pv).await
                }
            }
        },
    }
}

/// Clears a reservation this controller made.
async fn unbind(ctx: &Ctx, pv: &PersistentVolume) -> Result<()> {
    let mut updated = pv.clone();
    if let Some(spec) = updated.spec.as_mut() {
        spec.claim_ref = None;
    }
    updated.annotations_mut().remove(BOUND_BY_CONTROLLER);
    Api::<PersistentVolume>::all(ctx.client.clone())
        .replace(&pv.name_any(), &PostParams::default(), &updated)
        .await
        .ctx(|| format!("unbinding volume {}", pv.name_any()))?;
    Ok(())
}

/// The claim is gone: `Released`, then what the reclaim policy says.
async fn release(ctx: &Ctx, pv: &PersistentVolume) -> Result<Action> {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let provisioned_by = pv.annotations().get(storage::PROVISIONED_BY).cloned();
    match (policy, provisioned_by) {
        ("Retain", _) => set_volume_phase(ctx, pv, "Released", None).await?,
        // Its provisioner removes the volume's storage and then the volume.
        ("Delete", Some(_)) => set_volume_phase(ctx, pv, "Released", None).await?,
        ("Delete", None) => {
            let message = format!(
                "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                pv.name_any()
            );
            set_volume_phase(ctx, pv, "Failed", Some(&message)).await?;
            ctx.record_once(pv, EventType::Warning, "VolumeFailedDelete", &message)
                .await;
        }
        (other, _) => {
            let message = format!("reclaim policy {other} is not supported by ekube");
            set_volume_phase(ctx, pv, "Failed", Some(&message)).await?;
            ctx.record_once(pv, EventType::Warning, "VolumeFailedRecycle", &message)
                .await;
        }
    }
    Ok(Action::requeue(SYNC_PERIOD * 20))
}

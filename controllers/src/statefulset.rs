//! StatefulSet controller: pods with stable names `<set>-<ordinal>` and their own claims.
//!
//! `OrderedReady` creates pods one at a time in ordinal order, each only after the ones below
//! it are Running and Ready, and scales down from the highest ordinal, one pod at a time;
//! `Parallel` creates and deletes without waiting. Each pod gets `<claim>-<set>-<ordinal>`
//! PersistentVolumeClaims from `volumeClaimTemplates` (created before the pod, kept when it
//! goes, unless `persistentVolumeClaimRetentionPolicy` says `Delete`: then the claims are
//! owned by the set, or by a scaled-down pod, and the garbage collector removes them), the
//! `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index` labels, `hostname`
//! and `subdomain` (the governing service).
//!
//! Revisions are the ControllerRevisions `<set>-<template hash>` (see [`crate::history`]),
//! named in each pod's `controller-revision-hash` label and in `status.currentRevision` /
//! `status.updateRevision`; `kubectl rollout history` lists them and `kubectl rollout undo`
//! patches one back. `RollingUpdate` replaces pods whose revision is not the update revision
//! from the highest ordinal down to `partition`, one at a time and only while every pod is
//! Running and Ready; a pod below the partition that must be recreated gets the current
//! revision's template, as upstream's does. `OnDelete` leaves replacing to the user.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::deployment::template_hash;
use crate::events::{EventType, Recorder};
use crate::history::{self, Owned, Synced, revision_name, template_of};
use crate::informer::Changes;
use crate::replicaset::claim_pods;
use crate::runner::{self, Ctx};
use crate::util::{controller_ref, deleting, pod_available, pod_ready, pod_terminal};
use crate::{Context as _, Result};

pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
pub use crate::history::REVISION_HASH;

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    pods: Changes<Pod>,
) -> Result<(), String> {
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_shared_stream(pods)
    // A revision deleted or edited behind the controller's back is written again.
    .owns(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    );
    let ctx = Ctx { client, recorder };
    runner::drive(
        "statefulset",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// The ordinal of a pod named `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

fn running_and_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod_ready(p)
        && !deleting(p)
}

/// The name of claim template `claim` for ordinal `ord`.
pub fn claim_name(claim: &str, set: &str, ord: i32) -> String {
    format!("{claim}-{set}-{ord}")
}

/// What one pass decided to do, before any API call (kept apart so it can be tested).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<i32>,
    pub delete: Vec<i32>,
}

/// Decides creations and deletions for `replicas` pods from `start`, given the pods present by
/// ordinal (`(revision, running and ready, terminating, terminal)`).
pub fn plan(
    start: i32,
    replicas: i32,
    ordered: bool,
    pods: &BTreeMap<i32, (String, bool, bool, bool)>,
    update_revision: &str,
    partition: Option<i32>,
) -> Plan {
    let mut plan = Plan::default();
    let end = start + replicas;
    let mut blocked = false;
    for ord in start..end {
        match pods.get(&ord) {
            None => {
                plan.create.push(ord);
                blocked |= ordered;
            }
            Some((_, _, terminating, terminal)) if *terminal && !*terminating => {
                plan.delete.push(ord);
                blocked |= ordered;
            }
            Some((_, ready, terminating, _)) => blocked |= ordered && (*terminating || !*ready),
        }
        if blocked {
            break;
        }
    }
    let condemned: Vec<i32> = pods
        .keys()
        .rev()
        .copied()
        .filter(|o| *o < start || *o >= end)
        .collect();
    if !ordered {
        plan.delete.extend(condemned.iter().filter(|o| !pods[o].2));
    } else if !blocked && plan.create.is_empty() && plan.delete.is_empty() {
        // The highest first, and only once nothing else is in motion.
        let all_steady = condemned.iter().all(|o| !pods[o].2);
        if let (true, Some(top)) = (all_steady, condemned.first()) {
            plan.delete.push(*top);
            return plan;
        }
    }
    // Rolling update: one pod at a time, from the top, while everything else is steady.
    let steady = plan.create.is_empty()
        && plan.delete.is_empty()
        && condemned.is_empty()
        && (start..end).all(|o| {
            pods.get(&o)
                .is_some_and(|(_, ready, terminating, _)| *ready && !*terminating)
        });
    if let (Some(partition), true) = (partition, steady) {
        for ord in (start..end).rev().take_while(|o| *o >= start + partition) {
            if pods[&ord].0 != update_revision {
                plan.delete.push(ord);
                break;
            }
        }
    }
    plan
}

#[tracing::instrument(skip_all, fields(statefulset = %sts.name_any()))]
async fn reconcile(sts: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let ns = sts.namespace().unwrap_or_default();
    let name = sts.name_any();
    let spec = sts.spec.clone();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let claimed = claim_pods(
        &ctx.client,
        controller_ref(&*sts),
        &ns,
        &spec.selector,
        deleting(&*sts),
    )
    .await?;
    let status = sts.status.clone().unwrap_or_default();
    let hash = template_hash(&spec.template, status.collision_count.filter(|c| *c > 0));
    let update_revision = revision_name(&name, &hash);
    let revision_of = |p: &Pod| p.labels().get(REVISION_HASH).cloned().unwrap_or_default();
    // The revisions the set keeps, once they are written.
    let mut revisions = Vec::new();
    if !deleting(&*sts) {
        let mut live: BTreeSet<String> = claimed.pods.iter().map(revision_of).collect();
        live.extend(status.current_revision.clone());
        let owned = Owned {
            selector: &spec.selector,
            template: &spec.template,
            hash: &hash,
            limit: spec.revision_history_limit,
            live,
        };
        match history::sync(&ctx.client, &*sts, owned).await? {
            Synced::Current(kept) => revisions = kept,
            Synced::Collision => {
                history::bump_collision_count(&ctx.client, &*sts, status.collision_count).await?;
                return Ok(Action::await_change());
            }
        }
    }
    let by_ord: BTreeMap<i32, &Pod> = claimed
        .pods
        .iter()
        .filter_map(|p| Some((ordinal(&name, &p.name_any())?, p)))
        .collect();
    let facts: BTreeMap<i32, (String, bool, bool, bool)> = by_ord
        .iter()
        .map(|(o, p)| {
            (
                *o,
                (
                    revision_of(p),
                    running_and_ready(p),
                    deleting(*p),
                    pod_terminal(p),
                ),
            )
        })
        .collect();
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let partition = match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
        "RollingUpdate" => Some(
            strategy
                .rolling_update
                .and_then(|r| r.partition)
                .unwrap_or(0)
                .max(0),
        ),
        _ => None,
    };
    let plan = if deleting(&*sts) {
        Plan::default()
    } else {
        plan(
            start,
            replicas,
            ordered,
            &facts,
            &update_revision,
            partition,
        )
    };

    // Before any pod goes: a condemned pod must own the claims the policy deletes with it.
    if !deleting(&*sts) {
        retain_claims(&ctx, &sts, &by_ord, start..start + replicas).await?;
    }
    for ord in &plan.delete {
        let pod_name = format!("{name}-{ord}");
        match pods_api.delete(&pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                let msg = format!("delete Pod {pod_name} in StatefulSet {name} successful");
                ctx.recorder
                    .record(&*sts, EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                let msg = format!("delete Pod {pod_name} in StatefulSet {name} failed error: {e}");
                ctx.recorder
                    .record(&*sts, EventType::Warning, "FailedDelete", &msg)
                    .await;
            }
        }
    }
    // Below the partition, pods are made from the current revision (while it is kept).
    let current = status
        .current_revision
        .as_ref()
        .filter(|c| **c != update_revision)
        .and_then(|c| {
            let revision = revisions
                .iter()
                .find(|r| r.metadata.name.as_ref() == Some(c))?;
            Some((c.clone(), template_of(revision)?))
        });
    for ord in &plan.create {
        let (revision, template) = match &current {
            Some((rev, template)) if partition.is_some_and(|p| *ord < start + p) => {
                (rev.as_str(), template)
            }
            _ => (update_revision.as_str(), &spec.template),
        };
        create_pod(&ctx, &sts, &pods_api, *ord, revision, template).await?;
    }

    // Status, as counted before this pass's changes (their watch events requeue).
    let live: Vec<&Pod> = by_ord.values().copied().filter(|p| !deleting(*p)).collect();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let ready = live.iter().filter(|p| running_and_ready(p)).count() as i32;
    let available = live
        .iter()
        .filter(|p| running_and_ready(p) && pod_available(p, min_ready, now))
        .count() as i32;
    let updated = live
        .iter()
        .filter(|p| revision_of(p) == update_revision)
        .count() as i32;
    let mut current_revision = status
        .current_revision
        .clone()
        .unwrap_or_else(|| update_revision.clone());
    let mut current = live
        .iter()
        .filter(|p| revision_of(p) == current_revision)
        .count() as i32;
    if updated == replicas && ready == replicas && live.len() as i32 == replicas {
        current_revision = update_revision.clone();
        current = updated;
    }
    let new_status = json!({
        "observedGeneration": sts.metadata.generation,
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": available,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": status.collision_count.unwrap_or(0),
    });
    let prev = serde_json::to_value(&status).unwrap_or_default();
    let differs = new_status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| prev.get(k).cloned().unwrap_or(json!(0)) != *v);
    if differs {
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        if !crate::util::patch_status(&api, &ns, &name, new_status).await? {
            return Ok(Action::await_change());
        }
    }
    Ok(crate::util::requeue_for_availability(
        ready, available, min_ready,
    ))
}

/// Gives each pod's claims the owners `persistentVolumeClaimRetentionPolicy` asks, as
/// upstream's controller does: the set when `whenDeleted: Delete` (the garbage collector
/// deletes them with the set), and instead the pod when `whenScaled: Delete` and its ordinal is
/// outside `kept` (they go with the scaled-down pod). `Retain` takes those owners away again.
async fn retain_claims(
    ctx: &Ctx,
    sts: &StatefulSet,
    pods: &BTreeMap<i32, &Pod>,
    kept: std::ops::Range<i32>,
) -> Result<()> {
    let policy = sts
        .spec
        .persistent_volume_claim_retention_policy
        .clone()
        .unwrap_or_default();
    let deletes = |p: Option<&String>| p.is_some_and(|p| p == "Delete");
    let (when_deleted, when_scaled) = (
        deletes(policy.when_deleted.as_ref()),
        deletes(policy.when_scaled.as_ref()),
    );
    let ns = sts.namespace().unwrap_or_default();
    let set = sts.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for template in sts.spec.volume_claim_templates.iter().flatten() {
        let claim = template.metadata.name.clone().unwrap_or_default();
        for (ord, pod) in pods {
            let name = claim_name(&claim, &set, *ord);
            let Some(current) = crate::util::get_listed(&claims, &name)
                .await
                .ctx(|| format!("reading claim {ns}/{name}"))?
            else {
                continue;
            };
            let uids = [sts.uid(), pod.uid()];
            let mut owners: Vec<_> = current
                .owner_references()
                .iter()
                .filter(|r| !uids.contains(&Some(r.uid.clone())))
                .cloned()
                .collect();
            // A scaled-down pod's claims have the pod as their only owner (as upstream's
            // controller does): the garbage collector deletes a dependent only once every
            // owner is gone, and the set stays.
            let scaled_down = when_scaled && !kept.contains(ord);
            if when_deleted && !scaled_down {
                owners.push(owner_of(sts));
            }
            if scaled_down {
                owners.push(owner_of(*pod));
            }
            if owners.as_slice() == current.owner_references() {
                continue;
            }
            let mut updated = current.clone();
            updated.metadata.owner_references = Some(owners);
            claims
                .replace(&name, &PostParams::default(), &updated)
                .await
                .ctx(|| format!("setting the owners of claim {ns}/{name}"))?;
        }
    }
    Ok(())
}

/// A plain (not controller) owner reference to `obj`.
fn owner_of<K: kube::Resource<DynamicType = ()>>(
    obj: &K,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        controller: None,
        block_owner_deletion: None,
        ..controller_ref(obj)
    }
}

async fn create_pod(
    ctx: &Ctx,
    sts: &StatefulSet,
    api: &Api<Pod>,
    ord: i32,
    revision: &str,
    template: &PodTemplateSpec,
) -> Result<()> {
    let ns = sts.namespace().unwrap_or_default();
    let set = sts.name_any();
    let spec = sts.spec.clone();
    let pod_name = format!("{set}-{ord}");
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    // Claims first: a pod must never start without its volumes.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for template in spec.volume_claim_templates.iter().flatten() {
        let claim = template.metadata.name.clone().unwrap_or_default();
        let claim_name = claim_name(&claim, &set, ord);
        let mut labels = template.metadata.labels.clone().unwrap_or_default();
        labels.extend(selector_labels.clone());
        let pvc = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(claim_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: template.metadata.annotations.clone(),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        match claims.create(&PostParams::default(), &pvc).await {
            Ok(_) => {
                let msg = format!(
                    "create Claim {claim_name} Pod {pod_name} in StatefulSet {set} success"
                );
                ctx.recorder
                    .record(sts, EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                let msg = format!(
                    "create Claim {claim_name} for Pod {pod_name} in StatefulSet {set} failed error: {e}"
                );
                ctx.recorder
                    .record(sts, EventType::Warning, "FailedCreate", &msg)
                    .await;
                return Err(e).ctx(|| format!("creating claim {ns}/{claim_name}"));
            }
        }
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != claim);
        volumes.push(Volume {
            name: claim,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: None,
            }),
            ..Default::default()
        });
    }
    pod_spec.hostname = Some(pod_name.clone());
    if let Some(svc) = spec.service_name.as_ref().filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(svc.clone());
    }
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.clone().unwrap_or_default();
    labels.insert(POD_NAME.into(), pod_name.clone());
    labels.insert(POD_INDEX.into(), ord.to_string());
    labels.insert(REVISION_HASH.into(), revision.into());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: tmeta.annotations.clone(),
            owner_references: Some(vec![controller_ref(sts)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    };
    match api.create(&PostParams::default(), &pod).await {
        Ok(_) => {
            let msg = format!("create Pod {pod_name} in StatefulSet {set} successful");
            ctx.recorder
                .record(sts, EventType::Normal, "SuccessfulCreate", &msg)
                .await;
        }
        // The old pod of that name is still terminating: the next pass retries.
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            let msg = format!("create Pod {pod_name} in StatefulSet {set} failed error: {e}");
            ctx.recorder
                .record(sts, EventType::Warning, "FailedCreate", &msg)
                .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(list: &[(i32, &str, bool, bool)]) -> BTreeMap<i32, (String, bool, bool, bool)> {
        list.iter()
            .map(|(o, rev, ready, terminating)| {
                (*o, (rev.to_string(), *ready, *terminating, false))
            })
            .collect()
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(ordinal("web", "web-a-1"), None);
    }

    #[test]
    fn ordered_creation_waits_for_readiness() {
        let p = plan(0, 3, true, &pods(&[]), "r1", Some(0));
        assert_eq!(
            p,
            Plan {
                create: vec![0],
                delete: vec![]
            }
        );
        let p = plan(0, 3, true, &pods(&[(0, "r1", false, false)]), "r1", Some(0));
        assert_eq!(p, Plan::default(), "web-1 waits for web-0 to be ready");
        let p = plan(0, 3, true, &pods(&[(0, "r1", true, false)]), "r1", Some(0));
        assert_eq!(p.create, vec![1]);
        let p = plan(0, 3, false, &pods(&[]), "r1", Some(0));
        assert_eq!(p.create, vec![0, 1, 2], "Parallel creates all at once");
    }

    #[test]
    fn scale_down_from_the_top_one_at_a_time() {
        let all = pods(&[
            (0, "r1", true, false),
            (1, "r1", true, false),
            (2, "r1", true, false),
            (3, "r1", true, false),
        ]);
        assert_eq!(plan(0, 2, true, &all, "r1", Some(0)).delete, vec![3]);
        let mut terminating = all.clone();
        terminating.get_mut(&3).unwrap().2 = true;
        assert_eq!(
            plan(0, 2, true, &terminating, "r1", Some(0)).delete,
            Vec::<i32>::new()
        );
        assert_eq!(plan(0, 2, false, &all, "r1", Some(0)).delete, vec![3, 2]);
    }

    #[test]
    fn rolling_update_from_the_top_down_to_the_partition() {
        let all = pods(&[
            (0, "r1", true, false),
            (1, "r1", true, false),
            (2, "r1", true, false),
        ]);
        assert_eq!(plan(0, 3, true, &all, "r2", Some(0)).delete, vec![2]);
        let mut some = all.clone();
        some.get_mut(&2).unwrap().0 = "r2".into();
        assert_eq!(plan(0, 3, true, &some, "r2", Some(0)).delete, vec![1]);
        assert_eq!(
            plan(0, 3, true, &some, "r2", Some(2)).delete,
            Vec::<i32>::new(),
            "partition 2 stops at ordinal 2"
        );
        assert_eq!(
            plan(0, 3, true, &all, "r2", None).delete,
            Vec::<i32>::new(),
            "OnDelete"
        );
        let mut unready = all.clone();
        unready.get_mut(&0).unwrap().1 = false;
        assert_eq!(
            plan(0, 3, false, &unready, "r2", Some(0)).delete,
            Vec::<i32>::new()
        );
    }
}

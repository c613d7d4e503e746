//! ReplicaSet controller: keeps `spec.replicas` pods matching the selector, owned by the set.
//!
//! Pods the set's selector matches and nobody controls are adopted; pods it controls that no
//! longer match are released. Surplus pods are deleted in the order upstream prefers
//! (unscheduled, then pending, then not ready, then the most recently ready, then the newest).
//! Missing pods are created as `<rs>-<5 random>` via `generateName`.
//! [`sync_replicas`] is the whole loop, shared with [`crate::replicationcontroller`].

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::events::Recorder;
use crate::informer::Changes;
use crate::runner::{self, Ctx};
use crate::util::{
    controller_of, controller_ref, deleting, labels_of, pod_active, pod_available, pod_ready,
    record_pod_create, record_pod_delete,
};
use crate::{Context as _, Result};

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    pods: Changes<Pod>,
) -> Result<(), String> {
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_shared_stream(pods);
    let ctx = Ctx { client, recorder };
    runner::drive(
        "replicaset",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// What the pods of a controller look like after adoption and release.
pub(crate) struct Claimed {
    pub pods: Vec<Pod>,
}

/// Adopts orphans matching `selector` and releases owned pods that no longer match.
pub(crate) async fn claim_pods(
    client: &kube::Client,
    owner: OwnerReference,
    ns: &str,
    selector: &LabelSelector,
    owner_deleting: bool,
) -> Result<Claimed> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let all = api
        .list(&ListParams::default())
        .await
        .ctx(|| format!("listing pods in {ns}"))?;
    let sel = ekube_api::selector::LabelSelector::from_label_selector(selector);
    let mut pods = Vec::new();
    for mut pod in all.items {
        let matches = !sel.is_empty() && sel.matches(&labels_of(&pod));
        match controller_of(&pod) {
            Some(r) if r.uid == owner.uid => {
                if matches {
                    pods.push(pod);
                } else {
                    // Release: drop our ownerReference, keep the others.
                    let keep: Vec<OwnerReference> = pod
                        .owner_references()
                        .iter()
                        .filter(|r| r.uid != owner.uid)
                        .cloned()
                        .collect();
                    let name = pod.name_any();
                    let patch = json!({"metadata": {"ownerReferences": keep, "uid": pod.uid()}});
                    let _ = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await;
                }
            }
            None if matches && !owner_deleting && !deleting(&pod) => {
                let mut refs: Vec<OwnerReference> = pod.owner_references().to_vec();
                refs.push(owner.clone());
                let name = pod.name_any();
                let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}});
                if let Ok(p) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    pod = p;
                    pods.push(pod);
                }
            }
            _ => {}
        }
    }
    Ok(Claimed { pods })
}

/// Order of deletion preference: earlier in the returned order goes first.
pub fn deletion_order(pods: &mut [&Pod]) {
    fn phase_rank(p: &Pod) -> u8 {
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") => 0,
            Some("Running") => 2,
            _ => 1,
        }
    }
    pods.sort_by_key(|p| {
        let scheduled = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty());
        let ready = pod_ready(p);
        let ready_since = crate::util::ready_since(p)
            .map(|t| t.as_second())
            .unwrap_or(0);
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0);
        (
            scheduled,
            phase_rank(p),
            ready,
            Reverse(ready_since),
            Reverse(created),
        )
    });
}

#[tracing::instrument(skip_all, fields(rs = %rs.name_any()))]
async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let spec = &rs.spec;
    let wanted = Replicas {
        selector: spec.selector.clone(),
        replicas: spec.replicas,
        template: spec.template.as_ref(),
        min_ready_seconds: spec.min_ready_seconds,
        status: serde_json::to_value(rs.status.clone().unwrap_or_default()).unwrap_or_default(),
        status_fields: &[
            "replicas",
            "fullyLabeledReplicas",
            "readyReplicas",
            "availableReplicas",
            "observedGeneration",
            "terminatingReplicas",
        ],
    };
    sync_replicas(&ctx, &*rs, wanted).await
}

/// What a controller of interchangeable pods asks for, whatever its kind: a ReplicaSet and a
/// ReplicationController differ only in the shape of their selector and status.
pub(crate) struct Replicas<'a> {
    pub selector: LabelSelector,
    /// `spec.replicas`; unset means 1.
    pub replicas: Option<i32>,
    pub template: Option<&'a PodTemplateSpec>,
    pub min_ready_seconds: Option<i32>,
    /// `.status` as last reported, in its JSON form.
    pub status: serde_json::Value,
    /// The status fields the kind has: only these are written and compared.
    pub status_fields: &'static [&'static str],
}

/// Claims the pods `owner` selects, creates or deletes pods until `wanted.replicas` are
/// active, and reports the counts in `owner`'s status.
pub(crate) async fn sync_replicas<K>(ctx: &Ctx, owner: &K, wanted: Replicas<'_>) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let ns = owner.namespace().unwrap_or_default();
    let name = owner.name_any();
    let owner_ref = controller_ref(owner);
    let claimed = claim_pods(
        &ctx.client,
        owner_ref.clone(),
        &ns,
        &wanted.selector,
        deleting(owner),
    )
    .await?;
    let active: Vec<&Pod> = claimed.pods.iter().filter(|p| pod_active(p)).collect();
    let want = wanted.replicas.unwrap_or(1).max(0) as usize;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if !deleting(owner) {
        if active.len() < want {
            let template = wanted.template.cloned().unwrap_or_default();
            let tmeta = template.metadata.clone().unwrap_or_default();
            let pod = Pod {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{name}-")),
                    namespace: Some(ns.clone()),
                    labels: tmeta.labels.clone(),
                    annotations: tmeta.annotations.clone(),
                    finalizers: tmeta.finalizers.clone(),
                    owner_references: Some(vec![owner_ref.clone()]),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            };
            let pp = PostParams::default();
            let creates = (0..want - active.len()).map(|_| api.create(&pp, &pod));
            for result in futures::future::join_all(creates).await {
                record_pod_create(&ctx.recorder, owner, &result).await;
            }
        } else if active.len() > want {
            let mut victims = active.clone();
            deletion_order(&mut victims);
            let victims = &victims[..active.len() - want];
            let deletes = victims.iter().map(|p| {
                let api = api.clone();
                let pod_name = p.name_any();
                async move {
                    (
                        api.delete(&pod_name, &DeleteParams::default()).await,
                        pod_name,
                    )
                }
            });
            for (result, pod_name) in futures::future::join_all(deletes).await {
                record_pod_delete(&ctx.recorder, owner, &pod_name, &result).await;
            }
        }
    }
    // Status, as counted before this round's creates and deletes (their watch events requeue).
    let min_ready = wanted.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let template_labels = wanted
        .template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let l = labels_of(**p);
            template_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pod_available(p, min_ready, now))
        .count();
    let terminating = claimed.pods.iter().filter(|p| deleting(*p)).count();
    let counted = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "terminatingReplicas": terminating,
        "observedGeneration": owner.meta().generation,
    });
    let status: serde_json::Map<String, serde_json::Value> = wanted
        .status_fields
        .iter()
        .map(|k| (k.to_string(), counted[*k].clone()))
        .collect();
    let differs = wanted.status_fields.iter().any(|k| {
        wanted.status.get(*k).cloned().unwrap_or(json!(0))
            != status.get(*k).cloned().unwrap_or(json!(0))
    });
    if differs {
        let owner_api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        if !crate::util::patch_status(&owner_api, &ns, &name, status.into()).await? {
            return Ok(Action::await_change());
        }
    }
    Ok(crate::util::requeue_for_availability(
        ready as i32,
        available as i32,
        min_ready,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [], "nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn deletes_unscheduled_then_not_ready_then_newest() {
        let pods = [
            pod(
                "ready-old",
                Some("n"),
                "Running",
                true,
                "2024-01-01T00:00:00Z",
            ),
            pod(
                "ready-new",
                Some("n"),
                "Running",
                true,
                "2024-01-02T00:00:00Z",
            ),
            pod(
                "unready",
                Some("n"),
                "Running",
                false,
                "2024-01-01T00:00:00Z",
            ),
            pod(
                "unscheduled",
                None,
                "Pending",
                false,
                "2024-01-01T00:00:00Z",
            ),
        ];
        let mut refs: Vec<&Pod> = pods.iter().collect();
        deletion_order(&mut refs);
        let names: Vec<String> = refs.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["unscheduled", "unready", "ready-new", "ready-old"]);
    }
}

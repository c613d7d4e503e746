//! Deployment controller: rolls a Deployment's pod template out through ReplicaSets.
//!
//! Each distinct template gets one ReplicaSet named `<deployment>-<pod-template-hash>`, the
//! hash also labelling its selector and pods. `RollingUpdate` scales the new set up while the
//! total stays within `replicas + maxSurge` and scales old sets down while at least
//! `replicas - maxUnavailable` pods stay available; `Recreate` empties the old sets first.
//! Revisions (`deployment.kubernetes.io/revision`) number the sets; going back to an older
//! template (what `kubectl rollout undo` patches in) reuses that set and gives it the next
//! revision. Old empty sets beyond `revisionHistoryLimit` are deleted.
//!
//! Availability of a set is read from its status only when that status has observed the set's
//! current spec, and is capped by its `spec.replicas`; a set whose status lags is waited for,
//! so a lagging status never lets a rollout exceed its limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::events::{EventType, Recorder};
use crate::runner::{self, Ctx};
use crate::util::{controller_of, controller_ref, deleting, labels_of, now};
use crate::{Context as _, Result};

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

pub async fn run(client: kube::Client, recorder: Recorder) -> Result<(), String> {
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let ctx = Ctx { client, recorder };
    runner::drive(
        "deployment",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// The template without the hash label, as JSON, for comparing and hashing.
fn normalized(template: &PodTemplateSpec) -> Value {
    let mut v = serde_json::to_value(template).unwrap_or_default();
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            v["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    v
}

/// The `pod-template-hash` of a template: FNV-1a (32 bit) of its canonical JSON and the
/// collision count, spelled with upstream's safe alphabet (no vowels, no look-alike digits).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x01000193);
        }
    };
    feed(normalized(template).to_string().as_bytes());
    if let Some(c) = collision_count {
        feed(&c.to_le_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(0)
}

/// Whether the set's status describes its current spec.
fn status_fresh(rs: &ReplicaSet) -> bool {
    let observed = rs
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    observed >= rs.metadata.generation.unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
        .min(spec_replicas(rs))
}

fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

/// Resolves an int-or-percent against `total`, rounding up (surge) or down (unavailable).
pub fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool, default: &str) -> i32 {
    let v = value
        .cloned()
        .unwrap_or(IntOrString::String(default.into()));
    match v {
        IntOrString::Int(n) => n,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = pct * i64::from(total);
            (if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            }) as i32
        }
    }
}

/// `(maxSurge, maxUnavailable)` of a rolling Deployment, as upstream resolves them.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.clone();
    let total = spec.replicas.unwrap_or(1);
    let ru = spec.strategy.and_then(|s| s.rolling_update);
    let surge = resolve(
        ru.as_ref().and_then(|r| r.max_surge.as_ref()),
        total,
        true,
        "25%",
    );
    let unavailable = resolve(
        ru.as_ref().and_then(|r| r.max_unavailable.as_ref()),
        total,
        false,
        "25%",
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

fn with_label(map: Option<BTreeMap<String, String>>, hash: &str) -> BTreeMap<String, String> {
    let mut m = map.unwrap_or_default();
    m.insert(HASH_LABEL.into(), hash.into());
    m
}

/// Annotations a Deployment passes on to its ReplicaSets.
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.annotations()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                REVISION
                    | DESIRED_REPLICAS
                    | MAX_REPLICAS
                    | "kubectl.kubernetes.io/last-applied-configuration"
            ) && !k.starts_with("deployment.kubernetes.io/revision-history")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

struct Sync<'a> {
    ctx: &'a Ctx,
    d: &'a Deployment,
    api: Api<ReplicaSet>,
    max_total: i32,
}

impl Sync<'_> {
    /// Sets a set's `spec.replicas` and records the ScalingReplicaSet event.
    async fn scale(&self, rs: &mut ReplicaSet, to: i32) -> Result<()> {
        let from = spec_replicas(rs);
        let desired = self.d.spec.replicas.unwrap_or(1).to_string();
        let max = self.max_total.to_string();
        let annotations_ok = rs.annotations().get(DESIRED_REPLICAS) == Some(&desired)
            && rs.annotations().get(MAX_REPLICAS) == Some(&max);
        if from == to && annotations_ok {
            return Ok(());
        }
        let name = rs.name_any();
        let patch = json!({
            "metadata": {"annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}},
            "spec": {"replicas": to},
        });
        *rs = self
            .api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .ctx(|| format!("scaling replicaset {name} to {to}"))?;
        if from != to {
            let dir = if to > from { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {name} from {from} to {to}");
            self.ctx
                .recorder
                .record(self.d, EventType::Normal, "ScalingReplicaSet", &msg)
                .await;
        }
        Ok(())
    }
}

#[tracing::instrument(skip_all, fields(deployment = %d.name_any()))]
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action> {
    if deleting(&*d) {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let spec = d.spec.clone();
    let total = spec.replicas.unwrap_or(1);
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = controller_ref(&*d);
    let mut sets = claim_sets(&api, &owner, &spec.selector).await?;
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision);
    let new_pos = sets
        .iter()
        .position(|rs| rs.labels().get(HASH_LABEL) == Some(&hash))
        .or_else(|| {
            sets.iter().position(|rs| {
                rs.spec
                    .template
                    .as_ref()
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template))
            })
        });
    let mut new_rs = new_pos.map(|i| sets.remove(i));
    let mut old = sets;
    old.sort_by_key(|rs| {
        (
            revision(rs),
            rs.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
        )
    });
    let max_old_revision = old.iter().map(revision).max().unwrap_or(0);
    let (surge, unavailable) = match spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) {
        Some("Recreate") => (0, total),
        _ => surge_and_unavailable(&d),
    };
    let sync = Sync {
        ctx: &ctx,
        d: &d,
        api: api.clone(),
        max_total: total + surge,
    };
    let mut created = false;

    if spec.paused != Some(true) {
        // The new set: create it, or give it the newest revision.
        let want_revision = (max_old_revision + 1).to_string();
        match &mut new_rs {
            None => {
                let rs = new_replica_set(&d, &hash, &want_revision, total, total + surge);
                match api.create(&PostParams::default(), &rs).await {
                    Ok(rs) => {
                        created = true;
                        new_rs = Some(rs);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        // Someone else's set already has this name: hash again with a bumped count.
                        let dapi: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
                        let next = collision.unwrap_or(0) + 1;
                        let bump = json!({"collisionCount": next});
                        crate::util::patch_status(&dapi, &ns, &name, bump).await?;
                        return Ok(Action::requeue(Duration::from_millis(200)));
                    }
                    Err(e) => {
                        return Err(e)
                            .ctx(|| format!("creating the new replicaset of {ns}/{name}"));
                    }
                }
            }
            Some(rs) => {
                let mut annotations = copied_annotations(&d);
                if revision(rs) <= max_old_revision {
                    annotations.insert(REVISION.into(), want_revision.clone());
                }
                if annotations
                    .iter()
                    .any(|(k, v)| rs.annotations().get(k) != Some(v))
                {
                    let rs_name = rs.name_any();
                    *rs = api
                        .patch(
                            &rs_name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
                        )
                        .await
                        .ctx(|| format!("updating annotations of replicaset {rs_name}"))?;
                }
            }
        }
        let new_rs = new_rs.as_mut().expect("new replicaset exists");
        let all_fresh = status_fresh(new_rs) && old.iter().all(status_fresh);
        let mut wait = false;
        if matches!(
            spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
            Some("Recreate")
        ) {
            for rs in old.iter_mut() {
                sync.scale(rs, 0).await?;
            }
            let old_gone = old
                .iter()
                .all(|rs| status_fresh(rs) && status_replicas(rs) == 0);
            if old_gone {
                sync.scale(new_rs, total).await?;
            } else {
                wait = true;
            }
        } else {
            // Scale the new set up within maxSurge.
            let current = spec_replicas(new_rs);
            if current > total {
                sync.scale(new_rs, total).await?;
            } else if current < total {
                let all: i32 = spec_replicas(new_rs) + old.iter().map(spec_replicas).sum::<i32>();
                if all < total + surge {
                    let up = (total + surge - all).min(total - current);
                    sync.scale(new_rs, current + up).await?;
                }
            }
            // Scale old sets down while keeping maxUnavailable, on fresh statuses only.
            let old_count: i32 = old.iter().map(spec_replicas).sum();
            if old_count > 0 && !all_fresh {
                wait = true;
            } else if old_count > 0 {
                let all_count = spec_replicas(new_rs) + old_count;
                let min_available = total - unavailable;
                let new_unavailable = spec_replicas(new_rs) - available(new_rs);
                let mut budget = all_count - min_available - new_unavailable;
                let may_scale_down = budget > 0;
                // First the old pods that are not available anyway.
                for rs in old.iter_mut() {
                    if budget <= 0 {
                        break;
                    }
                    let unhealthy = spec_replicas(rs) - available(rs);
                    if unhealthy <= 0 {
                        continue;
                    }
                    let down = unhealthy.min(budget);
                    let to = spec_replicas(rs) - down;
                    sync.scale(rs, to).await?;
                    budget -= down;
                }
                // Then available ones, as long as enough stay available.
                let available_now = available(new_rs) + old.iter().map(available).sum::<i32>();
                let mut down_total = available_now - min_available;
                if may_scale_down {
                    for rs in old.iter_mut() {
                        if down_total <= 0 {
                            break;
                        }
                        let n = spec_replicas(rs);
                        if n == 0 {
                            continue;
                        }
                        let down = n.min(down_total);
                        sync.scale(rs, n - down).await?;
                        down_total -= down;
                    }
                }
            }
        }
        // History: drop the oldest empty sets beyond revisionHistoryLimit.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let empty: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| spec_replicas(rs) == 0 && status_replicas(rs) == 0 && !deleting(*rs))
            .collect();
        if empty.len() > limit && old.iter().all(|rs| spec_replicas(rs) == 0) {
            for rs in &empty[..empty.len() - limit] {
                let _ = api
                    .delete(&rs.name_any(), &DeleteParams::background())
                    .await;
            }
        }
        if wait {
            sync_status(&ctx, &d, Some(&*new_rs), &old, created, unavailable).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }
    sync_status(&ctx, &d, new_rs.as_ref(), &old, created, unavailable).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Lists the sets this Deployment controls, adopting matching orphans and releasing strays.
async fn claim_sets(
    api: &Api<ReplicaSet>,
    owner: &OwnerReference,
    selector: &LabelSelector,
) -> Result<Vec<ReplicaSet>> {
    let list = api
        .list(&ListParams::default())
        .await
        .ctx(|| "listing replicasets".into())?;
    let sel = ekube_api::selector::LabelSelector::from_label_selector(selector);
    let mut out = Vec::new();
    for rs in list.items {
        let matches = !sel.is_empty() && sel.matches(&labels_of(&rs));
        let rs_name = rs.name_any();
        match controller_of(&rs) {
            Some(r) if r.uid == owner.uid => {
                if matches {
                    out.push(rs);
                } else {
                    let keep: Vec<OwnerReference> = rs
                        .owner_references()
                        .iter()
                        .filter(|r| r.uid != owner.uid)
                        .cloned()
                        .collect();
                    let _ = api
                        .patch(
                            &rs_name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"ownerReferences": keep}})),
                        )
                        .await;
                }
            }
            None if matches && !deleting(&rs) => {
                let mut refs = rs.owner_references().to_vec();
                refs.push(owner.clone());
                if let Ok(rs) = api
                    .patch(
                        &rs_name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"ownerReferences": refs}})),
                    )
                    .await
                {
                    out.push(rs);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn new_replica_set(
    d: &Deployment,
    hash: &str,
    revision: &str,
    desired: i32,
    max: i32,
) -> ReplicaSet {
    let spec = d.spec.clone();
    let mut template = spec.template.clone();
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    tmeta.labels = Some(with_label(tmeta.labels.take(), hash));
    let mut selector = spec.selector.clone();
    selector.match_labels = Some(with_label(selector.match_labels.take(), hash));
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), revision.into());
    annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
    annotations.insert(MAX_REPLICAS.into(), max.to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels: Some(with_label(
                spec.template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone()),
                hash,
            )),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    previous: Option<&DeploymentCondition>,
) -> DeploymentCondition {
    let status = Some(if status { "True" } else { "False" }.to_string());
    let now = now();
    let same_status = previous.is_some_and(|p| p.status == status);
    let same_all = same_status
        && previous.is_some_and(|p| {
            p.reason.as_deref() == Some(reason) && p.message.as_deref() == Some(message.as_str())
        });
    DeploymentCondition {
        type_: Some(type_.into()),
        last_transition_time: if same_status {
            previous.and_then(|p| p.last_transition_time.clone())
        } else {
            Some(now.clone())
        },
        last_update_time: if same_all {
            previous.and_then(|p| p.last_update_time.clone())
        } else {
            Some(now)
        },
        reason: Some(reason.into()),
        message: Some(message),
        status,
    }
}

async fn sync_status(
    ctx: &Ctx,
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    created: bool,
    unavailable: i32,
) -> Result<()> {
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let total = d.spec.replicas.unwrap_or(1);
    let all: Vec<&ReplicaSet> = new_rs.into_iter().chain(old.iter()).collect();
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|rs| f(rs)).sum::<i32>();
    let replicas = sum(&status_replicas);
    let updated = new_rs.map(status_replicas).unwrap_or(0);
    let ready = sum(&|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let avail = sum(&|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0)
    });
    let spec_total = sum(&spec_replicas);
    let unavailable_replicas = (spec_total - avail).max(0);
    let generation = d.metadata.generation;
    let prev = d.status.clone().unwrap_or_default();
    let prev_cond = |t: &str| {
        prev.conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some(t))
            .cloned()
    };
    let available_cond = if avail >= total - unavailable {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            prev_cond("Available").as_ref(),
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            prev_cond("Available").as_ref(),
        )
    };
    let rs_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    let complete = new_rs.is_some()
        && updated == total
        && replicas == total
        && avail == total
        && new_rs.is_some_and(|rs| spec_replicas(rs) == total && status_fresh(rs));
    let progressing = if d.spec.paused == Some(true) {
        condition(
            "Progressing",
            false,
            "DeploymentPaused",
            "Deployment is paused".into(),
            prev_cond("Progressing").as_ref(),
        )
    } else if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            prev_cond("Progressing").as_ref(),
        )
    } else if created {
        condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs_name}\""),
            prev_cond("Progressing").as_ref(),
        )
    } else {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
            prev_cond("Progressing").as_ref(),
        )
    };
    let conditions = vec![available_cond, progressing];
    let new_status = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": avail,
        "unavailableReplicas": unavailable_replicas,
        "conditions": conditions,
    });
    let prev_json = serde_json::to_value(&prev).unwrap_or_default();
    let strip = |v: &Value| {
        let mut v = v.clone();
        for c in v
            .get_mut("conditions")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            c.as_object_mut().map(|m| m.remove("lastUpdateTime"));
            c.as_object_mut().map(|m| m.remove("lastTransitionTime"));
        }
        v
    };
    let differs = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .any(|k| prev_json.get(*k).cloned().unwrap_or(json!(0)) != new_status[*k])
        || strip(&prev_json).get("conditions") != strip(&new_status).get("conditions");
    let dapi: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    if differs && !crate::util::patch_status(&dapi, &ns, &name, new_status).await? {
        return Ok(());
    }
    if let Some(rs) = new_rs {
        let rev = revision(rs).to_string();
        if d.annotations().get(REVISION) != Some(&rev) {
            // An update, as upstream's (its role may update deployments, not patch them); a
            // conflict runs the reconcile again on the newer object.
            let action = || format!("annotating deployment {ns}/{name}");
            let Some(mut fresh) = dapi.get_opt(&name).await.ctx(action)? else {
                return Ok(());
            };
            fresh.annotations_mut().insert(REVISION.to_string(), rev);
            dapi.replace(&name, &PostParams::default(), &fresh)
                .await
                .ctx(action)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = json!({"app": "web"});
        if let Some(h) = hash {
            labels[HASH_LABEL] = json!(h);
        }
        serde_json::from_value(json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}})).unwrap()
    }

    #[test]
    fn hash_ignores_its_own_label_and_changes_with_the_template() {
        let a = template_hash(&template("web:v1", None), None);
        assert_eq!(a, template_hash(&template("web:v1", Some(&a)), None));
        assert_ne!(a, template_hash(&template("web:v2", None), None));
        assert_ne!(a, template_hash(&template("web:v1", None), Some(1)));
        assert!(
            a.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
        assert!(equal_ignore_hash(
            &template("x", Some("abc")),
            &template("x", None)
        ));
    }

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        let pct = |s: &str| Some(IntOrString::String(s.into()));
        assert_eq!(resolve(pct("25%").as_ref(), 10, true, "25%"), 3);
        assert_eq!(resolve(pct("25%").as_ref(), 10, false, "25%"), 2);
        assert_eq!(resolve(Some(&IntOrString::Int(2)), 10, false, "25%"), 2);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": 1, "selector": {}, "template": {}, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}
        }))
        .unwrap();
        assert_eq!(surge_and_unavailable(&d), (0, 1));
    }
}

//! Revision history of DaemonSets and StatefulSets, kept in `ControllerRevision`s as upstream's
//! `pkg/controller/history` keeps it.
//!
//! A revision snapshots one pod template. Its `data` is the strategic merge patch that puts the
//! template back (`{"spec":{"template":{…,"$patch":"replace"}}}`, which `kubectl rollout undo`
//! sends as it is), its name is `<owner>-<hash>` where `hash` is the owner's template hash (the
//! `controller-revision-hash` of the pods made from it, also a label of the revision), and it is
//! labelled like the template, so the owner's selector finds it. `revision` orders the templates
//! by when they were last current: going back to an earlier template renumbers its revision as
//! the newest instead of writing a copy. Revisions that are not current and that no live pod
//! runs are deleted, oldest first, beyond `revisionHistoryLimit`.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::util::{controller_of, controller_ref, labels_of};
use crate::{Context as _, Result};

/// The label naming a revision's (and its pods') template hash.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// `revisionHistoryLimit` when the owner does not set it (the API defaults it to 10 too).
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// The name of the revision of `owner`'s template with `hash`.
pub fn revision_name(owner: &str, hash: &str) -> String {
    format!("{owner}-{hash}")
}

/// The strategic merge patch that restores `template` on its owner.
pub fn patch_data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The template a revision restores.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.0.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// How to make the revision named `name` the newest.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write it, numbered so.
    Create(i64),
    /// It exists (at this index of the list) and no other revision is newer.
    Keep(usize),
    /// It exists (at this index) but another revision is as new or newer: number it so.
    Renumber(usize, i64),
    /// A revision of another template holds the name: the owner's collision count must move.
    Collision,
}

/// Decides [`Step`] for the revision `name` with `data`, among the owner's revisions.
pub fn next_step(owned: &[ControllerRevision], name: &str, data: &Value) -> Step {
    let newest_other = owned
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(name))
        .filter_map(|r| r.revision)
        .max()
        .unwrap_or(0);
    match owned
        .iter()
        .position(|r| r.metadata.name.as_deref() == Some(name))
    {
        None => Step::Create(newest_other + 1),
        Some(i) if owned[i].data.0 != *data => Step::Collision,
        Some(i) if owned[i].revision.unwrap_or(0) <= newest_other => {
            Step::Renumber(i, newest_other + 1)
        }
        Some(i) => Step::Keep(i),
    }
}

/// The revisions to delete: the oldest of those not named in `live`, beyond `limit`.
pub fn to_prune<'a>(
    owned: &'a [ControllerRevision],
    live: &BTreeSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let mut old: Vec<&ControllerRevision> = owned
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    old.sort_by_key(|r| r.revision);
    let excess = old
        .len()
        .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
    old.truncate(excess);
    old
}

/// An owner's history after [`sync`].
#[derive(Debug)]
pub enum Synced {
    /// The current template's revision is the newest: every revision the owner keeps, by
    /// revision number (the current one last).
    Current(Vec<ControllerRevision>),
    /// The name of the current template's revision is taken by another template or owner:
    /// the caller moves `status.collisionCount`, which changes the hash.
    Collision,
}

/// What [`sync`] needs to know about the owner besides the object itself.
pub struct Owned<'a> {
    pub selector: &'a LabelSelector,
    pub template: &'a PodTemplateSpec,
    /// The owner's template hash (with its collision count).
    pub hash: &'a str,
    /// `spec.revisionHistoryLimit`.
    pub limit: Option<i32>,
    /// Revisions that must stay: the ones live pods run (and for a StatefulSet its current one).
    pub live: BTreeSet<String>,
}

/// Makes the revision of `owner`'s current template exist and be the newest, then prunes the
/// history to the limit.
pub async fn sync<K>(client: &kube::Client, owner: &K, o: Owned<'_>) -> Result<Synced>
where
    K: Resource<DynamicType = ()>,
{
    let ns = owner.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let name = revision_name(&owner.name_any(), o.hash);
    let mut revisions = owned_revisions(&api, owner, o.selector).await?;
    let data = patch_data(o.template);
    let current = match next_step(&revisions, &name, &data) {
        Step::Collision => return Ok(Synced::Collision),
        Step::Keep(i) => revisions[i].clone(),
        Step::Renumber(i, revision) => {
            let mut renumbered = revisions[i].clone();
            renumbered.revision = Some(revision);
            api.replace(&name, &PostParams::default(), &renumbered)
                .await
                .ctx(|| format!("renumbering controllerrevision {ns}/{name}"))?
        }
        Step::Create(revision) => {
            let mut labels = o
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(REVISION_HASH.into(), o.hash.into());
            let new = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: owner.meta().annotations.clone(),
                    owner_references: Some(vec![controller_ref(owner)]),
                    ..Default::default()
                },
                data: RawExtension(data.clone()),
                revision: Some(revision),
            };
            match api.create(&PostParams::default(), &new).await {
                Ok(created) => created,
                // Someone else's (or not selected by the owner's selector): a collision.
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Synced::Collision),
                Err(e) => {
                    return Err(e).ctx(|| format!("creating controllerrevision {ns}/{name}"));
                }
            }
        }
    };
    revisions.retain(|r| r.name_any() != name);
    revisions.push(current);
    let mut live = o.live;
    live.insert(name);
    let doomed: Vec<String> = to_prune(&revisions, &live, o.limit.unwrap_or(DEFAULT_HISTORY_LIMIT))
        .into_iter()
        .map(ResourceExt::name_any)
        .collect();
    for gone in &doomed {
        match api.delete(gone, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e).ctx(|| format!("deleting controllerrevision {ns}/{gone}")),
        }
    }
    revisions.retain(|r| !doomed.contains(&r.name_any()));
    revisions.sort_by_key(|r| r.revision);
    Ok(Synced::Current(revisions))
}

/// The revisions `owner` controls and its selector selects.
async fn owned_revisions<K: Resource>(
    api: &Api<ControllerRevision>,
    owner: &K,
    selector: &LabelSelector,
) -> Result<Vec<ControllerRevision>> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let selector = ekube_api::selector::LabelSelector::from_label_selector(selector);
    let all = api
        .list(&Default::default())
        .await
        .ctx(|| "listing controllerrevisions".into())?;
    Ok(all
        .items
        .into_iter()
        .filter(|r| controller_of(r).is_some_and(|c| c.uid == uid))
        .filter(|r| !selector.is_empty() && selector.matches(&labels_of(r)))
        .collect())
}

/// Another template holds the revision of the owner's hash: the owner's `collisionCount` goes
/// up by one, so its next sync hashes again with the next count.
pub async fn bump_collision_count<K>(
    client: &kube::Client,
    owner: &K,
    current: Option<i32>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let ns = owner.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let next = json!({"collisionCount": current.unwrap_or(0) + 1});
    crate::util::patch_status(&api, &ns, &owner.name_any(), next).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]}}))
        .unwrap()
    }

    fn rev(name: &str, revision: i64, image: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: RawExtension(patch_data(&template(image))),
            revision: Some(revision),
        }
    }

    #[test]
    fn data_replaces_the_template_and_gives_it_back() {
        let data = patch_data(&template("web:1"));
        assert_eq!(
            data,
            json!({"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}})
        );
        assert_eq!(
            template_of(&rev("web-a", 1, "web:1")),
            Some(template("web:1"))
        );
    }

    #[test]
    fn revisions_number_templates_by_when_they_were_last_current() {
        let data = |image| patch_data(&template(image));
        assert_eq!(next_step(&[], "web-a", &data("web:1")), Step::Create(1));
        let one = [rev("web-a", 1, "web:1")];
        assert_eq!(next_step(&one, "web-a", &data("web:1")), Step::Keep(0));
        assert_eq!(next_step(&one, "web-b", &data("web:2")), Step::Create(2));
        // Back to the first template: it becomes revision 3, no copy is written.
        let two = [rev("web-a", 1, "web:1"), rev("web-b", 2, "web:2")];
        assert_eq!(
            next_step(&two, "web-a", &data("web:1")),
            Step::Renumber(0, 3)
        );
        // Another template under the same name.
        assert_eq!(next_step(&two, "web-a", &data("web:9")), Step::Collision);
    }

    #[test]
    fn pruning_keeps_the_live_and_the_newest() {
        let revs: Vec<ControllerRevision> = (1..=5)
            .map(|n| rev(&format!("web-{n}"), n, "web:1"))
            .collect();
        let live: BTreeSet<String> = ["web-5".to_string(), "web-1".to_string()].into();
        let names =
            |v: Vec<&ControllerRevision>| v.into_iter().map(|r| r.name_any()).collect::<Vec<_>>();
        // web-1 is live; of web-2..4 two may stay, the oldest goes.
        assert_eq!(names(to_prune(&revs, &live, 2)), ["web-2"]);
        assert_eq!(
            names(to_prune(&revs, &live, 0)),
            ["web-2", "web-3", "web-4"]
        );
        assert!(to_prune(&revs, &live, 10).is_empty());
    }
}

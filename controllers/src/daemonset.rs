//! DaemonSet controller: one pod of the set on every eligible node.
//!
//! A node is eligible when the template's `nodeSelector` and required node affinity select it
//! and the template, plus the tolerations upstream adds to every daemon pod (not-ready and
//! unreachable `NoExecute`, the pressure and unschedulable `NoSchedule` taints), tolerates its
//! `NoSchedule`/`NoExecute` taints. A running pod stays on a node that gained a `NoSchedule`
//! taint; only untolerated `NoExecute` taints or a selector that no longer matches remove it.
//! Pods are created unbound with a required node affinity on `metadata.name` (as upstream does),
//! so the scheduler binds them. Node changes requeue every DaemonSet.
//!
//! Revisions: each template hashes to a `controller-revision-hash` label on its pods and is kept
//! as the ControllerRevision `<set>-<hash>` (see [`crate::history`]), which is what
//! `kubectl rollout history` lists and `kubectl rollout undo` patches back.
//! `RollingUpdate` replaces old pods node by node, deleting old pods that are unavailable
//! anyway first, then available ones while at most `maxUnavailable` nodes lack an available
//! pod. `OnDelete` replaces a pod only after someone deleted it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use crate::deployment::{resolve, template_hash};
use crate::events::{EventType, Recorder};
use crate::history::{self, Owned, Synced, revision_name};
use crate::informer::Changes;
use crate::replicaset::claim_pods;
use crate::runner::{self, Ctx};
use crate::util::{
    controller_ref, deleting, pod_active, pod_available, pod_ready, record_pod_create,
    record_pod_delete,
};
use crate::{Context as _, Result};
use ekube_api::nodematch::{selects, untolerated};

pub use crate::history::REVISION_HASH;
pub const TEMPLATE_GENERATION: &str = "pod-template-generation";

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    pods: Changes<Pod>,
) -> Result<(), String> {
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let controller = controller
        .owns_shared_stream(pods)
        // A revision deleted or edited behind the controller's back is written again.
        .owns(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        .watches(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            move |_node: Node| {
                sets.state()
                    .iter()
                    .map(|ds| ObjectRef::from_obj(&**ds))
                    .collect::<Vec<_>>()
            },
        );
    let ctx = Ctx { client, recorder };
    runner::drive(
        "daemonset",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

/// The tolerations upstream adds to every daemon pod, so node conditions never evict it and
/// cordoned or pressured nodes still run it.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let tol = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        tol("node.kubernetes.io/not-ready", "NoExecute"),
        tol("node.kubernetes.io/unreachable", "NoExecute"),
        tol("node.kubernetes.io/disk-pressure", "NoSchedule"),
        tol("node.kubernetes.io/memory-pressure", "NoSchedule"),
        tol("node.kubernetes.io/pid-pressure", "NoSchedule"),
        tol("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(tol("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// The template's pod spec with the default tolerations added (those not already present).
pub fn daemon_pod_spec(template: &PodSpec) -> PodSpec {
    let mut spec = template.clone();
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(template.host_network == Some(true)) {
        if !tolerations.contains(&t) {
            tolerations.push(t);
        }
    }
    spec
}

/// `(should_run, should_continue_running)` of a daemon pod with `spec` on `node`.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
        || !selects(spec, node)
    {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let run = untolerated(node, tolerations, &["NoSchedule", "NoExecute"]).is_empty();
    let keep = untolerated(node, tolerations, &["NoExecute"]).is_empty();
    (run, keep)
}

/// Pins a pod to `node` with a required affinity on the node's name, replacing the template's
/// other required terms (the controller has already evaluated them).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The node a daemon pod belongs to: where it is bound, else where its affinity pins it.
pub fn pod_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")?
        .values
        .as_ref()?
        .first()
        .cloned()
}

fn hash_of(pod: &Pod) -> Option<&String> {
    pod.labels().get(REVISION_HASH)
}

#[tracing::instrument(skip_all, fields(daemonset = %ds.name_any()))]
async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action> {
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let spec = ds.spec.clone();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let nodes = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .ctx(|| "listing nodes".into())?
        .items;
    let claimed = claim_pods(
        &ctx.client,
        controller_ref(&*ds),
        &ns,
        &spec.selector,
        deleting(&*ds),
    )
    .await?;
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = template_hash(&spec.template, collision_count.filter(|c| *c > 0));
    if !deleting(&*ds) {
        let live: BTreeSet<String> = claimed
            .pods
            .iter()
            .filter_map(hash_of)
            .map(|h| revision_name(&name, h))
            .collect();
        let owned = Owned {
            selector: &spec.selector,
            template: &spec.template,
            hash: &hash,
            limit: spec.revision_history_limit,
            live,
        };
        if let Synced::Collision = history::sync(&ctx.client, &*ds, owned).await? {
            history::bump_collision_count(&ctx.client, &*ds, collision_count).await?;
            return Ok(Action::await_change());
        }
    }
    let pod_spec = daemon_pod_spec(&spec.template.spec.clone().unwrap_or_default());
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut orphaned: Vec<&Pod> = Vec::new();
    for p in claimed.pods.iter().filter(|p| !deleting(*p)) {
        match pod_node(p) {
            Some(n)
                if nodes
                    .iter()
                    .any(|node| node.metadata.name.as_deref() == Some(n.as_str())) =>
            {
                by_node.entry(n).or_default().push(p)
            }
            _ => orphaned.push(p),
        }
    }
    let mut create_on: Vec<String> = Vec::new();
    let mut delete: Vec<(&Pod, String)> = orphaned
        .iter()
        .map(|p| (*p, "its node is gone".to_string()))
        .collect();
    // Status counters.
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
        (0, 0, 0, 0, 0, 0);
    // Rolling update inputs: per node wanting a pod, its pod (if any).
    let mut serving: Vec<(&str, Option<&Pod>)> = Vec::new();
    for node in &nodes {
        let node_name = node.metadata.name.as_deref().unwrap_or_default();
        let (run, keep) = should_run(&pod_spec, node);
        let pods = by_node.get(node_name).cloned().unwrap_or_default();
        let (failed, mut live): (Vec<&Pod>, Vec<&Pod>) = pods.iter().partition(|p| !pod_active(p));
        if run {
            desired += 1;
            if !pods.is_empty() {
                current += 1;
            }
        } else if !pods.is_empty() {
            misscheduled += 1;
        }
        if !keep {
            delete.extend(
                pods.iter()
                    .map(|p| (*p, format!("node {node_name} no longer runs it"))),
            );
            continue;
        }
        for p in &failed {
            let msg = format!(
                "Found failed daemon pod {ns}/{} on node {node_name}, will try to kill it",
                p.name_any()
            );
            ctx.recorder
                .record(&*ds, EventType::Warning, "FailedDaemonPod", &msg)
                .await;
            delete.push((*p, "it failed".into()));
        }
        // More than one live pod on a node: keep the oldest.
        live.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        for extra in live.iter().skip(1) {
            delete.push((*extra, "a node runs one pod".into()));
        }
        let pod = live.first().copied();
        if run {
            if let Some(p) = pod {
                if pod_ready(p) {
                    ready += 1;
                }
                if pod_available(p, min_ready, now) {
                    available += 1;
                }
                if hash_of(p) == Some(&hash) {
                    updated += 1;
                }
            } else if !deleting(&*ds) {
                create_on.push(node_name.to_string());
            }
            serving.push((node_name, pod));
        }
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling && !deleting(&*ds) {
        let ru = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        // maxSurge is not implemented: replacing always goes through maxUnavailable (at least 1).
        let max_unavailable = match ru.and_then(|r| r.max_unavailable.as_ref()) {
            Some(v) => resolve(Some(v), desired, true, "1").max(1),
            None => 1,
        };
        let mut unavailable = serving
            .iter()
            .filter(|(_, p)| !p.is_some_and(|p| pod_available(p, min_ready, now)))
            .count() as i32;
        let old: Vec<&Pod> = serving
            .iter()
            .filter_map(|(_, p)| *p)
            .filter(|p| hash_of(p) != Some(&hash))
            .collect();
        // Old pods that serve nothing go first; they cost no availability.
        for p in old.iter().filter(|p| !pod_available(p, min_ready, now)) {
            delete.push((*p, "rolling update".into()));
        }
        for p in old.iter().filter(|p| pod_available(p, min_ready, now)) {
            if unavailable >= max_unavailable {
                break;
            }
            unavailable += 1;
            delete.push((*p, "rolling update".into()));
        }
    }
    for node in &create_on {
        let mut pod_spec = pod_spec.clone();
        pin_to_node(&mut pod_spec, node);
        let tmeta = spec.template.metadata.clone().unwrap_or_default();
        let mut labels = tmeta.labels.clone().unwrap_or_default();
        labels.insert(REVISION_HASH.into(), hash.clone());
        labels.insert(
            TEMPLATE_GENERATION.into(),
            ds.metadata.generation.unwrap_or(1).to_string(),
        );
        let pod = Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                annotations: tmeta.annotations.clone(),
                owner_references: Some(vec![controller_ref(&*ds)]),
                ..Default::default()
            },
            spec: Some(pod_spec),
            status: None,
        };
        let result = pods_api.create(&PostParams::default(), &pod).await;
        record_pod_create(&ctx.recorder, &*ds, &result).await;
    }
    for (p, why) in &delete {
        let pod_name = p.name_any();
        tracing::debug!(pod = %pod_name, why = %why, "deleting daemon pod");
        let result = pods_api.delete(&pod_name, &DeleteParams::default()).await;
        record_pod_delete(&ctx.recorder, &*ds, &pod_name, &result).await;
    }
    let status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": (desired - available).max(0),
        "observedGeneration": ds.metadata.generation,
    });
    let prev = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
    let differs = status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| prev.get(k).cloned().unwrap_or(json!(0)) != *v);
    if differs {
        let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        if !crate::util::patch_status(&ds_api, &ns, &name, status).await? {
            return Ok(Action::await_change());
        }
    }
    Ok(crate::util::requeue_for_availability(
        ready, available, min_ready,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .unwrap()
    }

    #[test]
    fn eligibility() {
        let template: PodSpec =
            serde_json::from_value(json!({"containers": [], "nodeSelector": {"role": "edge"}}))
                .unwrap();
        let spec = daemon_pod_spec(&template);
        assert_eq!(
            should_run(&spec, &node("a", json!({"role": "edge"}), json!([]))),
            (true, true)
        );
        assert_eq!(
            should_run(&spec, &node("b", json!({}), json!([]))),
            (false, false)
        );
        // Default tolerations cover cordoned and not-ready nodes.
        let cordoned = node(
            "c",
            json!({"role": "edge"}),
            json!([
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&spec, &cordoned), (true, true));
        // A foreign NoSchedule taint: no new pod, but a running one stays.
        let tainted = node(
            "d",
            json!({"role": "edge"}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&spec, &tainted), (false, true));
        let evicting = node(
            "e",
            json!({"role": "edge"}),
            json!([{"key": "dedicated", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&spec, &evicting), (false, false));
        // Adding the defaults twice changes nothing.
        assert_eq!(daemon_pod_spec(&spec).tolerations, spec.tolerations);
    }

    #[test]
    fn pods_are_pinned_by_affinity() {
        let mut spec: PodSpec = serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}}})).unwrap();
        pin_to_node(&mut spec, "n7");
        let pod = Pod {
            spec: Some(spec.clone()),
            ..Default::default()
        };
        assert_eq!(pod_node(&pod).as_deref(), Some("n7"));
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v.pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms").unwrap(),
            &json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}])
        );
    }
}

//! Disruption controller: keeps each PodDisruptionBudget's status, which the eviction
//! subresource spends, as upstream's `pkg/controller/disruption` computes it.
//!
//! For a budget, the pods of its namespace its selector matches are counted: `expectedPods`
//! is their number when `minAvailable` is an integer, otherwise the sum of the scales of their
//! controllers (a ReplicaSet owned by a Deployment counts with the Deployment's replicas);
//! `desiredHealthy` is `minAvailable` (scaled against `expectedPods` when a percentage) or
//! `expectedPods - maxUnavailable`; `currentHealthy` counts the Ready pods that are neither
//! being deleted nor recorded in `disruptedPods` within the last two minutes (evicted, their
//! deletion not yet seen); `disruptionsAllowed = max(0, currentHealthy - desiredHealthy)`, 0
//! while nothing is expected. Entries of `disruptedPods` older than two minutes are dropped
//! (the eviction evidently did not delete the pod), and the budget is looked at again when the
//! oldest kept one expires. When the status cannot be computed (a pod without a known
//! controller while the budget needs scales), the controller fails safe: no disruptions
//! allowed, `DisruptionAllowed=False` with reason `SyncFailed`.
//!
//! The status is written with the resourceVersion the computation started from, so a status
//! the eviction subresource changed meanwhile makes the write conflict and the budget is
//! computed again, never overwritten with stale numbers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ekube_api::disruption::{
    DISRUPTION_ALLOWED, SYNC_FAILED, conditions_up_to_date, counts_pod, set_condition,
    update_disruption_allowed,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::events::{EventType, Recorder};
use crate::informer::Changes;
use crate::runner::{self, Ctx};
use crate::util::{controller_of, deleting, get_listed, labels_of, pod_ready};
use crate::{Context as _, ReconcileError, Result};

/// How long an eviction's entry in `disruptedPods` keeps its pod out of `currentHealthy`
/// (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// The periodic look at every budget, a safety net for changes no pod event announces (a
/// Deployment scaled while its pods stay as they are).
const RESYNC: Duration = Duration::from_secs(300);

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    pods: Changes<Pod>,
) -> Result<(), String> {
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    let controller = controller.watches_shared_stream(pods, move |pod: Arc<Pod>| {
        let labels = labels_of(&*pod);
        budgets
            .state()
            .iter()
            .filter(|b| b.namespace() == pod.namespace() && counts_pod(b, &labels))
            .map(|b| ObjectRef::from_obj(&**b))
            .collect::<Vec<_>>()
    });
    let ctx = Ctx { client, recorder };
    runner::drive(
        "disruption",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(1),
    )
    .await;
    Ok(())
}

#[tracing::instrument(skip_all, fields(pdb = %pdb.name_any()))]
async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action> {
    match sync(&pdb, &ctx).await {
        Ok(action) => Ok(action),
        // A conflict only means the budget moved on: compute it again.
        Err(e @ ReconcileError::Api { .. }) if is_conflict(&e) => Err(e),
        Err(e) => {
            fail_safe(&pdb, &ctx, &e.to_string()).await;
            Err(e)
        }
    }
}

fn is_conflict(e: &ReconcileError) -> bool {
    matches!(e, ReconcileError::Api { source: kube::Error::Api(s), .. } if s.code == 409)
}

async fn sync(pdb: &PodDisruptionBudget, ctx: &Ctx) -> Result<Action> {
    let ns = pdb.namespace().unwrap_or_default();
    let all = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .ctx(|| format!("listing pods in {ns}"))?;
    let pods: Vec<Pod> = all
        .items
        .into_iter()
        .filter(|p| counts_pod(pdb, &labels_of(p)))
        .collect();
    let spec = pdb.spec.clone().unwrap_or_default();
    let mut unmanaged = Vec::new();
    let expected = match expected_source(&spec) {
        Expected::Matching => pods.len() as i32,
        Expected::Scale => {
            let (scale, without) = expected_scale(&ctx.client, &ns, &pods).await?;
            unmanaged = without;
            scale
        }
        Expected::Nothing => 0,
    };
    let desired = desired_healthy(&spec, expected).map_err(ReconcileError::Other)?;
    let now = Timestamp::now();
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let (disrupted, recheck) = disrupted_pods(&pods, recorded, now);
    let healthy = count_healthy(&pods, &disrupted, now);
    let counts = Counts {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
    };
    if let Some(status) = next_status(pdb, &counts, disrupted, Time(now)) {
        if pods.is_empty() {
            ctx.recorder
                .record(pdb, EventType::Normal, "NoPods", "No matching pods found")
                .await;
        }
        if !unmanaged.is_empty() {
            let msg = format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be \
                 unmanaged. As a result, the status of the PDB cannot be calculated correctly, \
                 which may result in undefined behavior. To account for these pods please set \
                 \".spec.minAvailable\" field of the PDB to an integer value.",
                selector_text(&spec)
            );
            ctx.recorder
                .record(pdb, EventType::Warning, "UnmanagedPods", &msg)
                .await;
        }
        write_status(pdb, ctx, status).await?;
    }
    let wait = recheck.map_or(RESYNC, |at| {
        let secs = (at.as_second() - now.as_second()).max(1) as u64;
        Duration::from_secs(secs).min(RESYNC)
    });
    Ok(Action::requeue(wait))
}

/// Writes `status` as the status of `pdb`, pinned to the resourceVersion it was computed from.
async fn write_status(
    pdb: &PodDisruptionBudget,
    ctx: &Ctx,
    status: PodDisruptionBudgetStatus,
) -> Result<()> {
    let ns = pdb.namespace().unwrap_or_default();
    let name = pdb.name_any();
    let mut next = pdb.clone();
    next.status = Some(status);
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .replace_status(&name, &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).ctx(|| format!("updating status of poddisruptionbudget {ns}/{name}")),
    }
}

/// Upstream's `failSafe`: no disruptions allowed until the status can be computed again.
async fn fail_safe(pdb: &PodDisruptionBudget, ctx: &Ctx, why: &str) {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = Some(0);
    let cond = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: "False".into(),
        reason: SYNC_FAILED.into(),
        message: why.into(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(Timestamp::now()),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), cond);
    if pdb.status.as_ref() != Some(&status)
        && let Err(e) = write_status(pdb, ctx, status).await
    {
        tracing::warn!(error = %e, "failing safe");
    }
}

/// Where a budget's `expectedPods` comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Expected {
    /// The number of pods the selector matches (`minAvailable` an integer).
    Matching,
    /// The scales of the pods' controllers (`maxUnavailable`, or a percentage).
    Scale,
    /// Neither field is set: nothing is expected.
    Nothing,
}

pub fn expected_source(spec: &PodDisruptionBudgetSpec) -> Expected {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    if spec.max_unavailable.is_some() {
        return Expected::Scale;
    }
    match &spec.min_available {
        Some(IntOrString::Int(_)) => Expected::Matching,
        Some(IntOrString::String(_)) => Expected::Scale,
        None => Expected::Nothing,
    }
}

/// `desiredHealthy` of a budget expecting `expected` pods (upstream rounds percentages up).
pub fn desired_healthy(spec: &PodDisruptionBudgetSpec, expected: i32) -> Result<i32, String> {
    use ekube_api::intstr::scaled;
    if let Some(max) = &spec.max_unavailable {
        return Ok((expected - scaled(max, expected, true)?).max(0));
    }
    match &spec.min_available {
        Some(min) => scaled(min, expected, true),
        None => Ok(0),
    }
}

/// The three counts a status is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
}

/// `max(0, currentHealthy - desiredHealthy)`, and 0 while no pod is expected, so a budget whose
/// first pods appear before its status is computed is safe.
pub fn disruptions_allowed(c: &Counts) -> i32 {
    if c.expected_pods <= 0 {
        return 0;
    }
    (c.current_healthy - c.desired_healthy).max(0)
}

/// The entries of `recorded` still pending at `now`: pods that exist, are not being deleted
/// and were evicted less than [`DELETION_TIMEOUT`] ago; and when the earliest of them expires.
pub fn disrupted_pods(
    pods: &[Pod],
    recorded: Option<&BTreeMap<String, Time>>,
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(recorded) = recorded else {
        return (kept, recheck);
    };
    for pod in pods.iter().filter(|p| !deleting(*p)) {
        let name = pod.name_any();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let expires = expiry(at);
        if expires > now {
            recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
            kept.insert(name, at.clone());
        }
    }
    (kept, recheck)
}

fn expiry(at: &Time) -> Timestamp {
    Timestamp::from_second(at.0.as_second() + DELETION_TIMEOUT.as_secs() as i64)
        .unwrap_or(Timestamp::MAX)
}

/// Ready pods that are neither being deleted nor pending eviction.
pub fn count_healthy(pods: &[Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| !deleting(*p))
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .is_none_or(|at| expiry(at) <= now)
        })
        .filter(|p| pod_ready(p))
        .count() as i32
}

/// The status to write, or `None` when the stored one already says all of it.
pub fn next_status(
    pdb: &PodDisruptionBudget,
    counts: &Counts,
    disrupted: BTreeMap<String, Time>,
    now: Time,
) -> Option<PodDisruptionBudgetStatus> {
    let allowed = disruptions_allowed(counts);
    let current = pdb.status.clone().unwrap_or_default();
    let disrupted = Some(disrupted).filter(|d| !d.is_empty());
    let same_pods = current.disrupted_pods.as_ref().filter(|d| !d.is_empty()) == disrupted.as_ref();
    if current.current_healthy == Some(counts.current_healthy)
        && current.desired_healthy == Some(counts.desired_healthy)
        && current.expected_pods == Some(counts.expected_pods)
        && current.disruptions_allowed == Some(allowed)
        && same_pods
        && current.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: Some(counts.current_healthy),
        desired_healthy: Some(counts.desired_healthy),
        expected_pods: Some(counts.expected_pods),
        disruptions_allowed: Some(allowed),
        disrupted_pods: disrupted,
        observed_generation: pdb.metadata.generation,
        conditions: current.conditions,
    };
    update_disruption_allowed(&mut status, now);
    Some(status)
}

/// The sum of the scales of the pods' controllers, and the pods without a controller.
async fn expected_scale(
    client: &kube::Client,
    ns: &str,
    pods: &[Pod],
) -> Result<(i32, Vec<String>)> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(cref) = controller_of(pod) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if scales.contains_key(&cref.uid) {
            continue;
        }
        match controller_scale(client, ns, cref).await? {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => {
                return Err(ReconcileError::Other(format!(
                    "found no controllers for pod {:?}",
                    pod.name_any()
                )));
            }
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

/// The uid and scale of the controller `cref` names, if it is a kind with a scale that
/// exists with that uid: a ReplicaSet (or the Deployment controlling it), a StatefulSet or a
/// ReplicationController.
async fn controller_scale(
    client: &kube::Client,
    ns: &str,
    cref: &OwnerReference,
) -> Result<Option<(String, i32)>> {
    let apps = cref.api_version.split('/').next() == Some("apps");
    match cref.kind.as_str() {
        "ReplicaSet" if apps => {
            let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
            let Some(rs) = get_listed(&api, &cref.name)
                .await
                .ctx(|| format!("reading replicaset {ns}/{}", cref.name))?
                .filter(|rs| rs.uid().as_deref() == Some(&cref.uid))
            else {
                return Ok(None);
            };
            if let Some(owner) = controller_of(&rs).filter(|o| o.kind == "Deployment") {
                let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
                let d = get_listed(&api, &owner.name)
                    .await
                    .ctx(|| format!("reading deployment {ns}/{}", owner.name))?
                    .filter(|d| d.uid().as_deref() == Some(&owner.uid));
                return Ok(d.map(|d| {
                    let replicas = d.spec.replicas.unwrap_or(1);
                    (owner.uid.clone(), replicas)
                }));
            }
            let replicas = rs.spec.replicas.unwrap_or(1);
            Ok(Some((cref.uid.clone(), replicas)))
        }
        "StatefulSet" if apps => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
            let sts = get_listed(&api, &cref.name)
                .await
                .ctx(|| format!("reading statefulset {ns}/{}", cref.name))?
                .filter(|s| s.uid().as_deref() == Some(&cref.uid));
            Ok(sts.map(|s| {
                let replicas = s.spec.replicas.unwrap_or(1);
                (cref.uid.clone(), replicas)
            }))
        }
        "ReplicationController" if cref.api_version == "v1" => {
            let api: Api<ReplicationController> = Api::namespaced(client.clone(), ns);
            let rc = get_listed(&api, &cref.name)
                .await
                .ctx(|| format!("reading replicationcontroller {ns}/{}", cref.name))?
                .filter(|rc| rc.uid().as_deref() == Some(&cref.uid));
            Ok(rc.map(|rc| {
                let replicas = rc.spec.and_then(|s| s.replicas).unwrap_or(1);
                (cref.uid.clone(), replicas)
            }))
        }
        _ => Ok(None),
    }
}

/// The selector as upstream's event prints it (`&LabelSelector{…}` there; selector syntax here).
fn selector_text(spec: &PodDisruptionBudgetSpec) -> String {
    let Some(sel) = &spec.selector else {
        return "nil".into();
    };
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(format!("{} {} ({values})", e.key, e.operator));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests;

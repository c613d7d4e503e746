//! Job controller: runs pods until `completions` of them succeed, at most `parallelism` at a
//! time, and gives up after `backoffLimit` failures or `activeDeadlineSeconds`.
//!
//! Counting follows upstream's legacy tracking: the job's pods are listed on every reconcile
//! and `succeeded`/`failed` are the pods in those phases (with `restartPolicy: OnFailure` the
//! container restarts count as failures too). A job created without a selector gets the one
//! upstream generates (`batch.kubernetes.io/controller-uid=<uid>`) and its template the
//! `batch.kubernetes.io/job-name`/`controller-uid` labels. Replacement pods after a failure wait
//! upstream's back-off (10 s doubling, at most 6 min). Finished jobs go after
//! `ttlSecondsAfterFinished`. Indexed Jobs (one pod per completion index) are in [`indexed`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::informer::Changes;
use crate::replicaset::claim_pods;
use crate::runner::{self, Ctx};
use crate::util::{
    controller_ref, deleting, now, pod_active, pod_ready, record_pod_create, record_pod_delete,
};
use crate::{Context as _, Result};

mod indexed;

use indexed::IndexSet;

pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// The legacy label names upstream still sets next to the prefixed ones.
const LEGACY_JOB_NAME: &str = "job-name";
const LEGACY_CONTROLLER_UID: &str = "controller-uid";

const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// `ttl` deletes finished Jobs past their `ttlSecondsAfterFinished`: upstream's
/// ttl-after-finished controller does that with its own identity and role.
pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    ttl: kube::Client,
    pods: Changes<Pod>,
) -> Result<(), String> {
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns_shared_stream(pods);
    let ctx = Ctx { client, recorder };
    let reconcile = move |job, ctx| reconcile(job, ctx, ttl.clone());
    runner::drive("job", controller, reconcile, ctx, Duration::from_secs(1)).await;
    Ok(())
}

/// Whether the job has a `Complete` or `Failed` condition that is `True`, and which.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|t| conds.iter().any(|c| c.type_ == *t && c.status == "True"))
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Container restarts of the job's live pods (failures under `restartPolicy: OnFailure`).
fn restarts(pods: &[&Pod]) -> i32 {
    pods.iter()
        .flat_map(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default()
        })
        .map(|c| c.restart_count)
        .sum()
}

/// When the newest failed pod finished (its containers' `finishedAt`, else its creation).
fn last_failure(pods: &[&Pod]) -> Option<Timestamp> {
    pods.iter()
        .filter(|p| phase(p) == "Failed")
        .filter_map(|p| {
            let finished = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    c.state
                        .as_ref()?
                        .terminated
                        .as_ref()?
                        .finished_at
                        .as_ref()
                        .map(|t| t.0)
                })
                .max();
            finished.or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
        .max()
}

/// Back-off before the next pod after `failures` failures: 10 s doubling, capped at 6 min.
pub fn backoff(failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(16) as u32;
    BACKOFF_BASE.saturating_mul(1 << shift).min(BACKOFF_MAX)
}

/// How many pods should be running now, given what has succeeded.
pub fn wanted_active(parallelism: i32, completions: Option<i32>, succeeded: i32) -> i32 {
    match completions {
        Some(c) => parallelism.min(c - succeeded).max(0),
        // A work queue: once one pod succeeded no new ones start.
        None if succeeded > 0 => 0,
        None => parallelism.max(0),
    }
}

fn condition(type_: &str, reason: &str, message: &str) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

/// The labels every pod of `job` carries.
fn job_labels(job: &Job) -> BTreeMap<String, String> {
    let uid = job.uid().unwrap_or_default();
    let name = job.name_any();
    BTreeMap::from([
        (CONTROLLER_UID.to_string(), uid.clone()),
        (JOB_NAME.to_string(), name.clone()),
        (LEGACY_CONTROLLER_UID.to_string(), uid),
        (LEGACY_JOB_NAME.to_string(), name),
    ])
}

#[tracing::instrument(skip_all, fields(job = %job.name_any()))]
async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>, ttl_client: kube::Client) -> Result<Action> {
    if deleting(&*job) {
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = job.spec.clone().unwrap_or_default();
    // A job created without a selector gets the generated one (upstream's apiserver does this
    // at create; ours leaves it to the controller).
    let Some(selector) = spec.selector.clone() else {
        let uid = job.uid().unwrap_or_default();
        let patch = json!({"spec": {
            "selector": {"matchLabels": {CONTROLLER_UID: uid}},
            "template": {"metadata": {"labels": job_labels(&job)}},
        }});
        jobs.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .ctx(|| format!("setting the selector of job {ns}/{name}"))?;
        return Ok(Action::await_change());
    };
    let claimed = claim_pods(&ctx.client, controller_ref(&*job), &ns, &selector, false).await?;
    let pods: Vec<&Pod> = claimed.pods.iter().collect();
    let all_active: Vec<&Pod> = pods.iter().copied().filter(|p| pod_active(p)).collect();
    let status = job.status.clone().unwrap_or_default();
    // Indexed: an index counts once, whatever number of its pods succeeded, and stays counted
    // (in `completedIndexes`) after its pods are gone. Active pods for indexes that are done,
    // out of range or already running in another pod are surplus.
    let indexed = indexed::is_indexed(spec.completion_mode.as_deref());
    let completions = spec.completions.unwrap_or(0);
    let (active, surplus, completed, succeeded) = if indexed {
        let mut completed = IndexSet::parse(
            status.completed_indexes.as_deref().unwrap_or_default(),
            completions,
        );
        completed.extend(
            pods.iter()
                .filter(|p| phase(p) == "Succeeded")
                .filter_map(|p| indexed::pod_index(p, completions)),
        );
        let (surplus, keep) = indexed::surplus(&all_active, &completed, completions);
        let succeeded = completed.count();
        (keep.into_values().collect(), surplus, completed, succeeded)
    } else {
        let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
        (all_active, Vec::new(), IndexSet::default(), succeeded)
    };
    let failed_pods = pods.iter().filter(|p| phase(p) == "Failed").count() as i32;
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let failures = failed_pods + if on_failure { restarts(&active) } else { 0 };
    let ready = active.iter().filter(|p| pod_ready(p)).count() as i32;
    let now_ts = Timestamp::now();
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let mut start_time = status.start_time.clone();
    let mut completion_time = status.completion_time.clone();
    let suspended = spec.suspend == Some(true);
    let mut requeue = Duration::from_secs(300);

    let was_finished = finished(&job);
    let mut delete_active = suspended || was_finished.is_some();
    if was_finished.is_none() && !suspended {
        if start_time.is_none() {
            start_time = Some(now());
        }
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let deadline = spec
            .active_deadline_seconds
            .zip(start_time.as_ref())
            .map(|(s, t)| t.0.as_second() + s);
        let complete = match spec.completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        if complete {
            conditions.push(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            conditions.push(condition(
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            completion_time = Some(now());
            delete_active = true;
            ctx.recorder
                .record(&*job, EventType::Normal, "Completed", "Job completed")
                .await;
        } else if failures > backoff_limit || (on_failure && backoff_limit == 0 && failures > 0) {
            let msg = "Job has reached the specified backoff limit";
            conditions.push(condition("FailureTarget", "BackoffLimitExceeded", msg));
            conditions.push(condition("Failed", "BackoffLimitExceeded", msg));
            delete_active = true;
            ctx.recorder
                .record(&*job, EventType::Warning, "BackoffLimitExceeded", msg)
                .await;
        } else if deadline.is_some_and(|d| d <= now_ts.as_second()) {
            let msg = "Job was active longer than specified deadline";
            conditions.push(condition("FailureTarget", "DeadlineExceeded", msg));
            conditions.push(condition("Failed", "DeadlineExceeded", msg));
            delete_active = true;
            ctx.recorder
                .record(&*job, EventType::Warning, "DeadlineExceeded", msg)
                .await;
        } else {
            if let Some(d) = deadline {
                requeue = requeue.min(Duration::from_secs((d - now_ts.as_second()).max(1) as u64));
            }
            let want = wanted_active(spec.parallelism.unwrap_or(1), spec.completions, succeeded);
            let have = active.len() as i32;
            if have < want {
                // After a failure, wait out the back-off before starting replacements.
                let wait = last_failure(&pods)
                    .map(|t| {
                        let until = t.as_millisecond() + backoff(failed_pods).as_millis() as i64;
                        until - now_ts.as_millisecond()
                    })
                    .filter(|ms| *ms > 0);
                match wait {
                    Some(ms) => requeue = requeue.min(Duration::from_millis(ms as u64)),
                    None => {
                        let count = (want - have) as usize;
                        let indexes = if indexed {
                            // The lowest indexes that neither succeeded nor run now.
                            let running: BTreeSet<i32> = active
                                .iter()
                                .filter_map(|p| indexed::pod_index(p, completions))
                                .collect();
                            completed
                                .first_missing(&running, completions, count)
                                .into_iter()
                                .map(Some)
                                .collect()
                        } else {
                            vec![None; count]
                        };
                        create_pods(&ctx, &job, &pods_api, &indexes).await;
                    }
                }
            } else if have > want {
                // Parallelism lowered: stop the newest surplus pods.
                let mut newest = active.clone();
                newest.sort_by_key(|p| {
                    std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0))
                });
                delete_pods(&ctx, &job, &pods_api, &newest[..(have - want) as usize]).await;
            }
        }
    }
    if delete_active {
        delete_pods(&ctx, &job, &pods_api, &active).await;
    }
    delete_pods(&ctx, &job, &pods_api, &surplus).await;
    if suspended
        && !conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True")
        && was_finished.is_none()
    {
        conditions.retain(|c| c.type_ != "Suspended");
        conditions.push(condition("Suspended", "JobSuspended", "Job suspended"));
        ctx.recorder
            .record(&*job, EventType::Normal, "Suspended", "Job suspended")
            .await;
    } else if !suspended
        && conditions
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True")
    {
        for c in conditions.iter_mut().filter(|c| c.type_ == "Suspended") {
            *c = JobCondition {
                status: "False".into(),
                ..condition("Suspended", "JobResumed", "Job resumed")
            };
        }
    }
    let new_status = json!({
        "active": if delete_active { 0 } else { active.len() as i32 },
        "ready": if delete_active { 0 } else { ready },
        "succeeded": succeeded,
        "failed": failed_pods,
        "terminating": pods.iter().filter(|p| deleting(**p) && !crate::util::pod_terminal(p)).count(),
        "startTime": start_time,
        "completionTime": completion_time,
        "conditions": conditions,
        "uncountedTerminatedPods": {},
        "completedIndexes": Some(completed.to_string()).filter(|s| indexed && !s.is_empty()),
    });
    let current = serde_json::to_value(&status).unwrap_or_default();
    let differs = [
        "active",
        "ready",
        "succeeded",
        "failed",
        "startTime",
        "completionTime",
        "conditions",
        "terminating",
        "completedIndexes",
    ]
    .iter()
    .any(|k| {
        current
            .get(*k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(json!(0))
            != new_status
                .get(*k)
                .filter(|v| !v.is_null())
                .cloned()
                .unwrap_or(json!(0))
    });
    if differs && !crate::util::patch_status(&jobs, &ns, &name, new_status).await? {
        return Ok(Action::await_change());
    }
    // ttlSecondsAfterFinished: delete the job (and, in the background, its pods).
    let done = conditions
        .iter()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True");
    if let (Some(ttl), true) = (spec.ttl_seconds_after_finished, done) {
        let done_at = completion_time
            .as_ref()
            .map(|t| t.0)
            .or_else(|| {
                conditions
                    .iter()
                    .filter(|c| c.type_ == "Failed")
                    .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
                    .max()
            })
            .unwrap_or(now_ts);
        let due = done_at.as_second() + i64::from(ttl);
        if due <= now_ts.as_second() {
            let expired: Api<Job> = Api::namespaced(ttl_client, &ns);
            match expired.delete(&name, &DeleteParams::background()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e).ctx(|| format!("deleting finished job {ns}/{name}")),
            }
            return Ok(Action::await_change());
        }
        requeue = requeue.min(Duration::from_secs((due - now_ts.as_second()) as u64));
    }
    Ok(Action::requeue(requeue))
}

/// Creates one pod per entry of `indexes`: `None` for a NonIndexed job's pods, `Some(i)` for
/// the pod of completion index `i`.
async fn create_pods(ctx: &Ctx, job: &Job, api: &Api<Pod>, indexes: &[Option<i32>]) {
    let spec = job.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    if indexed::is_indexed(spec.completion_mode.as_deref())
        && let Some(pod_spec) = template.spec.as_mut()
    {
        indexed::add_index_env(pod_spec);
    }
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.clone().unwrap_or_default();
    labels.extend(job_labels(job));
    let base = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", job.name_any())),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations.clone(),
            finalizers: tmeta.finalizers.clone(),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    let name = job.name_any();
    let pods: Vec<Pod> = indexes
        .iter()
        .map(|index| {
            let mut pod = base.clone();
            if let Some(i) = *index {
                indexed::set_index(&mut pod.metadata, pod.spec.as_mut(), &name, i);
            }
            pod
        })
        .collect();
    let pp = PostParams::default();
    for result in futures::future::join_all(pods.iter().map(|pod| api.create(&pp, pod))).await {
        record_pod_create(&ctx.recorder, job, &result).await;
    }
}

async fn delete_pods(ctx: &Ctx, job: &Job, api: &Api<Pod>, pods: &[&Pod]) {
    for p in pods {
        let name = p.name_any();
        let result = api.delete(&name, &DeleteParams::background()).await;
        record_pod_delete(&ctx.recorder, job, &name, &result).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_pods_wanted() {
        assert_eq!(wanted_active(2, Some(3), 0), 2);
        assert_eq!(wanted_active(2, Some(3), 2), 1);
        assert_eq!(wanted_active(2, Some(3), 3), 0);
        assert_eq!(wanted_active(4, None, 0), 4);
        assert_eq!(wanted_active(4, None, 1), 0);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(360));
    }

    #[test]
    fn finished_reads_true_conditions_only() {
        let mut job: Job =
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"conditions": [
            {"type": "Failed", "status": "False"}]}}))
            .unwrap();
        assert_eq!(finished(&job), None);
        job.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert_eq!(finished(&job), Some("Failed"));
    }
}

//! CronJob controller: creates a Job for each time the schedule fires.
//!
//! On each reconcile the controller finds the latest fire time not yet handled (after
//! `lastScheduleTime`, else after the CronJob's creation, and no earlier than
//! `startingDeadlineSeconds` ago), applies `concurrencyPolicy` against the active jobs, and
//! creates `<cronjob>-<fire time in minutes since the epoch>`: the deterministic name makes a
//! repeated attempt for the same time fail with AlreadyExists instead of running twice. It keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, deletes finished jobs beyond
//! the history limits, and requeues itself for the next fire time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::job::finished;
use crate::runner::{self, Ctx};
use crate::util::{controller_of, controller_ref, deleting};
use crate::{Context as _, Result};
use ekube_api::cron::{Schedule, time_zone};

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub async fn run(client: kube::Client, recorder: Recorder) -> Result<(), String> {
    let controller = Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client.clone()), watcher::Config::default());
    let ctx = Ctx { client, recorder };
    runner::drive(
        "cronjob",
        controller,
        reconcile,
        ctx,
        Duration::from_secs(5),
    )
    .await;
    Ok(())
}

/// What the schedule asks for at `now`.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    /// The latest unhandled fire time, if one is due.
    pub run: Option<Timestamp>,
    /// How many fire times were missed (up to 100).
    pub missed: u32,
    /// The next fire time after `now`.
    pub next: Option<Timestamp>,
}

/// The fire times of `schedule` that matter at `now` for a CronJob created at `created`, last
/// scheduled at `last`, with an optional starting deadline.
pub fn due(
    schedule: &Schedule,
    tz: &k8s_openapi::jiff::tz::TimeZone,
    created: Timestamp,
    last: Option<Timestamp>,
    starting_deadline: Option<i64>,
    now: Timestamp,
) -> Due {
    let mut earliest = last.unwrap_or(created);
    if let Some(d) = starting_deadline {
        let floor = now
            .checked_sub(SignedDuration::from_secs(d))
            .unwrap_or(earliest);
        // The deadline bounds how far back a missed time may still start; upstream counts a
        // time exactly at the deadline as still startable.
        let floor = floor
            .checked_sub(SignedDuration::from_nanos(1))
            .unwrap_or(floor);
        if floor > earliest {
            earliest = floor;
        }
    }
    let (run, missed) = match schedule.last_in(earliest, now, tz) {
        Some((t, n)) => (Some(t), n),
        None => (None, 0),
    };
    Due {
        run,
        missed,
        next: schedule.next_after(now, tz),
    }
}

/// The Job name for a fire time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, at: Timestamp) -> String {
    format!("{cronjob}-{}", at.as_second().div_euclid(60))
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(job.name_any()),
        namespace: job.namespace(),
        uid: job.uid(),
        resource_version: job.resource_version(),
        ..Default::default()
    }
}

/// When a finished job finished (its completion time, else its last condition change).
fn finish_time(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    status.completion_time.as_ref().map(|t| t.0).or_else(|| {
        status
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.status == "True")
            .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
            .max()
    })
}

#[tracing::instrument(skip_all, fields(cronjob = %cj.name_any()))]
async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action> {
    let ns = cj.namespace().unwrap_or_default();
    let name = cj.name_any();
    let uid = cj.uid().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cj_api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let list = jobs_api
        .list(&ListParams::default())
        .await
        .ctx(|| format!("listing jobs in {ns}"))?;
    let mut jobs: Vec<Job> = list
        .items
        .into_iter()
        .filter(|j| controller_of(j).is_some_and(|r| r.uid == uid))
        .collect();
    let spec = cj.spec.clone();
    // The status as stored, not as the watch cache last saw it: this controller's own last
    // write may not have reached the cache yet, and starting from an older status would
    // forget a success whose job the history limit has since deleted.
    // (A GET of the CronJob itself, as upstream's; its role may not get `cronjobs/status`.)
    let status = match cj_api.get(&name).await {
        Ok(fresh) => fresh.status.unwrap_or_default(),
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(e).ctx(|| format!("reading cronjob {ns}/{name}")),
    };
    let mut last_schedule = status.last_schedule_time.as_ref().map(|t| t.0);
    let mut last_successful = status.last_successful_time.as_ref().map(|t| t.0);

    // Finished jobs: note successes, then trim the history.
    for j in jobs.iter().filter(|j| finished(j) == Some("Complete")) {
        if let Some(t) = finish_time(j)
            && last_successful.is_none_or(|l| t > l)
        {
            last_successful = Some(t);
        }
    }
    let was_active: Vec<String> = status
        .active
        .iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect();
    for j in jobs
        .iter()
        .filter(|j| finished(j).is_some() && was_active.contains(&j.name_any()))
    {
        let msg = format!(
            "Saw completed job: {}, condition: {}",
            j.name_any(),
            finished(j).unwrap_or_default()
        );
        ctx.recorder
            .record(&*cj, EventType::Normal, "SawCompletedJob", &msg)
            .await;
    }
    let mut deleted = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(kind) && !deleting(*j))
            .collect();
        done.sort_by_key(|j| {
            finish_time(j).or(j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        });
        let excess = done.len().saturating_sub(limit.max(0) as usize);
        for j in &done[..excess] {
            let jname = j.name_any();
            match jobs_api.delete(&jname, &DeleteParams::background()).await {
                Ok(_) => {
                    ctx.recorder
                        .record(
                            &*cj,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted job {jname}"),
                        )
                        .await;
                    deleted.push(jname);
                }
                Err(kube::Error::Api(e)) if e.code == 404 => deleted.push(jname),
                Err(e) => return Err(e).ctx(|| format!("deleting job {ns}/{jname}")),
            }
        }
    }
    jobs.retain(|j| !deleted.contains(&j.name_any()));
    let mut active: Vec<Job> = jobs
        .iter()
        .filter(|j| finished(j).is_none() && !deleting(*j))
        .cloned()
        .collect();

    let mut requeue = Duration::from_secs(300);
    if !deleting(&*cj) && spec.suspend != Some(true) {
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                ctx.recorder
                    .record(
                        &*cj,
                        EventType::Warning,
                        "UnparseableSchedule",
                        &e.to_string(),
                    )
                    .await;
                return Ok(Action::await_change());
            }
        };
        let tz = match time_zone(spec.time_zone.as_deref()) {
            Ok(tz) => tz,
            Err(e) => {
                ctx.recorder
                    .record(&*cj, EventType::Warning, "UnknownTimeZone", &e)
                    .await;
                return Ok(Action::await_change());
            }
        };
        let created = cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let now = Timestamp::now();
        let due = due(
            &schedule,
            &tz,
            created,
            last_schedule,
            spec.starting_deadline_seconds,
            now,
        );
        if due.missed >= 100 {
            let msg = "too many missed start times (> 100); set or decrease .spec.startingDeadlineSeconds or check clock skew";
            ctx.recorder
                .record(&*cj, EventType::Warning, "TooManyMissedTimes", msg)
                .await;
        }
        if let Some(at) = due.run {
            let jname = job_name(&name, at);
            let exists = jobs.iter().any(|j| j.name_any() == jname);
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            if exists {
                last_schedule = Some(at);
            } else if policy == "Forbid" && !active.is_empty() {
                // Skipped for good: the next fire time is the next chance.
                let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
                ctx.recorder
                    .record(&*cj, EventType::Normal, "JobAlreadyActive", msg)
                    .await;
            } else {
                if policy == "Replace" {
                    for j in active.drain(..) {
                        let old = j.name_any();
                        match jobs_api.delete(&old, &DeleteParams::background()).await {
                            Ok(_) | Err(kube::Error::Api(_)) => {
                                ctx.recorder
                                    .record(
                                        &*cj,
                                        EventType::Normal,
                                        "SuccessfulDelete",
                                        &format!("Deleted job {old}"),
                                    )
                                    .await;
                            }
                            Err(e) => return Err(e).ctx(|| format!("deleting job {ns}/{old}")),
                        }
                    }
                }
                match jobs_api
                    .create(&PostParams::default(), &job_for(&cj, &jname, at))
                    .await
                {
                    Ok(j) => {
                        ctx.recorder
                            .record(
                                &*cj,
                                EventType::Normal,
                                "SuccessfulCreate",
                                &format!("Created job {jname}"),
                            )
                            .await;
                        active.push(j);
                        last_schedule = Some(at);
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => last_schedule = Some(at),
                    Err(e) => {
                        ctx.recorder
                            .record(
                                &*cj,
                                EventType::Warning,
                                "FailedCreate",
                                &format!("Error creating job: {e}"),
                            )
                            .await;
                        return Err(e).ctx(|| format!("creating job {ns}/{jname}"));
                    }
                }
            }
        }
        if let Some(next) = due.next {
            let wait = next.as_millisecond() - now.as_millisecond() + 100;
            requeue = Duration::from_millis(wait.max(100) as u64);
        }
    }

    let active_refs: Vec<ObjectReference> = active.iter().map(reference).collect();
    // The times are only ever set, never cleared (a merge patch with null would clear them).
    let mut new_status = json!({
        "active": if active_refs.is_empty() { None } else { Some(&active_refs) },
    });
    if let Some(t) = last_schedule {
        new_status["lastScheduleTime"] = json!(Time(t));
    }
    if let Some(t) = last_successful {
        new_status["lastSuccessfulTime"] = json!(Time(t));
    }
    let names = |refs: &[ObjectReference]| {
        refs.iter()
            .filter_map(|r| r.name.clone())
            .collect::<Vec<_>>()
    };
    let changed = names(&active_refs) != names(status.active.as_deref().unwrap_or_default())
        || last_schedule != status.last_schedule_time.as_ref().map(|t| t.0)
        || last_successful != status.last_successful_time.as_ref().map(|t| t.0);
    if changed && !crate::util::patch_status(&cj_api, &ns, &name, new_status).await? {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(requeue))
}

/// The Job a CronJob runs at `at`.
fn job_for(cj: &CronJob, name: &str, at: Timestamp) -> Job {
    let template = cj.spec.job_template.clone();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), at.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::tz::TimeZone;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn names_count_minutes() {
        assert_eq!(
            job_name("hello", ts("2024-01-01T00:01:00Z")),
            "hello-28401121"
        );
    }

    #[test]
    fn due_times() {
        let every = Schedule::parse("* * * * *").unwrap();
        let utc = TimeZone::UTC;
        // Nothing before the first minute after creation.
        let d = due(
            &every,
            &utc,
            ts("2024-01-01T10:00:10Z"),
            None,
            None,
            ts("2024-01-01T10:00:50Z"),
        );
        assert_eq!(
            d,
            Due {
                run: None,
                missed: 0,
                next: Some(ts("2024-01-01T10:01:00Z"))
            }
        );
        let d = due(
            &every,
            &utc,
            ts("2024-01-01T10:00:10Z"),
            None,
            None,
            ts("2024-01-01T10:01:02Z"),
        );
        assert_eq!(d.run, Some(ts("2024-01-01T10:01:00Z")));
        // Already handled.
        let d = due(
            &every,
            &utc,
            ts("2024-01-01T10:00:10Z"),
            Some(ts("2024-01-01T10:01:00Z")),
            None,
            ts("2024-01-01T10:01:30Z"),
        );
        assert_eq!(d.run, None);
        // Missed for a while: the latest time runs, the rest are counted.
        let d = due(
            &every,
            &utc,
            ts("2024-01-01T10:00:10Z"),
            Some(ts("2024-01-01T10:01:00Z")),
            None,
            ts("2024-01-01T10:05:30Z"),
        );
        assert_eq!((d.run, d.missed), (Some(ts("2024-01-01T10:05:00Z")), 4));
        // A starting deadline drops times too far back.
        let hourly = Schedule::parse("@hourly").unwrap();
        let d = due(
            &hourly,
            &utc,
            ts("2024-01-01T09:30:00Z"),
            None,
            Some(60),
            ts("2024-01-01T10:02:00Z"),
        );
        assert_eq!(d.run, None);
        let d = due(
            &hourly,
            &utc,
            ts("2024-01-01T09:30:00Z"),
            None,
            Some(300),
            ts("2024-01-01T10:02:00Z"),
        );
        assert_eq!(d.run, Some(ts("2024-01-01T10:00:00Z")));
    }
}

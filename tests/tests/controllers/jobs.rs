//! Jobs and CronJobs.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_with_parallelism_runs_to_completion() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "job-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["job-node"], true);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_spec("batch", json!({"completions": 3, "parallelism": 2})),
    )
    .await?;
    let most_active = Arc::new(AtomicU32::new(0));
    let job = until(60, "job batch completes", || {
        let (client, jobs, most_active) = (client.clone(), jobs.clone(), most_active.clone());
        async move {
            let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=batch").await?;
            let active = pods
                .iter()
                .filter(|p| live(p) && !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
                .count() as u32;
            most_active.fetch_max(active, Ordering::SeqCst);
            // Play the workload: one running pod finishes per poll.
            if let Some(p) = pods.iter().find(|p| running(p)) {
                finish_pod(&client, p, "Succeeded")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let job = jobs.get("batch").await.map_err(|e| e.to_string())?;
            let st = job.status.clone().unwrap_or_default();
            if job_condition(&job, "Complete").is_some_and(|c| c.0 == "True") {
                Ok(Some(job))
            } else {
                Err(format!("{} pods, status {st:?}", pods.len()))
            }
        }
    })
    .await?;
    let st = job.status.clone().unwrap();
    assert_eq!(
        (st.succeeded, st.failed.unwrap_or(0), st.active.unwrap_or(0)),
        (Some(3), 0, 0)
    );
    assert!(st.start_time.is_some() && st.completion_time.is_some());
    assert!(
        most_active.load(Ordering::SeqCst) <= 2,
        "parallelism 2 exceeded: {} active",
        most_active.load(Ordering::SeqCst)
    );
    let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=batch")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(pods.len(), 3, "exactly completions pods ran");
    let uid = job.uid().unwrap();
    for p in &pods {
        assert_eq!(
            p.labels().get("batch.kubernetes.io/controller-uid"),
            Some(&uid)
        );
        assert_eq!(
            p.labels().get("job-name").map(String::as_str),
            Some("batch")
        );
        assert_eq!(p.owner_references()[0].kind, "Job");
    }
    let selector = job.spec.unwrap().selector.unwrap().match_labels.unwrap();
    assert_eq!(
        selector.get("batch.kubernetes.io/controller-uid"),
        Some(&uid),
        "the generated selector"
    );
    Ok(())
}

const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn index_of(p: &Pod) -> Option<String> {
    p.annotations().get(INDEX).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indexed_job_retries_a_failed_index_and_counts_each_index_once() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "idx-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["idx-node"], true);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let spec = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 2});
    jobs.create(&PostParams::default(), &job_spec("idx", spec))
        .await?;
    // Index 1's first pod fails; every other pod succeeds, one per poll. Along the way no
    // index ever has two live pods and at most two pods run.
    let failed_once = Arc::new(AtomicBool::new(false));
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let job = until(90, "job idx completes", || {
        let (client, jobs) = (client.clone(), jobs.clone());
        let (failed_once, problems) = (failed_once.clone(), problems.clone());
        async move {
            let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=idx").await?;
            let active: Vec<&Pod> = pods
                .iter()
                .filter(|p| live(p) && !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
                .collect();
            let indexes: Vec<Option<String>> = active.iter().map(|p| index_of(p)).collect();
            let distinct: BTreeSet<&Option<String>> = indexes.iter().collect();
            if active.len() > 2 || distinct.len() != indexes.len() || distinct.contains(&None) {
                problems
                    .lock()
                    .unwrap()
                    .push(format!("active pods with indexes {indexes:?}"));
            }
            if let Some(p) = pods.iter().find(|p| running(p)) {
                let fail = index_of(p).as_deref() == Some("1")
                    && !failed_once.swap(true, Ordering::SeqCst);
                finish_pod(&client, p, if fail { "Failed" } else { "Succeeded" })
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let job = jobs.get("idx").await.map_err(|e| e.to_string())?;
            match job_condition(&job, "Complete") {
                Some((s, _)) if s == "True" => Ok(Some(job)),
                _ => Err(format!("{} pods, status {:?}", pods.len(), job.status)),
            }
        }
    })
    .await?;
    let problems = problems.lock().unwrap().clone();
    assert!(problems.is_empty(), "{problems:?}");
    let st = job.status.clone().unwrap();
    assert_eq!(st.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!((st.succeeded, st.failed), (Some(3), Some(1)));
    let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=idx")
        .await
        .map_err(anyhow::Error::msg)?;
    let mut seen: Vec<(String, String)> = pods
        .iter()
        .map(|p| (index_of(p).unwrap_or_default(), phase(p)))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("0".to_string(), "Succeeded".to_string()),
            ("1".into(), "Failed".into()),
            ("1".into(), "Succeeded".into()),
            ("2".into(), "Succeeded".into()),
        ],
        "one pod per index, and a second one for the index that failed"
    );
    for p in &pods {
        let index = index_of(p).unwrap();
        assert_eq!(p.labels().get(INDEX), Some(&index));
        assert!(
            p.name_any().starts_with(&format!("idx-{index}-")),
            "{}",
            p.name_any()
        );
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("idx-{index}").as_str())
        );
        let env = spec.containers[0].env.clone().unwrap_or_default();
        let var = env
            .iter()
            .find(|e| e.name == "JOB_COMPLETION_INDEX")
            .expect("JOB_COMPLETION_INDEX is set");
        assert_eq!(
            var.value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.annotations['batch.kubernetes.io/job-completion-index']")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_fails_once_past_its_backoff_limit() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "fail-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["fail-node"], true);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_spec("flaky", json!({"backoffLimit": 1})),
    )
    .await?;
    // Every pod fails; the second failure (after the 10 s back-off) exceeds the limit.
    let job = until(60, "job flaky fails with BackoffLimitExceeded", || {
        let (client, jobs) = (client.clone(), jobs.clone());
        async move {
            let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=flaky").await?;
            for p in pods.iter().filter(|p| running(p)) {
                finish_pod(&client, p, "Failed")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let job = jobs.get("flaky").await.map_err(|e| e.to_string())?;
            match job_condition(&job, "Failed") {
                Some((s, reason)) if s == "True" => Ok(Some((job, reason))),
                _ => Err(format!("{} pods, status {:?}", pods.len(), job.status)),
            }
        }
    })
    .await?;
    assert_eq!(job.1.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(job.0.status.as_ref().unwrap().failed, Some(2));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=flaky")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(pods.len(), 2, "no pod starts after the job failed");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: BTreeSet<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.contains("BackoffLimitExceeded"), "{reasons:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cronjob_every_minute_creates_jobs_and_keeps_its_history_limit() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "cron-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["cron-node"], true);
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "successfulJobsHistoryLimit": 0,
            "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox:latest"}]}}}},
        },
    }))?;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    cronjobs.create(&PostParams::default(), &cj).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // The first fire time is the next minute boundary.
    let job = until(75, "the cronjob creates its first job", || {
        let jobs = jobs.clone();
        async move {
            let list = jobs
                .list(&ListParams::default().labels("app=tick"))
                .await
                .map_err(|e| e.to_string())?;
            Ok(list.items.into_iter().next())
        }
    })
    .await?;
    let name = job.name_any();
    let scheduled: k8s_openapi::jiff::Timestamp =
        job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"].parse()?;
    assert_eq!(
        name,
        format!("tick-{}", scheduled.as_second() / 60),
        "job named by its fire time in minutes"
    );
    assert_eq!(scheduled.as_second() % 60, 0);
    assert_eq!(job.owner_references()[0].kind, "CronJob");
    until(10, "the cronjob lists its active job", || {
        let (cronjobs, name) = (cronjobs.clone(), name.clone());
        async move {
            let st = cronjobs
                .get("tick")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let active: Vec<String> = st
                .active
                .iter()
                .flatten()
                .filter_map(|r| r.name.clone())
                .collect();
            if active == [name] && st.last_schedule_time.is_some() {
                Ok(Some(()))
            } else {
                Err(format!("{st:?}"))
            }
        }
    })
    .await?;
    // The job's pod succeeds: the job completes and, with a history limit of 0, goes.
    until(
        30,
        "the finished job is removed by the history limit",
        || {
            let (client, jobs, cronjobs, name) =
                (client.clone(), jobs.clone(), cronjobs.clone(), name.clone());
            async move {
                let pods = pods_with(
                    &client,
                    "default",
                    &format!("batch.kubernetes.io/job-name={name}"),
                )
                .await?;
                for p in pods.iter().filter(|p| running(p)) {
                    finish_pod(&client, p, "Succeeded")
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let gone = jobs
                    .get_opt(&name)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none_or(|j| j.metadata.deletion_timestamp.is_some());
                let st = cronjobs
                    .get("tick")
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                if gone
                    && st.last_successful_time.is_some()
                    && st.active.as_ref().is_none_or(|a| a.is_empty())
                {
                    Ok(Some(()))
                } else {
                    Err(format!("job gone {gone}, status {st:?}"))
                }
            }
        },
    )
    .await?;
    Ok(())
}

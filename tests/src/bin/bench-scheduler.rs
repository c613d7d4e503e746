//! `cargo xtask bench scheduler`: how fast the scheduler places pods, measured (issue #6).
//!
//! Starts `ekube server` on loopback (node lifecycle off, so hollow nodes stay Ready without
//! heartbeats) and registers 100 hollow Nodes through the API: Ready, with allocatable cpu,
//! memory and pods, and no kubelet behind them. Then: 1,000 unbound pods created by 16
//! writers, and the time from the first create until every one has `spec.nodeName` (pods
//! scheduled per second); a Deployment of 100 replicas, timed from its create to all
//! replicas bound; and the scheduler on its own: 1,000 pods naming a scheduler that is not
//! running, then `ekube scheduler` of that name started, timed from its start and from its
//! first binding to its last (creation then no longer bounds the figure). Binding is
//! observed through a watch started before the creates. Beside
//! the bench's own clock, the apiserver's: its `apiserver_request_duration_seconds` over the
//! run (scraped from `/metrics` before and after), p50 / p99 of pod creates and bindings.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use ekube_tests::ServerProcess;
use ekube_tests::bench::{self, Table};
use ekube_tests::prom::Histogram;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Hollow nodes registered.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Unbound pods created together.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 100)]
    replicas: usize,
    /// Concurrent writers creating the pods.
    #[arg(long, default_value_t = 16)]
    writers: usize,
}

/// The scheduler name of the backlog's pods, served only by the scheduler the bench starts.
const BACKLOG_SCHEDULER: &str = "bench-backlog";

/// How long all pods of one phase may take to be bound.
const BIND_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let server = ServerProcess::start(&[
        "--kube-controller-manager-arg",
        "controllers=*,-nodelifecycle",
    ])?;
    let client = server.client().await?;
    let result = run(&args, &client, &server).await;
    if result.is_err() {
        let log = server.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!(
            "server log (last lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    result
}

async fn run(args: &Args, client: &kube::Client, server: &ServerProcess) -> Result<()> {
    let started = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..args.nodes)
        .map(|i| hollow_node(nodes.clone(), format!("hollow-{i:03}")))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!(
        "[{:.0?}] {} hollow nodes registered",
        started.elapsed(),
        args.nodes
    );

    let scraped_before = scrape(client).await?;

    // 1. Unbound pods, created together.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let bound = watch_bound(pods.clone(), "bench=sched", args.pods).await?;
    let t0 = Instant::now();
    create_pods(&pods, args.writers, args.pods, pod).await?;
    let created = t0.elapsed();
    let all_bound = bound.await.context("watch task")??.all.duration_since(t0);
    let per_sec = args.pods as f64 / all_bound.as_secs_f64();
    eprintln!(
        "[{:.0?}] {} pods bound {all_bound:.2?} after the first create",
        started.elapsed(),
        args.pods
    );

    // 2. A Deployment, from create to every replica bound.
    let bound = watch_bound(pods.clone(), "app=bench-deploy", args.replicas).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let t1 = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment(args.replicas))
        .await
        .context("creating the Deployment")?;
    let deploy_bound = bound.await.context("watch task")??.all.duration_since(t1);
    eprintln!(
        "[{:.0?}] Deployment of {} bound after {deploy_bound:.2?}",
        started.elapsed(),
        args.replicas
    );
    // 3. A backlog: pods created while no scheduler serves their scheduler name, then a
    //    scheduler of that name started on its own (`ekube scheduler`). Upstream's throughput
    //    figure (scheduler_perf's SchedulingThroughput) is this one: pods placed per second
    //    while pods wait, apart from how fast they can be created.
    let bound = watch_bound(pods.clone(), "bench=backlog", args.pods).await?;
    create_pods(&pods, args.writers, args.pods, backlog_pod).await?;
    let kubeconfig = server.kubeconfig();
    let t2 = Instant::now();
    let scheduler = bench::ChildGuard(
        std::process::Command::new(ekube_tests::ekube_bin())
            .arg("scheduler")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--scheduler-name",
                BACKLOG_SCHEDULER,
                "--secure-port=0",
                "--leader-elect=false",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting ekube scheduler")?,
    );
    let backlog = bound.await.context("watch task")??;
    // Its `Scheduled` Events are queued and written after the bindings: count them once all
    // are there (or what is there after 30 s).
    let scheduled_events = backlog_events(client, args.pods).await?;
    drop(scheduler);
    let backlog_all = backlog.all.duration_since(t2);
    let drained = backlog.all.duration_since(backlog.first);
    let drain_per_sec = (args.pods - 1) as f64 / drained.as_secs_f64();
    eprintln!(
        "[{:.0?}] backlog of {} bound {backlog_all:.2?} after the scheduler's start ({drain_per_sec:.0} pods/s from the first binding)",
        started.elapsed(),
        args.pods
    );
    let rss = bench::rss_kib(server.pid()) / 1024;
    let scraped_after = scrape(client).await?;
    // The apiserver's latency of each kind of request, as observed during the two phases.
    let served = |subresource: &str| {
        let filter = [
            // Upstream's label for a create.
            ("verb", "POST"),
            ("resource", "pods"),
            ("subresource", subresource),
        ];
        let name = "apiserver_request_duration_seconds";
        let during = Histogram::parse(&scraped_after, name, &filter).since(&Histogram::parse(
            &scraped_before,
            name,
            &filter,
        ));
        (
            during.count,
            during.quantile(0.5).map(|s| s * 1000.0),
            during.quantile(0.99).map(|s| s * 1000.0),
        )
    };
    let (creates, binds) = (served(""), served("binding"));
    let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));

    let mut table = Table::new(&["scheduler (hollow nodes, no kubelets)", "measured"]);
    table.row(vec![
        format!(
            "{} pods over {} nodes: pods scheduled/s",
            args.pods, args.nodes
        ),
        format!("{per_sec:.0}"),
    ]);
    table.row(vec![
        format!(
            "{} pods: created in (s, {} writers) / all bound after (s)",
            args.pods, args.writers
        ),
        format!(
            "{:.2} / {:.2}",
            created.as_secs_f64(),
            all_bound.as_secs_f64()
        ),
    ]);
    table.row(vec![
        format!(
            "backlog of {} pods, scheduler alone: pods scheduled/s (first → last binding)",
            args.pods
        ),
        format!("{drain_per_sec:.0}"),
    ]);
    table.row(vec![
        format!(
            "backlog of {} pods: scheduler started → all bound (s)",
            args.pods
        ),
        format!("{:.2}", backlog_all.as_secs_f64()),
    ]);
    table.row(vec![
        "backlog: `Scheduled` Events written".into(),
        format!("{scheduled_events} of {}", args.pods),
    ]);
    table.row(vec![
        format!(
            "Deployment of {} replicas: create → all bound (s)",
            args.replicas
        ),
        format!("{:.2}", deploy_bound.as_secs_f64()),
    ]);
    for (what, (count, p50, p99)) in [("pod creates", creates), ("bindings", binds)] {
        table.row(vec![
            format!("apiserver's own latency histogram: {count:.0} {what}, p50 / p99 (ms)"),
            format!("{} / {}", ms(p50), ms(p99)),
        ]);
    }
    table.row(vec![
        "server RSS after the run (MiB)".into(),
        rss.to_string(),
    ]);
    print!("{}", table.markdown());
    bench::write_json(
        &args.out_dir,
        "scheduler",
        &json!({
            "bench": "scheduler",
            "nodes": args.nodes,
            "pods": args.pods,
            "writers": args.writers,
            "pods_created_s": created.as_secs_f64(),
            "pods_all_bound_s": all_bound.as_secs_f64(),
            "pods_scheduled_per_s": per_sec,
            "backlog_scheduled_per_s": drain_per_sec,
            "backlog_all_bound_after_start_s": backlog_all.as_secs_f64(),
            "backlog_scheduled_events": scheduled_events,
            "deployment_replicas": args.replicas,
            "deployment_all_bound_s": deploy_bound.as_secs_f64(),
            "server_rss_mib": rss,
            "apiserver_pod_create_ms": {"count": creates.0, "p50": creates.1, "p99": creates.2},
            "apiserver_pod_binding_ms": {"count": binds.0, "p50": binds.1, "p99": binds.2},
        }),
    )?;
    Ok(())
}

/// Creates pods `make(0..n)` with `writers` concurrent writers.
async fn create_pods(
    pods: &Api<Pod>,
    writers: usize,
    n: usize,
    make: fn(usize) -> Pod,
) -> Result<()> {
    futures::stream::iter(0..writers)
        .map(|w| async move {
            for i in (w..n).step_by(writers) {
                pods.create(&PostParams::default(), &make(i))
                    .await
                    .with_context(|| format!("creating pod {i}"))?;
            }
            anyhow::Ok(())
        })
        .buffer_unordered(writers)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// How many of the backlog's `expected` pods have a `Scheduled` Event: as soon as all do, else
/// after 30 s.
async fn backlog_events(client: &kube::Client, expected: usize) -> Result<usize> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = events
            .list(&ListParams::default().fields("reason=Scheduled"))
            .await
            .context("listing Scheduled Events")?;
        let written = list
            .items
            .iter()
            .filter(|e| {
                e.involved_object
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("backlog-"))
            })
            .count();
        if written >= expected || Instant::now() > deadline {
            return Ok(written);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The apiserver's `/metrics`, as the bench's admin client reads it.
async fn scrape(client: &kube::Client) -> Result<String> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .context("building the /metrics request")?;
    client
        .request_text(req)
        .await
        .context("scraping the apiserver's /metrics")
}

/// Registers a Ready node with room for its share of the pods; no kubelet ever heartbeats it.
async fn hollow_node(nodes: Api<Node>, name: String) -> Result<()> {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "bench": "hollow"}},
    }))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("creating node {name}"))?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let resources = json!({"cpu": "32", "memory": "128Gi", "pods": "110"});
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    // Node IPAM may write the node at the same moment: retry conflicts.
    for _ in 0..20 {
        match nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => return Err(e).with_context(|| format!("marking node {name} Ready")),
        }
    }
    bail!("node {name}: status patch kept conflicting")
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("sched-{i:05}"), "labels": {"bench": "sched"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:latest",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
    }))
    .expect("valid pod")
}

/// A pod for the backlog: it names a scheduler that is not running yet.
fn backlog_pod(i: usize) -> Pod {
    let mut pod = pod(i);
    pod.metadata.name = Some(format!("backlog-{i:05}"));
    pod.metadata.labels = Some([("bench".to_string(), "backlog".to_string())].into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.scheduler_name = Some(BACKLOG_SCHEDULER.into());
    }
    pod
}

fn deployment(replicas: usize) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "bench-deploy"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench-deploy"}},
            "template": {
                "metadata": {"labels": {"app": "bench-deploy"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:latest",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
            }
        }
    }))
    .expect("valid deployment")
}

/// When the pods of a phase were seen bound: the first of them, and the last.
struct Bound {
    first: Instant,
    all: Instant,
}

/// Starts watching pods matching `selector` and returns, once the watch's initial list is in,
/// a task that ends at the moment `count` of them have been seen bound to a node.
async fn watch_bound(
    pods: Api<Pod>,
    selector: &str,
    count: usize,
) -> Result<tokio::task::JoinHandle<Result<Bound>>> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let config = watcher::Config::default().labels(selector);
    let what = selector.to_owned();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut bound = HashSet::new();
        let mut first = None;
        let mut stream = watcher(pods, config).boxed();
        let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
        loop {
            let event = match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(event)) => event.context("pod watch")?,
                Ok(None) => bail!("the pod watch ended"),
                Err(_) => bail!(
                    "pods {what}: {} of {count} bound after {BIND_TIMEOUT:?}",
                    bound.len()
                ),
            };
            let pod = match event {
                watcher::Event::InitDone => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                watcher::Event::Init | watcher::Event::Delete(_) => continue,
            };
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            {
                let now = Instant::now();
                first.get_or_insert(now);
                bound.insert(pod.metadata.name.unwrap_or_default());
                if bound.len() >= count {
                    return Ok(Bound {
                        first: first.unwrap_or(now),
                        all: now,
                    });
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .context("the pod watch did not finish its initial list in 30s")?
        .context("the pod watch failed before its initial list")?;
    Ok(task)
}

//! `cargo xtask bench pods`: pod start-up latency on one node, measured (issue #5).
//!
//! A one-node lab cluster (`ekbpods`: `ekube init` and `ekube agent` on n1, images from the
//! lab registry). A first pod pulls the busybox image; then 30 pods (image present,
//! `imagePullPolicy: IfNotPresent`) are created together and each one's latency from its create
//! request to the first watch event showing it Running is recorded: p50 / p99 / max, the time
//! until all run, and the agent's RSS before and after. Then `image: nginx:alpine`, as a
//! tutorial names it, through the lab's `docker.io` mirror: a first pod pulls it, a second
//! finds it cached. The client talks to the apiserver from inside node 1's network namespace.
//! Beside the bench's own clock, the kubelet's: its `kubelet_pod_start_duration_seconds` (from
//! the kubelet seeing a pod to its containers running) over the 30 pods, read through the
//! apiserver's `nodes/proxy` before and after, p50 / p99. A second table splits the 30 starts
//! into phases: the create's answer and scheduling (create → the bench's watch, read while the
//! creates are in flight, sees the pod bound), and from the
//! kubelet's own series, the sandbox (`run_podsandbox`), the CNI chain, the image check, the
//! container's create and start, and the status writes, each as calls and mean time per call.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use ekube_tests::bench::{self, Table, percentile};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use ekube_tests::prom::Histogram;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const LAB: &str = "ekbpods";
const IMAGE: &str = "192.168.64.1:5000/busybox:latest";
/// As a tutorial writes it: served by the lab's `docker.io` mirror.
const NGINX: &str = "nginx:alpine";
/// How long the pods of one phase may take to run.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Parser)]
struct Args {
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Pods created together.
    #[arg(long, default_value_t = 30)]
    pods: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    bench::require_root("bench pods")?;
    let started = Instant::now();
    let cluster = LabCluster::start(
        LAB,
        1,
        ClusterOptions {
            hub_images: true,
            ..Default::default()
        },
    )
    .context("starting the lab cluster")?;
    let agent = *cluster
        .lab
        .pids("n1", "agent")
        .first()
        .context("no agent process on n1")?;
    eprintln!("[{:.0?}] cluster up, agent pid {agent}", started.elapsed());
    let kubeconfig = cluster.lab.kubeconfig();
    let ns = cluster.lab.host("n1")?.netns.clone();

    // Phase 1: the image pull, by one pod.
    let warm = run_in(&ns, kubeconfig.clone(), IMAGE, vec!["warm".to_string()])?;
    eprintln!(
        "[{:.0?}] first pod (image pull) Running after {:.2?}",
        started.elapsed(),
        warm[0]
    );
    let rss_idle = bench::rss_kib(agent) / 1024;

    // Phase 2: many pods at once, image present.
    let node = cluster.node_name("n1");
    let kubelet_before = kubelet_metrics(&ns, kubeconfig.clone(), node.clone())?;
    let names: Vec<String> = (0..args.pods).map(|i| format!("start-{i:02}")).collect();
    let timings = time_in(&ns, kubeconfig.clone(), IMAGE, names)?;
    let kubelet_after = kubelet_metrics(&ns, kubeconfig.clone(), node)?;
    let between = |family: &str, filter: &[(&str, &str)]| {
        Histogram::parse(&kubelet_after, family, filter).since(&Histogram::parse(
            &kubelet_before,
            family,
            filter,
        ))
    };
    let kubelet_view = between(POD_START, &[]);
    let mut created: Vec<Duration> = timings.iter().map(|t| t.created).collect();
    created.sort();
    let mut bound: Vec<Duration> = timings.iter().map(|t| t.bound).collect();
    bound.sort();
    let phases: Vec<(String, Histogram)> = PHASES
        .iter()
        .map(|(label, family, filter)| (label.to_string(), between(family, filter)))
        .collect();
    let mut latencies: Vec<Duration> = timings.iter().map(|t| t.running).collect();
    let (kubelet_p50, kubelet_p99) = (kubelet_view.quantile(0.5), kubelet_view.quantile(0.99));
    let secs = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
    let rss_busy = bench::rss_kib(agent) / 1024;
    latencies.sort();
    let all = *latencies.last().context("no pods measured")?;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    eprintln!("[{:.0?}] {} pods Running", started.elapsed(), args.pods);

    // Phase 3: nginx:alpine from the mirror, pulled, then cached.
    let nginx_pulled = run_in(&ns, kubeconfig.clone(), NGINX, vec!["nginx-0".into()])?[0];
    let nginx_cached = run_in(&ns, kubeconfig, NGINX, vec!["nginx-1".into()])?[0];
    eprintln!(
        "[{:.0?}] nginx:alpine Running after {nginx_pulled:.2?} (pulled), {nginx_cached:.2?} (cached)",
        started.elapsed()
    );

    let mut table = Table::new(&["pod start-up, one node (ekube agent)", "measured"]);
    table.row(vec![
        "first pod, image pulled: create → Running (s)".into(),
        format!("{:.2}", warm[0].as_secs_f64()),
    ]);
    table.row(vec![
        format!(
            "{} pods created together, image present: create → Running p50 / p99 (s)",
            args.pods
        ),
        format!("{:.2} / {:.2}", p50.as_secs_f64(), p99.as_secs_f64()),
    ]);
    table.row(vec![
        format!(
            "the same {:.0} pods, the kubelet's own `kubelet_pod_start_duration_seconds` p50 / p99 (s)",
            kubelet_view.count
        ),
        format!("{} / {}", secs(kubelet_p50), secs(kubelet_p99)),
    ]);
    table.row(vec![
        format!("all {} Running after (s)", args.pods),
        format!("{:.2}", all.as_secs_f64()),
    ]);
    table.row(vec![
        format!("agent RSS with 1 / {} pods (MiB)", args.pods + 1),
        format!("{rss_idle} / {rss_busy}"),
    ]);
    table.row(vec![
        "`nginx:alpine` from the docker.io mirror: create → Running, pulled / cached (s)".into(),
        format!(
            "{:.2} / {:.2}",
            nginx_pulled.as_secs_f64(),
            nginx_cached.as_secs_f64()
        ),
    ]);
    print!("{}", table.markdown());
    println!();
    let mut split = Table::new(&[
        &format!("where the {} starts go", args.pods),
        "calls",
        "mean (ms)",
        "p99 (ms; the kubelet's rows estimated within its buckets)",
    ]);
    split.row(vec![
        "the create request → its answer".into(),
        created.len().to_string(),
        format!("{:.1}", mean_ms(&created)),
        format!("{:.1}", percentile(&created, 0.99).as_secs_f64() * 1e3),
    ]);
    split.row(vec![
        "the create request → seen bound (the bench's watch)".into(),
        bound.len().to_string(),
        format!("{:.1}", mean_ms(&bound)),
        format!("{:.1}", percentile(&bound, 0.99).as_secs_f64() * 1e3),
    ]);
    for (label, hist) in &phases {
        let mean = (hist.count > 0.0).then(|| hist.sum / hist.count * 1e3);
        let p99 = hist.quantile(0.99).map(|v| v * 1e3);
        let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
        split.row(vec![
            label.clone(),
            format!("{:.0}", hist.count),
            ms(mean),
            ms(p99),
        ]);
    }
    print!("{}", split.markdown());
    bench::write_json(
        &args.out_dir,
        "pods",
        &json!({
            "bench": "pods",
            "first_pod_with_pull_s": warm[0].as_secs_f64(),
            "pods": args.pods,
            "create_to_running_s": latencies.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "p50_s": p50.as_secs_f64(),
            "p99_s": p99.as_secs_f64(),
            "kubelet_pod_start": {"count": kubelet_view.count, "p50_s": kubelet_p50, "p99_s": kubelet_p99},
            "create_answered_s": created.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "create_to_bound_s": bound.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "phases": phases.iter().map(|(label, h)| json!({
                "phase": label,
                "calls": h.count,
                "sum_s": h.sum,
                "p99_s": h.quantile(0.99),
            })).collect::<Vec<_>>(),
            "all_running_s": all.as_secs_f64(),
            "agent_rss_mib_idle": rss_idle,
            "agent_rss_mib_busy": rss_busy,
            "nginx_alpine_pulled_s": nginx_pulled.as_secs_f64(),
            "nginx_alpine_cached_s": nginx_cached.as_secs_f64(),
        }),
    )?;
    drop(cluster);
    Ok(())
}

/// The kubelet's histogram of pod start-up.
const POD_START: &str = "kubelet_pod_start_duration_seconds";

/// The kubelet's histogram of its CRI calls, by `operation_type`.
const RUNTIME_OPERATION: &str = "kubelet_runtime_operations_duration_seconds";

/// A phase of a start the kubelet times: label, histogram, label filter.
type Phase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The phases of a start the kubelet times.
const PHASES: &[Phase] = &[
    (
        "sandbox: CRI `RunPodSandbox`",
        RUNTIME_OPERATION,
        &[("operation_type", "run_podsandbox")],
    ),
    (
        "pod network: the CNI chain's ADD",
        "kubelet_network_plugin_operations_duration_seconds",
        &[("operation_type", "set_up_pod")],
    ),
    (
        "image present? CRI `ImageStatus`",
        RUNTIME_OPERATION,
        &[("operation_type", "image_status")],
    ),
    (
        "container: CRI `CreateContainer`",
        RUNTIME_OPERATION,
        &[("operation_type", "create_container")],
    ),
    (
        "container: CRI `StartContainer`",
        RUNTIME_OPERATION,
        &[("operation_type", "start_container")],
    ),
    (
        "status writes (`kubelet_pod_status_sync_duration_seconds`)",
        "kubelet_pod_status_sync_duration_seconds",
        &[],
    ),
];

/// The mean of `values`, in milliseconds.
fn mean_ms(values: &[Duration]) -> f64 {
    let total: Duration = values.iter().sum();
    total.as_secs_f64() * 1e3 / values.len().max(1) as f64
}

/// The kubelet's `/metrics` on `node`, through the apiserver's `nodes/proxy`, from inside
/// network namespace `ns`.
fn kubelet_metrics(ns: &str, kubeconfig: PathBuf, node: String) -> Result<String> {
    bench::in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let client = ekube_api::client::from_kubeconfig(&kubeconfig).await?;
            let req = http::Request::get(format!("/api/v1/nodes/{node}/proxy/metrics"))
                .body(Vec::new())?;
            client
                .request_text(req)
                .await
                .with_context(|| format!("reading the kubelet's /metrics on {node}"))
        })
    })?
}

/// One pod's times from its create request.
struct Timing {
    /// To the create's answer.
    created: Duration,
    /// To the first watch event showing it bound to a node.
    bound: Duration,
    /// To the first watch event showing it Running.
    running: Duration,
}

/// Creates the pods `names` of `image` together from inside network namespace `ns` and
/// returns each one's time from its create request to being seen Running (in the order of
/// `names`).
fn run_in(
    ns: &str,
    kubeconfig: PathBuf,
    image: &'static str,
    names: Vec<String>,
) -> Result<Vec<Duration>> {
    Ok(time_in(ns, kubeconfig, image, names)?
        .into_iter()
        .map(|t| t.running)
        .collect())
}

/// As [`run_in`], with the time each pod was seen bound too.
fn time_in(
    ns: &str,
    kubeconfig: PathBuf,
    image: &'static str,
    names: Vec<String>,
) -> Result<Vec<Timing>> {
    bench::in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(create_and_time(kubeconfig, image, names))
    })?
}

async fn create_and_time(
    kubeconfig: PathBuf,
    image: &str,
    names: Vec<String>,
) -> Result<Vec<Timing>> {
    let client = ekube_api::client::from_kubeconfig(&kubeconfig).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let label = format!("batch={}", names[0]);
    // Watch first, so no transition is missed.
    let mut stream = watcher(pods.clone(), watcher::Config::default().labels(&label)).boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e).context("pod watch"),
            Ok(None) | Err(_) => bail!("the pod watch did not finish its initial list"),
        }
    }
    // The creates run on a task of their own, so the watch is read while they are in flight
    // (a pod may be bound, even Running, before the last create returns).
    let creates = names.iter().map(|name| {
        let pods = pods.clone();
        // busybox sleeps; nginx runs its own entrypoint.
        let mut container =
            json!({"name": "main", "image": image, "imagePullPolicy": "IfNotPresent"});
        if image == IMAGE {
            container["command"] = json!(["sleep", "3600"]);
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"batch": names[0]}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
        }))
        .expect("valid pod");
        let name = name.clone();
        async move {
            let sent = Instant::now();
            let result = pods.create(&PostParams::default(), &pod).await;
            (name, sent, Instant::now(), result)
        }
    });
    let creating = tokio::spawn(futures::future::join_all(creates.collect::<Vec<_>>()));
    let mut bound: HashMap<String, Instant> = HashMap::new();
    let mut running: HashMap<String, Instant> = HashMap::new();
    let mut phases: HashMap<String, String> = HashMap::new();
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while running.len() < names.len() {
        let event = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(event)) => event.context("pod watch")?,
            Ok(None) => bail!("the pod watch ended"),
            Err(_) => bail!(
                "{} of {} pods Running after {RUN_TIMEOUT:?}; others: {phases:?}",
                running.len(),
                names.len()
            ),
        };
        if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
                bound.entry(name.clone()).or_insert_with(Instant::now);
            }
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if phase == "Running" {
                running.entry(name.clone()).or_insert_with(Instant::now);
                phases.remove(&name);
            } else if !running.contains_key(&name) {
                phases.insert(name, phase);
            }
        }
    }
    let mut sent: HashMap<String, (Instant, Instant)> = HashMap::new();
    for (name, at, answered, result) in creating.await? {
        result.with_context(|| format!("creating pod {name}"))?;
        sent.insert(name, (at, answered));
    }
    Ok(names
        .iter()
        .map(|n| {
            let (at, answered) = sent[n];
            Timing {
                created: answered - at,
                // A pod seen Running was bound, even if no event showed it bound alone.
                bound: *bound.get(n).unwrap_or(&running[n]) - at,
                running: running[n] - at,
            }
        })
        .collect())
}

//! `cargo xtask bench apiserver`: the apiserver's throughput and latency, measured.
//!
//! Starts `ekube server` on loopback over a fresh data directory and, with one kube-rs client,
//! measures: creates per second (16 concurrent writers), p50/p99 of get and of list over
//! 10,000 pods (decoded into `Pod`s, as a kube-rs user sees it, and as the body alone, which is
//! what the server and the connection take), the delay from a write to its delivery on 100
//! watchers, and the server's RSS.
//!
//! Then the cost of authorization, for this build: get p50/p99 for a user outside
//! `system:masters` with 1,000 RoleBindings in the namespace, under `Node,RBAC` (the default)
//! and under `AlwaysAllow`, on two fresh servers.
//!
//! `--baseline <ekube binary>` measures another build the same way, in the same run: the two
//! alternate round by round (`--rounds`, default 3 with a baseline), each cell is the median of
//! its rounds, and the table shows this build's figure over the baseline's as a ratio.
//! `--store etcd` measures this build on sled and on a real etcd member (Debian's, data on
//! disk, one fresh member per round) side by side the same way, as etcd over sled.
//! Prints a markdown table and writes JSON next to it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use ekube_tests::bench::{self, Table, median, ms, percentile};
use ekube_tests::etcd::Etcd;
use ekube_tests::{ServerProcess, ekube_bin};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Where the JSON report goes.
    #[arg(default_value = "target/bench")]
    out_dir: PathBuf,
    /// Another `ekube` binary to measure side by side with this build.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Rounds per binary (default 1, or 3 with a baseline or `--store etcd`).
    #[arg(long)]
    rounds: Option<usize>,
    /// `etcd`: measure this build on sled and on etcd side by side, instead of two builds.
    #[arg(long, default_value = "sled", value_parser = ["sled", "etcd"])]
    store: String,
}

/// Pods created, then got and listed.
const PODS: usize = 10_000;
/// Concurrent writers creating them.
const WRITERS: usize = 16;
/// Watchers of the ConfigMaps written for the delivery delay.
const WATCHERS: usize = 100;
/// ConfigMaps written while they watch.
const WRITES: usize = 50;

/// One round's figures, in the order of `METRICS`.
type Round = [f64; 14];

/// What each figure of a `Round` is.
const METRICS: [&str; 14] = [
    "creates/s (16 writers)",
    "get p50 (ms)",
    "get p99 (ms)",
    "list 10,000 pods p50 (ms)",
    "list 10,000 pods p99 (ms)",
    "list 10,000 pods, body received, not decoded: p50 (ms)",
    "list 10,000 pods, body received, not decoded: p99 (ms)",
    "list by label (1,000 of 10,000) p50 (ms)",
    "list by label (1,000 of 10,000) p99 (ms)",
    "watch delivery, 100 watchers, p50 (ms)",
    "watch delivery, 100 watchers, p99 (ms)",
    "watch events delivered (of 5,000)",
    "server RSS after the run (MiB)",
    "server CPU seconds for the run",
];

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}]}
    }))
    .expect("valid pod")
}

/// User + system CPU seconds process `pid` has used (0 when it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14th and 15th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux architecture ekube runs on.
    ticks as f64 / 100.0
}

/// A ClusterRole `view` binding in `default` for `user`.
fn view_binding(name: &str, user: &str) -> Result<RoleBinding> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))?)
}

/// 1,000 gets of one ConfigMap by a token user holding `view` through one of 1,001
/// RoleBindings in `default`, on a fresh server with `--authorization-mode=<mode>`.
async fn authorized_gets(mode: &str) -> Result<Vec<Duration>> {
    const TOKEN: &str = "bench-authz-token";
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, format!("{TOKEN},bench-user,1000\n"))?;
    let tokens = tokens.display().to_string();
    let server =
        ServerProcess::start(&["--authorization-mode", mode, "--token-auth-file", &tokens])?;
    let admin = server.client().await?;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    let mut tasks = Vec::new();
    for w in 0..16 {
        let bindings = bindings.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..1000).step_by(16) {
                let b = view_binding(&format!("rb{i:04}"), &format!("user{i}"))?;
                bindings
                    .create(&PostParams::default(), &b)
                    .await
                    .context("create binding")?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    bindings
        .create(
            &PostParams::default(),
            &view_binding("rb-bench", "bench-user")?,
        )
        .await?;
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("target".into());
    Api::<ConfigMap>::namespaced(admin, "default")
        .create(&PostParams::default(), &cm)
        .await?;

    // The admin kubeconfig with the token user in place of the admin certificate.
    let admin_conf = std::fs::read_to_string(server.kubeconfig())?;
    let (clusters, _) = admin_conf
        .split_once("users:")
        .context("admin kubeconfig without users")?;
    let conf = dir.path().join("token.conf");
    std::fs::write(
        &conf,
        format!("{clusters}users:\n- name: admin\n  user:\n    token: {TOKEN}\n"),
    )?;
    let cms: Api<ConfigMap> =
        Api::namespaced(ekube_api::client::from_kubeconfig(&conf).await?, "default");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cms.get("target").await.is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bench user's binding did not take effect within 10s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut gets = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        cms.get("target").await?;
        gets.push(t.elapsed());
    }
    gets.sort();
    Ok(gets)
}

/// One round against a fresh server run from `bin`, on a fresh etcd member when `on_etcd`.
async fn measure(bin: PathBuf, on_etcd: bool) -> Result<Round> {
    let etcd = on_etcd.then(Etcd::start_on_disk).transpose()?;
    let url = etcd.as_ref().map(Etcd::url);
    let extra: Vec<&str> = match &url {
        Some(url) => vec!["--datastore-endpoint", url],
        None => Vec::new(),
    };
    let server = ServerProcess::start_bin(bin, &extra, &[])?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..PODS).step_by(WRITERS) {
                pods.create(&PostParams::default(), &pod(i))
                    .await
                    .context("create")?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let creates_per_sec = PODS as f64 / started.elapsed().as_secs_f64();

    let mut gets = Vec::new();
    for i in 0..1000 {
        let t = Instant::now();
        pods.get(&format!("p{:05}", (i * 7) % PODS)).await?;
        gets.push(t.elapsed());
    }
    gets.sort();
    let mut lists = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let l = pods.list(&ListParams::default()).await?;
        ensure!(
            l.items.len() == PODS,
            "listed {} pods of {PODS}",
            l.items.len()
        );
        lists.push(t.elapsed());
    }
    lists.sort();
    // The same list as bytes: what the server and the connection take, without the client's
    // decoding of 10,000 pods into `k8s-openapi` structs (which alone is most of a list's
    // time as kube-rs sees it).
    let mut raw = Vec::new();
    for round in 0..20 {
        let request = http::Request::get("/api/v1/namespaces/default/pods").body(Vec::new())?;
        let t = Instant::now();
        let body = client.request_text(request).await?;
        raw.push(t.elapsed());
        // What came is the list (once is enough: the same list, twenty times).
        if round == 0 {
            let list: serde_json::Value = serde_json::from_str(&body)?;
            let items = list["items"].as_array().map_or(0, Vec::len);
            ensure!(items == PODS, "the raw list holds {items} pods of {PODS}");
        }
    }
    raw.sort();
    let mut selected = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        pods.list(&ListParams::default().labels("shard=3")).await?;
        selected.push(t.elapsed());
    }
    selected.sort();

    let mut delays = watch_delays(Api::namespaced(client, "default")).await?;
    delays.sort();
    let (watch_p50, watch_p99) = if delays.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        (ms(percentile(&delays, 0.5)), ms(percentile(&delays, 0.99)))
    };
    Ok([
        creates_per_sec,
        ms(percentile(&gets, 0.5)),
        ms(percentile(&gets, 0.99)),
        ms(percentile(&lists, 0.5)),
        ms(percentile(&lists, 0.99)),
        ms(percentile(&raw, 0.5)),
        ms(percentile(&raw, 0.99)),
        ms(percentile(&selected, 0.5)),
        ms(percentile(&selected, 0.99)),
        watch_p50,
        watch_p99,
        delays.len() as f64,
        (bench::rss_kib(server.pid()) / 1024) as f64,
        cpu_seconds(server.pid()),
    ])
}

/// The delay from each of `WRITES` ConfigMap creates to its delivery on each of `WATCHERS`.
async fn watch_delays(cms: Api<ConfigMap>) -> Result<Vec<Duration>> {
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let (cms, tx, rv) = (cms.clone(), tx.clone(), rv.clone());
        watchers.push(tokio::spawn(async move {
            let Ok(stream) = cms.watch(&WatchParams::default().timeout(120), &rv).await else {
                return;
            };
            let mut stream = stream.boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let kube::api::WatchEvent::Added(cm) = ev {
                    let i: usize = cm.metadata.name.unwrap_or_default()[1..]
                        .parse()
                        .unwrap_or(0);
                    let _ = tx.send((i, Instant::now()));
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent = Vec::new();
    for i in 0..WRITES {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("w{i}"));
        sent.push(Instant::now());
        cms.create(&PostParams::default(), &cm).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delays = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delays.len() < WRITES * WATCHERS && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((i, at))) => delays.push(at - sent[i]),
            _ => break,
        }
    }
    for w in watchers {
        w.abort();
    }
    Ok(delays)
}

/// A figure as the table shows it.
fn cell(value: f64) -> String {
    match value {
        v if !v.is_finite() => "–".into(),
        v if v >= 100.0 => format!("{v:.0}"),
        v => format!("{v:.2}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let this = ekube_bin();
    let on_etcd = args.store == "etcd";
    // What is compared: (column, binary, on etcd).
    let mut binaries = vec![("this build", this.clone(), false)];
    if let Some(b) = &args.baseline {
        ensure!(
            !on_etcd,
            "--baseline and --store etcd compare different things; give one"
        );
        ensure!(b.exists(), "baseline binary {} does not exist", b.display());
        binaries.insert(0, ("baseline", b.clone(), false));
    }
    if on_etcd {
        ensure!(Etcd::available(), "--store etcd needs etcd installed");
        binaries = vec![("sled", this.clone(), false), ("etcd", this, true)];
    }
    let rounds = args
        .rounds
        .unwrap_or(if binaries.len() == 2 { 3 } else { 1 });
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); binaries.len()];
    for round in 0..rounds {
        let order: Vec<usize> = bench::alternate(&(0..binaries.len()).collect::<Vec<_>>(), round);
        for i in order {
            let (name, bin, etcd) = &binaries[i];
            eprintln!("round {}/{rounds}: {name} ({})", round + 1, bin.display());
            results[i].push(measure(bin.clone(), *etcd).await?);
        }
    }
    let medians: Vec<Vec<f64>> = results
        .iter()
        .map(|rs| {
            (0..METRICS.len())
                .map(|m| median(&rs.iter().map(|r| r[m]).collect::<Vec<_>>()))
                .collect()
        })
        .collect();

    let mut header = vec![if on_etcd {
        "apiserver"
    } else {
        "apiserver (sled)"
    }];
    header.extend(binaries.iter().map(|(n, _, _)| *n));
    if binaries.len() == 2 {
        header.push(if on_etcd {
            "etcd / sled"
        } else {
            "this / baseline"
        });
    }
    let mut table = Table::new(&header);
    let mut json_rows = Vec::new();
    for (m, metric) in METRICS.iter().enumerate() {
        let mut row = vec![metric.to_string()];
        row.extend(medians.iter().map(|v| cell(v[m])));
        if let [base, this] = medians.as_slice() {
            row.push(bench::ratio(this[m], base[m]));
        }
        json_rows.push(json!({
            "metric": metric,
            "values": binaries.iter().zip(&medians).map(|((n, _, _), v)| json!({"build": n, "median": v[m]})).collect::<Vec<_>>(),
        }));
        table.row(row);
    }
    println!("{}", table.markdown());
    println!("(median of {rounds} round(s) per build, run alternately)");

    let rbac = authorized_gets("Node,RBAC").await?;
    let allow = authorized_gets("AlwaysAllow").await?;
    let mut authz = Table::new(&[
        "get as a non-admin user, 1,000 RoleBindings (ms)",
        "Node,RBAC",
        "AlwaysAllow",
        "Node,RBAC / AlwaysAllow",
    ]);
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (r, a) = (ms(percentile(&rbac, p)), ms(percentile(&allow, p)));
        authz.row(vec![name.into(), cell(r), cell(a), bench::ratio(r, a)]);
    }
    println!("\n{}", authz.markdown());
    let quantiles = |gets: &[Duration]| json!({"p50_ms": ms(percentile(gets, 0.5)), "p99_ms": ms(percentile(gets, 0.99))});
    bench::write_json(
        &args.out_dir,
        if on_etcd {
            "apiserver-etcd"
        } else {
            "apiserver"
        },
        &json!({
            "rounds": rounds,
            "metrics": json_rows,
            "authorization": {"rbac": quantiles(&rbac), "always_allow": quantiles(&allow)},
        }),
    )?;
    Ok(())
}

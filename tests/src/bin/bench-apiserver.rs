//! `cargo xtask bench apiserver`: the apiserver's throughput and latency, measured.
//!
//! Starts `ekube server` on loopback over a fresh data directory and, with one kube-rs client,
//! measures: creates per second (16 concurrent writers), p50/p99 of get and of list over
//! 10,000 pods, the delay from a write to its delivery on 100 watchers, and the server's RSS;
//! then the cost of authorization: get p50/p99 for a user outside `system:masters` with 1,000
//! RoleBindings in the namespace, under `RBAC` and under `AlwaysAllow`, on two fresh servers.
//! Prints a markdown table and writes JSON next to it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ekube_tests::ServerProcess;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}]}
    }))
    .expect("valid pod")
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

#[tokio::main]
async fn main() -> Result<()> {
    let out_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/bench".into());
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let n = 10_000;

    // Creates per second.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(16) {
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
    let creates_per_sec = n as f64 / started.elapsed().as_secs_f64();

    // Get latency.
    let mut gets = Vec::new();
    for i in 0..1000 {
        let t = Instant::now();
        pods.get(&format!("p{:05}", (i * 7) % n)).await?;
        gets.push(t.elapsed());
    }
    gets.sort();
    // List latency: all 10,000 and a label-selected tenth.
    let mut lists = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let l = pods.list(&ListParams::default()).await?;
        assert_eq!(l.items.len(), n);
        lists.push(t.elapsed());
    }
    lists.sort();
    let mut selected = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        pods.list(&ListParams::default().labels("shard=3")).await?;
        selected.push(t.elapsed());
    }
    selected.sort();

    // Watch delivery latency with 100 watchers.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    for _ in 0..100 {
        let (cms, tx, rv) = (cms.clone(), tx.clone(), rv.clone());
        tokio::spawn(async move {
            let mut stream = cms
                .watch(&WatchParams::default().timeout(120), &rv)
                .await
                .expect("watch")
                .boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let kube::api::WatchEvent::Added(cm) = ev {
                    let i: usize = cm.metadata.name.unwrap_or_default()[1..]
                        .parse()
                        .unwrap_or(0);
                    let _ = tx.send((i, Instant::now()));
                }
            }
        });
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut sent = Vec::new();
    for i in 0..50 {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(format!("w{i}"));
        sent.push(Instant::now());
        cms.create(&PostParams::default(), &cm).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut delays = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delays.len() < 50 * 100 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((i, at))) => delays.push(at - sent[i]),
            _ => break,
        }
    }
    delays.sort();
    let rss = rss_kib(server.pid()) / 1024;
    drop(server);
    let rbac = authorized_gets("RBAC").await?;
    let allow = authorized_gets("AlwaysAllow").await?;

    let rows = [
        ("creates/s (16 writers)", format!("{creates_per_sec:.0}")),
        (
            "get p50 / p99 (ms)",
            format!(
                "{:.2} / {:.2}",
                ms(percentile(&gets, 0.5)),
                ms(percentile(&gets, 0.99))
            ),
        ),
        (
            "list 10,000 pods p50 / p99 (ms)",
            format!(
                "{:.0} / {:.0}",
                ms(percentile(&lists, 0.5)),
                ms(percentile(&lists, 0.99))
            ),
        ),
        (
            "list by label (1,000 of 10,000) p50 / p99 (ms)",
            format!(
                "{:.0} / {:.0}",
                ms(percentile(&selected, 0.5)),
                ms(percentile(&selected, 0.99))
            ),
        ),
        (
            "watch delivery, 100 watchers, p50 / p99 (ms)",
            format!(
                "{:.2} / {:.2} ({} of 5000 delivered)",
                ms(percentile(&delays, 0.5)),
                ms(percentile(&delays, 0.99)),
                delays.len()
            ),
        ),
        ("server RSS after the run (MiB)", rss.to_string()),
        (
            "get p50 / p99 as a non-admin user, 1,000 RoleBindings (ms): RBAC vs AlwaysAllow",
            format!(
                "{:.2} / {:.2} vs {:.2} / {:.2}",
                ms(percentile(&rbac, 0.5)),
                ms(percentile(&rbac, 0.99)),
                ms(percentile(&allow, 0.5)),
                ms(percentile(&allow, 0.99))
            ),
        ),
    ];
    println!("| apiserver (sled) | measured |\n|---|---|");
    for (k, v) in &rows {
        println!("| {k} | {v} |");
    }
    std::fs::create_dir_all(&out_dir)?;
    let json = json!(
        rows.iter()
            .map(|(k, v)| json!({"metric": k, "value": v}))
            .collect::<Vec<_>>()
    );
    let path = std::path::Path::new(&out_dir).join("apiserver.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

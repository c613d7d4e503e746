//! `ha-churn`: the write and watch load of the highly available control-plane test, run inside
//! a lab node (the test's own process stays out of the underlay).
//!
//! `--clients` writers share `--objects` ConfigMaps of `--namespace`, each writer talking to
//! one of `--servers` (writer `i` to server `i mod n`) and moving to the next server when its
//! own stops answering. Each object is created, updated (a merge patch setting `v: "1"`) and,
//! for every third, deleted. A write is *acknowledged* when its response arrived; a write whose
//! response was lost and that another attempt then found done is *uncertain*, and only
//! acknowledged ones are promised. One watcher per server follows the namespace from the start,
//! resuming from the last resourceVersion it saw when its stream ends (on another server if its
//! own is gone) and relisting after 410 Gone.
//!
//! Writes `--out` (JSON): the acknowledged writes with their resourceVersions, the uncertain
//! ones, and each watcher's events, relists and final view once it has seen the ConfigMap
//! `zz-end`, created after every other write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, Client};
use serde_json::{Value, json};

/// The ConfigMap written after every other.
const END_MARKER: &str = "zz-end";

#[derive(Parser)]
struct Args {
    /// An admin kubeconfig; its server is replaced by each of `--servers`.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The API servers, `https://host:port`, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    servers: Vec<String>,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    #[arg(long, default_value = "churn")]
    namespace: String,
    /// Give up on one write after this long without an answer from any server.
    #[arg(long, default_value = "120")]
    write_deadline_secs: u64,
    #[arg(long)]
    out: PathBuf,
}

/// Counters the test reads to know how far the writers are.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    retried: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut clients = Vec::new();
    for server in &args.servers {
        clients.push(client(&args.kubeconfig, server).await?);
    }
    let clients = Arc::new(clients);
    let started = Instant::now();

    let (start_rv, _) = list(&clients[0], &args.namespace).await?;
    let stop = Arc::new(tokio::sync::watch::channel(None::<u64>));
    let watchers: Vec<_> = (0..clients.len())
        .map(|i| {
            let (clients, ns, stop) = (clients.clone(), args.namespace.clone(), stop.clone());
            let start_rv = start_rv.clone();
            tokio::spawn(async move { watch(clients, i, ns, start_rv, stop.1.clone()).await })
        })
        .collect();

    let progress = Arc::new(Progress::default());
    let reporter = {
        let (progress, out) = (progress.clone(), args.out.with_extension("progress"));
        tokio::spawn(async move {
            loop {
                let line = format!(
                    "{} {}\n",
                    progress.done.load(Ordering::Relaxed),
                    progress.retried.load(Ordering::Relaxed)
                );
                let _ = tokio::fs::write(&out, line).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let deadline = Duration::from_secs(args.write_deadline_secs);
    let writers: Vec<_> = (0..args.clients)
        .map(|w| {
            let (clients, ns, progress) =
                (clients.clone(), args.namespace.clone(), progress.clone());
            let objects: Vec<usize> = (0..args.objects)
                .filter(|j| j % args.clients == w)
                .collect();
            tokio::spawn(async move {
                let mut writer = Writer::new(clients, w, ns, deadline, progress);
                for j in objects {
                    writer.object(j).await?;
                }
                anyhow::Ok((writer.acknowledged, writer.uncertain))
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    let mut uncertain = Vec::new();
    for w in writers {
        let (a, u) = w.await??;
        acknowledged.extend(a);
        uncertain.extend(u);
    }
    let writes_took = started.elapsed();

    // One last write, after all the others: watchers stop once they have seen it.
    let mut marker = Writer::new(
        clients.clone(),
        0,
        args.namespace.clone(),
        deadline,
        progress.clone(),
    );
    marker.write(END_MARKER, "create").await?;
    let end_rv: u64 = match marker.acknowledged.first() {
        Some(ack) => ack["rv"].as_str().unwrap_or_default().parse()?,
        None => {
            let api: Api<ConfigMap> = Api::namespaced(clients[0].clone(), &args.namespace);
            let cm = api.get(END_MARKER).await?;
            cm.metadata.resource_version.unwrap_or_default().parse()?
        }
    };
    acknowledged.extend(marker.acknowledged);
    uncertain.extend(marker.uncertain);
    stop.0.send_replace(Some(end_rv));
    let mut reports = Vec::new();
    for w in watchers {
        reports.push(w.await?);
    }
    reporter.abort();
    let report = json!({
        "acknowledged": acknowledged,
        "uncertain": uncertain,
        "retried": progress.retried.load(Ordering::Relaxed),
        "writes_ms": writes_took.as_millis() as u64,
        "end_rv": end_rv.to_string(),
        "watchers": reports,
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}

/// A client of `server` with the kubeconfig's credentials; failed requests are not retried
/// here (the writers do it, and count it).
async fn client(kubeconfig: &std::path::Path, server: &str) -> Result<Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    config.cluster_url = server.parse().with_context(|| format!("server {server}"))?;
    config.connect_timeout = Some(Duration::from_secs(2));
    // Longer than a watch's 30 s, so a quiet watch is not taken for a dead server.
    config.read_timeout = Some(Duration::from_secs(40));
    Ok(Client::try_from(config)?)
}

/// A list of the namespace: its resourceVersion and the objects' (name → resourceVersion).
async fn list(client: &Client, ns: &str) -> Result<(String, BTreeMap<String, String>)> {
    let list = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    let objects = list
        .items
        .into_iter()
        .map(|cm| {
            (
                cm.metadata.name.unwrap_or_default(),
                cm.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect();
    Ok((list.metadata.resource_version.unwrap_or_default(), objects))
}

struct Writer {
    clients: Arc<Vec<Client>>,
    /// Index of the server this writer talks to now.
    server: usize,
    namespace: String,
    deadline: Duration,
    progress: Arc<Progress>,
    acknowledged: Vec<Value>,
    uncertain: Vec<Value>,
}

/// What an attempt at a write came to.
enum Outcome {
    /// The response arrived: the write happened, at this resourceVersion.
    Done(String),
    /// The server says an earlier attempt, whose response was lost, did it already.
    DoneBefore,
}

impl Writer {
    fn new(
        clients: Arc<Vec<Client>>,
        server: usize,
        namespace: String,
        deadline: Duration,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            clients,
            server,
            namespace,
            deadline,
            progress,
            acknowledged: Vec::new(),
            uncertain: Vec::new(),
        }
    }

    fn api(&self) -> Api<ConfigMap> {
        let client = self.clients[self.server % self.clients.len()].clone();
        Api::namespaced(client, &self.namespace)
    }

    async fn object(&mut self, j: usize) -> Result<()> {
        let name = format!("cm-{j:04}");
        self.write(&name, "create").await?;
        self.write(&name, "update").await?;
        if j.is_multiple_of(3) {
            self.write(&name, "delete").await?;
        }
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Tries `op` on `name` until a server answers it, moving to the next server after a
    /// failure that may be the server's.
    async fn write(&mut self, name: &str, op: &str) -> Result<()> {
        let started = Instant::now();
        let mut tried_before = false;
        loop {
            let server = self.server % self.clients.len();
            match self.attempt(name, op, tried_before).await {
                Ok(Outcome::Done(rv)) => {
                    self.acknowledged
                        .push(json!({"name": name, "op": op, "rv": rv, "server": server}));
                    return Ok(());
                }
                Ok(Outcome::DoneBefore) => {
                    self.uncertain.push(json!({"name": name, "op": op}));
                    return Ok(());
                }
                Err(e) => {
                    if started.elapsed() > self.deadline {
                        bail!(
                            "{op} {name}: no server did it within {:?}: {e}",
                            self.deadline
                        );
                    }
                    self.progress.retried.fetch_add(1, Ordering::Relaxed);
                    tried_before = true;
                    self.server += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn attempt(&self, name: &str, op: &str, tried_before: bool) -> Result<Outcome> {
        let api = self.api();
        let rv_of = |cm: ConfigMap| cm.metadata.resource_version.unwrap_or_default();
        let result = match op {
            "create" => {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": name}, "data": {"v": "0"},
                }))?;
                api.create(&PostParams::default(), &cm).await.map(rv_of)
            }
            "update" => {
                let patch = json!({"data": {"v": "1"}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(rv_of)
            }
            _ => api
                .delete(name, &DeleteParams::default())
                .await
                .map(|either| either.map_left(rv_of).left_or(String::new())),
        };
        match result {
            Ok(rv) => Ok(Outcome::Done(rv)),
            // An earlier attempt whose answer was lost did it.
            Err(kube::Error::Api(e)) if tried_before && e.code == 409 && op == "create" => {
                Ok(Outcome::DoneBefore)
            }
            Err(kube::Error::Api(e)) if tried_before && e.code == 404 && op == "delete" => {
                Ok(Outcome::DoneBefore)
            }
            Err(kube::Error::Api(e)) if e.code < 500 && e.code != 429 => {
                bail!("{op} {name}: {} {}", e.code, e.message)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Follows the namespace from `rv` on server `i` (then the others, in turn, when it fails)
/// until it has seen the revision `stop` gives; returns what it saw.
async fn watch(
    clients: Arc<Vec<Client>>,
    i: usize,
    ns: String,
    mut rv: String,
    mut stop: tokio::sync::watch::Receiver<Option<u64>>,
) -> Value {
    let mut server = i;
    let mut events: Vec<Value> = Vec::new();
    let mut view: BTreeMap<String, String> = BTreeMap::new();
    let (mut reconnects, mut relists) = (0u32, 0u32);
    let mut error = None;
    let caught_up = |rv: &str, stop: &Option<u64>| {
        stop.is_some_and(|end| rv.parse::<u64>().is_ok_and(|seen| seen >= end))
    };
    let started = Instant::now();
    'outer: loop {
        if caught_up(&rv, &stop.borrow()) {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            error = Some("gave up after 600 s".to_string());
            break;
        }
        let api: Api<ConfigMap> = Api::namespaced(clients[server % clients.len()].clone(), &ns);
        let params = WatchParams::default().timeout(30);
        let stream = match api.watch(&params, &rv).await {
            Ok(stream) => stream,
            Err(_) => {
                server += 1;
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut stream = stream.boxed();
        loop {
            let next = tokio::select! {
                next = stream.try_next() => next,
                _ = stop.changed() => {
                    if caught_up(&rv, &stop.borrow()) { break 'outer; }
                    continue;
                }
            };
            match next {
                Ok(Some(WatchEvent::Added(cm) | WatchEvent::Modified(cm))) => {
                    let (name, at) = name_rv(&cm);
                    events.push(json!({"type": "set", "name": name, "rv": at}));
                    view.insert(name, at.clone());
                    rv = at;
                }
                Ok(Some(WatchEvent::Deleted(cm))) => {
                    let (name, at) = name_rv(&cm);
                    events.push(json!({"type": "deleted", "name": name, "rv": at}));
                    view.remove(&name);
                    rv = at;
                }
                Ok(Some(WatchEvent::Bookmark(b))) => rv = b.metadata.resource_version,
                Ok(Some(WatchEvent::Error(e))) if e.code == 410 => {
                    // Compacted past where this watcher was: relist, and go on from there.
                    relists += 1;
                    match list(&clients[server % clients.len()], &ns).await {
                        Ok((at, objects)) => {
                            events.push(json!({"type": "relist", "rv": at}));
                            view = objects;
                            rv = at;
                        }
                        Err(_) => server += 1,
                    }
                    break;
                }
                Ok(Some(WatchEvent::Error(_))) | Err(_) => {
                    server += 1;
                    break;
                }
                Ok(None) => break,
            }
            if caught_up(&rv, &stop.borrow()) {
                break 'outer;
            }
        }
        reconnects += 1;
    }
    if error.is_none() && !caught_up(&rv, &stop.borrow()) {
        error = Some(format!("stopped at {rv}"));
    }
    json!({
        "server": i,
        "events": events,
        "view": view,
        "reconnects": reconnects,
        "relists": relists,
        "last_rv": rv,
        "error": error,
    })
}

fn name_rv(cm: &ConfigMap) -> (String, String) {
    (
        cm.metadata.name.clone().unwrap_or_default(),
        cm.metadata.resource_version.clone().unwrap_or_default(),
    )
}

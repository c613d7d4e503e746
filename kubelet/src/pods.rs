//! The pod sources and their workers: pods bound to this node in the apiserver
//! (`fieldSelector=spec.nodeName=<node>`, mirror pods excepted) and static pods from
//! `--pod-manifest-path`, each handed to its own worker task through a watch channel holding
//! the newest version (`None` once the pod is gone). Once the first list is complete,
//! sandboxes (and pod directories) an earlier kubelet left for pods that no longer exist are
//! removed; the other sandboxes
//! are adopted by their workers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;

use super::Ctx;
use super::static_pods;
use super::worker::Worker;

/// How often the manifest directory is read and mirror pods are checked.
const STATIC_PERIOD: Duration = Duration::from_secs(2);

struct Entry {
    tx: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// Watches this node's pods and runs their workers until `stop`; workers are abandoned, not
/// torn down, so the containers keep running for the next kubelet to adopt.
pub async fn run(ctx: Arc<Ctx>, stop: impl std::future::Future<Output = ()>) {
    let started = std::time::SystemTime::now();
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node));
    let mut stream = watcher(api, config).boxed();
    let mut workers: HashMap<String, Entry> = HashMap::new();
    let mut statics: BTreeMap<String, Pod> = BTreeMap::new();
    sync_static(&ctx, &mut workers, &mut statics);
    let mut seen: Vec<String> = Vec::new();
    let mut cleared = false;
    let mut tick = tokio::time::interval(STATIC_PERIOD);
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                forget_finished(&ctx, &mut workers);
                sync_static(&ctx, &mut workers, &mut statics);
                continue;
            }
            e = stream.next() => e,
        };
        forget_finished(&ctx, &mut workers);
        let Some(event) = event else { break };
        match event {
            Ok(watcher::Event::Init) => seen.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                if static_pods::is_mirror(&pod) {
                    forward_mirror(&workers, &statics, &pod);
                } else {
                    seen.push(pod.metadata.uid.clone().unwrap_or_default());
                    deliver(&ctx, &mut workers, pod);
                }
            }
            Ok(watcher::Event::InitDone) => {
                for (uid, e) in &workers {
                    if !seen.contains(uid) && !statics.contains_key(uid) {
                        let _ = e.tx.send(None);
                    }
                }
                if !cleared {
                    cleared = true;
                    let keep: HashSet<String> =
                        seen.iter().chain(statics.keys()).cloned().collect();
                    ctx.devices.retain(&keep);
                    tokio::spawn(super::worker::clear_stale_sandboxes(
                        ctx.clone(),
                        keep,
                        started,
                    ));
                }
            }
            Ok(watcher::Event::Apply(pod)) => {
                if static_pods::is_mirror(&pod) {
                    forward_mirror(&workers, &statics, &pod);
                } else {
                    deliver(&ctx, &mut workers, pod);
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(e) = workers.get(pod.metadata.uid.as_deref().unwrap_or_default())
                    && !static_pods::is_mirror(&pod)
                {
                    let _ = e.tx.send(None);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    for e in workers.values() {
        e.task.abort();
    }
}

/// Drops the workers that are done (their pods torn down) from the worker table and the shared
/// pod set, which the kubelet API and the log directory clean-up read.
fn forget_finished(ctx: &Ctx, workers: &mut HashMap<String, Entry>) {
    workers.retain(|_, e| !e.task.is_finished());
    ctx.pods
        .lock()
        .expect("pod set lock")
        .retain(|uid, _| workers.contains_key(uid));
}

/// Reads the manifest directory: starts new static pods, stops removed ones (deleting their
/// mirrors), and keeps the mirrors of the others in place.
fn sync_static(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Entry>,
    statics: &mut BTreeMap<String, Pod>,
) {
    let Some(dir) = &ctx.config.pod_manifest_path else {
        return;
    };
    let desired = static_pods::read_dir(dir, &ctx.node);
    for (uid, pod) in statics.iter() {
        if desired.contains_key(uid) {
            continue;
        }
        tracing::info!(pod = ?pod.metadata.name, "static pod manifest removed");
        if let Some(e) = workers.get(uid) {
            let _ = e.tx.send(None);
        }
        let (ctx, ns, name) = (
            ctx.clone(),
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        // A manifest replaced by a new version keeps the name: its mirror is replaced by
        // ensure_mirror instead.
        if !desired
            .values()
            .any(|d| d.metadata.name.as_deref() == Some(name.as_str()))
        {
            tokio::spawn(async move {
                if let Err(e) = static_pods::delete_mirror(&ctx, &ns, &name, None).await {
                    tracing::warn!(pod = %name, error = %e, "deleting mirror pod");
                }
            });
        }
    }
    for (uid, pod) in &desired {
        if !statics.contains_key(uid) {
            tracing::info!(pod = ?pod.metadata.name, "static pod found");
            deliver(ctx, workers, pod.clone());
        }
        let (ctx, pod) = (ctx.clone(), pod.clone());
        tokio::spawn(async move {
            if let Err(e) = static_pods::ensure_mirror(&ctx, &pod).await {
                tracing::warn!(pod = ?pod.metadata.name, error = %e, "mirror pod not in place yet");
            }
        });
    }
    // Keep the first-seen copy (its config.seen annotation) of pods that did not change.
    let kept: BTreeMap<String, Pod> = desired
        .into_iter()
        .map(|(uid, pod)| {
            let p = statics.get(&uid).cloned().unwrap_or(pod);
            (uid, p)
        })
        .collect();
    *statics = kept;
}

/// Hands a static pod's worker the status its mirror shows, so a recreated (empty) mirror
/// gets the status written again.
fn forward_mirror(workers: &HashMap<String, Entry>, statics: &BTreeMap<String, Pod>, mirror: &Pod) {
    let Some(uid) = mirror
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(static_pods::MIRROR))
    else {
        return;
    };
    if let (Some(pod), Some(e)) = (statics.get(uid), workers.get(uid)) {
        let mut pod = pod.clone();
        pod.status = mirror.status.clone();
        let _ = e.tx.send(Some(pod));
    }
}

fn deliver(ctx: &Arc<Ctx>, workers: &mut HashMap<String, Entry>, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(e) = workers.get(&uid)
        && !e.task.is_finished()
    {
        let _ = e.tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    ctx.pods
        .lock()
        .expect("pod set lock")
        .insert(uid.clone(), rx.clone());
    let worker = Worker::new(ctx.clone(), rx);
    workers.insert(
        uid,
        Entry {
            tx,
            task: tokio::spawn(worker.run()),
        },
    );
}

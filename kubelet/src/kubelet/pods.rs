//! The pod watch: pods bound to this node (`fieldSelector=spec.nodeName=<node>`), each handed
//! to its own worker task through a watch channel holding the newest version (`None` once
//! the pod is gone from the apiserver).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;

use super::Ctx;
use super::worker::Worker;

struct Entry {
    tx: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// Watches this node's pods and runs their workers until `stop`.
pub async fn run(ctx: Arc<Ctx>, stop: impl std::future::Future<Output = ()>) {
    super::worker::clear_stale_sandboxes(&ctx).await;
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node));
    let mut stream = watcher(api, config).boxed();
    let mut workers: HashMap<String, Entry> = HashMap::new();
    let mut seen: Vec<String> = Vec::new();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            e = stream.next() => e,
        };
        workers.retain(|_, e| !e.task.is_finished());
        let Some(event) = event else { break };
        match event {
            Ok(watcher::Event::Init) => seen.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                seen.push(pod.metadata.uid.clone().unwrap_or_default());
                deliver(&ctx, &mut workers, pod);
            }
            Ok(watcher::Event::InitDone) => {
                for (uid, e) in &workers {
                    if !seen.contains(uid) {
                        let _ = e.tx.send(None);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => deliver(&ctx, &mut workers, pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(e) = workers.get(pod.metadata.uid.as_deref().unwrap_or_default()) {
                    let _ = e.tx.send(None);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

fn deliver(ctx: &Arc<Ctx>, workers: &mut HashMap<String, Entry>, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(e) = workers.get(&uid) {
        let _ = e.tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    let worker = Worker::new(ctx.clone(), rx);
    workers.insert(uid, Entry { tx, task: tokio::spawn(worker.run()) });
}

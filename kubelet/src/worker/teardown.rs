//! Releasing what a pod held: its containers stopped, its network (CNI DEL) and sandbox
//! released, its directory removed, and its deletion confirmed to the apiserver; and, at
//! start-up, clearing the sandboxes and directories an earlier kubelet left for pods that
//! are gone.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Preconditions};

use super::container::stop_gracefully;
use super::{POD_UID_LABEL, Worker, pod_key, record_event};
use crate::cri;
use crate::status::View;
use crate::{Config, Ctx, cni, sandbox, volumes};

/// Removes sandboxes a previous kubelet left for pods other than those in `keep` (by UID),
/// and the directories of such pods (those this kubelet, started at `started`, did not make).
pub(crate) async fn clear_stale_sandboxes(
    ctx: Arc<Ctx>,
    keep: std::collections::HashSet<String>,
    started: std::time::SystemTime,
) {
    let mut rc = ctx.rc.clone();
    let Ok(list) = rc
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
    else {
        return;
    };
    for sb in list.into_inner().items.into_iter().filter(|s| {
        s.labels
            .get(POD_UID_LABEL)
            .is_some_and(|uid| !keep.contains(uid))
    }) {
        tracing::info!(sandbox = %sb.id, "removing sandbox left by an earlier kubelet");
        remove_sandbox(&mut rc, &ctx.config, &sb.id).await;
    }
    clear_orphaned_pod_dirs(&ctx.config.root_dir, &keep, started);
}

/// Tears sandbox `id` down as the kubelet does: its network through CNI (while the runtime
/// still knows its namespace), then stop and remove. Returns the pod it held, when known.
pub(crate) async fn remove_sandbox(
    rc: &mut crate::runtime::RuntimeClient,
    config: &Config,
    id: &str,
) -> Option<cri::PodSandboxMetadata> {
    let mut meta = None;
    if let Ok(st) = rc
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
    {
        let st = st.into_inner();
        meta = st.status.and_then(|s| s.metadata);
        if let (Some(netns), Some(meta)) = (st.info.get(crate::runtime::NETNS_INFO_KEY), &meta) {
            let at = cni::Attachment {
                container_id: id,
                netns,
                namespace: &meta.namespace,
                name: &meta.name,
                uid: &meta.uid,
            };
            let _ = cni::del(&config.cni_conf_dir, &config.cni_bin_dir, &at).await;
        }
    }
    let _ = rc
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await;
    let _ = rc
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await;
    meta
}

/// Removes the directory of pod `uid` (its volumes, unmounted first) under the kubelet's root.
fn remove_pod_dir(root: &std::path::Path, uid: &str) {
    if let Err(e) = volumes::remove_unmounting(&volumes::pod_dir(root, uid)) {
        tracing::warn!(%uid, error = %e, "removing pod directory");
    }
}

/// Removes the directories of pods not in `keep` that were last changed before `started`
/// (left by an earlier kubelet for pods deleted while it was down), as upstream's
/// housekeeping does; a pod that arrived since has its directory made after `started`.
fn clear_orphaned_pod_dirs(
    root: &std::path::Path,
    keep: &std::collections::HashSet<String>,
    started: std::time::SystemTime,
) {
    for entry in std::fs::read_dir(volumes::pods_dir(root))
        .into_iter()
        .flatten()
        .flatten()
    {
        let uid = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < started);
        if old && !keep.contains(&uid) {
            tracing::info!(%uid, "removing the directory of a pod that is gone");
            remove_pod_dir(root, &uid);
        }
    }
}

impl Worker {
    /// Stops every container (preStop hook, SIGTERM, then SIGKILL once `grace` seconds have
    /// passed), then releases the network, the sandbox and the volumes.
    pub(super) async fn teardown(&mut self, pod: Option<&Pod>, grace: i64) {
        let known = pod.cloned().or_else(|| self.last_pod.clone());
        if let Some(uid) = known.as_ref().and_then(|p| p.metadata.uid.as_deref()) {
            self.ctx.tokens.forget_pod(uid);
        }
        let specs: Vec<Container> = known
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned())
            .unwrap_or_default();
        let mut stops = Vec::new();
        for (name, t) in &mut self.containers {
            t.stop_prober();
            let Some(id) = t.id.clone() else { continue };
            let running = matches!(t.view, Some(View::Running { .. }));
            if let Some(pod) = pod
                && running
            {
                record_event(
                    &self.ctx,
                    pod,
                    "Normal",
                    "Killing",
                    format!("Stopping container {name}"),
                )
                .await;
            }
            let spec = specs
                .iter()
                .find(|c| &c.name == name)
                .cloned()
                .filter(|_| running);
            match &known {
                Some(p) => stops.push(stop_gracefully(
                    self.ctx.clone(),
                    p.clone(),
                    spec,
                    id,
                    ip.clone(),
                    grace,
                )),
                None => stops.push(stop_gracefully(
                    self.ctx.clone(),
                    Pod::default(),
                    None,
                    id,
                    ip.clone(),
                    grace,
                )),
            }
        }
        futures::future::join_all(stops).await;
        if let Some(pod) = pod {
            self.release(pod).await;
        } else if let Some(pod) = self.last_pod.clone() {
            self.release(&pod).await;
        } else {
            self.release_unknown().await;
        }
        // Whichever way the pod went (graceful deletion, removed from the apiserver at once
        // as finished pods are, a static pod's manifest removed), its volumes go with it.
        if let Some(uid) = known
            .as_ref()
            .and_then(|p| p.metadata.uid.as_deref())
            .filter(|uid| !uid.is_empty())
        {
            self.ctx.devices.release(uid);
            remove_pod_dir(&self.ctx.config.root_dir, uid);
        }
    }

    async fn release_unknown(&mut self) {
        if let Some(sb) = self.sandbox.take() {
            let mut rc = self.ctx.rc.clone();
            let _ = rc
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await;
            let _ = rc
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sb.id,
                })
                .await;
        }
    }

    /// CNI DEL (for a sandbox with a network of its own), then stop and remove the sandbox
    /// (and with it the containers).
    pub(super) async fn release(&mut self, pod: &Pod) {
        let Some(sb) = self.sandbox.take() else {
            return;
        };
        let meta = sandbox::metadata(pod);
        let at = cni::Attachment {
            container_id: &sb.id,
            netns: &sb.netns,
            namespace: &meta.namespace,
            name: &meta.name,
            uid: &meta.uid,
        };
        if sb.netns.is_empty() {
            tracing::debug!(pod = %pod_key(pod), "sandbox in the node's network: no CNI DEL");
        } else if let Err(e) = cni::del(
            &self.ctx.config.cni_conf_dir,
            &self.ctx.config.cni_bin_dir,
            &at,
        )
        .await
        {
            tracing::warn!(pod = %pod_key(pod), error = %e, "CNI DEL");
        }
        let mut rc = self.ctx.rc.clone();
        if let Err(e) = rc
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await
        {
            tracing::warn!(pod = %pod_key(pod), error = %e, "stopping sandbox");
        }
        if let Err(e) = rc
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await
        {
            tracing::warn!(pod = %pod_key(pod), error = %e, "removing sandbox");
        }
        for t in self.containers.values_mut() {
            t.id = None;
        }
        tracing::info!(pod = %pod_key(pod), sandbox = %sb.id, "pod resources released");
    }

    pub(super) async fn confirm_deletion(&self, pod: &Pod) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
            .await
        {
            Ok(_) => tracing::info!(pod = %pod_key(pod), "pod deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod_key(pod), error = %e, "confirming pod deletion"),
        }
    }
}

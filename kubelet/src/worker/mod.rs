//! One worker per pod: a level-triggered loop that, on every change of the pod and at least
//! once a second, drives the runtime toward the pod spec — sandbox and CNI ADD, image pulls
//! per `imagePullPolicy`, init containers in order, then the containers, restarts per
//! `restartPolicy` with back-off — and writes `pods/status`. On deletion it stops the
//! containers gracefully, releases the network and sandbox, and confirms the deletion.
//!
//! This module holds the worker's state, its loop and the sync that ties the steps together,
//! and the pod's sandbox. Each step lives beside its kin: a container's start, restart
//! back-off, probes and stop in [`container`], its image in [`image`], what the worker writes
//! to `pods/status` in [`pod_status`], taking over what an earlier kubelet left in [`adopt`],
//! ephemeral containers (`kubectl debug`) in [`ephemeral`], and releasing a pod's resources in
//! [`teardown`].

mod adopt;
mod container;
mod ephemeral;
mod image;
mod pod_status;
mod teardown;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekube_api::events::{EventType, Recorder};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;

use super::status::{self, View};
use super::{Ctx, cni, dns, probe, sandbox, volumes};
use crate::cri;
use container::grace_period;
pub(super) use teardown::{clear_stale_sandboxes, remove_sandbox};

/// Label carrying the pod UID on sandboxes and containers.
pub(crate) const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// What the worker tracks per container name.
#[derive(Default)]
struct Tracked {
    /// Current CRI container.
    id: Option<String>,
    view: Option<View>,
    last: Option<View>,
    restarts: i32,
    image_id: String,
    /// Next restart or pull not before this instant.
    not_before: Option<Instant>,
    backoff: Duration,
    pull_failures: u32,
    /// When the last pull failed.
    pull_failed_at: Option<Instant>,
    /// The prober of the running container, with that container's ID.
    prober: Option<(String, tokio::task::JoinHandle<()>)>,
}

impl Tracked {
    fn stop_prober(&mut self) {
        if let Some((_, task)) = self.prober.take() {
            task.abort();
        }
    }
}

struct Sandbox {
    id: String,
    netns: String,
    ips: Vec<String>,
}

pub struct Worker {
    ctx: Arc<Ctx>,
    rx: watch::Receiver<Option<Pod>>,
    sandbox: Option<Sandbox>,
    containers: HashMap<String, Tracked>,
    start_time: Option<Time>,
    written: Option<serde_json::Value>,
    /// When a status differing from `written` was first computed; `None` while they agree.
    /// A failed write keeps it, so the next write's sync time counts from the first change.
    unsynced_since: Option<Instant>,
    finished: bool,
    /// The newest pod seen, for releasing resources after it vanished from the apiserver.
    last_pod: Option<Pod>,
    /// What the probers concluded, by container name.
    verdicts: probe::Verdicts,
    /// Probers wake the worker through this when a verdict changes.
    wake: (watch::Sender<()>, watch::Receiver<()>),
    /// Whether the runtime was searched for this pod's sandbox left by an earlier kubelet.
    adopted: bool,
    /// Whether the pod got the devices it asks for (or asks for none).
    admitted: bool,
    /// When this worker first saw the pod; `None` once its start-up was measured (or when
    /// it was adopted running, so there is nothing to measure).
    first_seen: Option<Instant>,
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A pod's log directory, `<pod-logs-dir>/<namespace>_<name>_<uid>` as upstream names it.
pub(super) fn pod_log_dir(
    logs_dir: &std::path::Path,
    namespace: &str,
    name: &str,
    uid: &str,
) -> PathBuf {
    logs_dir.join(format!("{namespace}_{name}_{uid}"))
}

/// Records an event about `pod` from this kubelet.
pub(super) async fn record_event(ctx: &Ctx, pod: &Pod, type_: &str, reason: &str, message: String) {
    Recorder::on_node(ctx.client.clone(), "kubelet", &ctx.node)
        .record(pod, EventType::parse(type_), reason, &message)
        .await;
}

impl Worker {
    pub fn new(ctx: Arc<Ctx>, rx: watch::Receiver<Option<Pod>>) -> Self {
        Self {
            ctx,
            rx,
            sandbox: None,
            containers: HashMap::new(),
            start_time: None,
            written: None,
            unsynced_since: None,
            finished: false,
            last_pod: None,
            verdicts: Default::default(),
            wake: watch::channel(()),
            adopted: false,
            admitted: false,
            first_seen: Some(Instant::now()),
        }
    }

    pub async fn run(mut self) {
        loop {
            let pod = self.rx.borrow_and_update().clone();
            match pod {
                None => {
                    // A static pod whose manifest went away stops gracefully; a pod removed
                    // from the apiserver without a graceful deletion does not wait.
                    let grace = self
                        .last_pod
                        .as_ref()
                        .filter(|p| super::static_pods::is_static(p))
                        .map(|p| grace_period(p, None))
                        .unwrap_or(0);
                    self.teardown(None, grace).await;
                    return;
                }
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    let grace = pod
                        .metadata
                        .deletion_grace_period_seconds
                        .or(pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds))
                        .unwrap_or(30);
                    self.teardown(Some(&pod), grace).await;
                    self.confirm_deletion(&pod).await;
                    return;
                }
                Some(pod) => {
                    self.refresh_downward_volumes(&pod);
                    self.refresh_token_volumes(&pod).await;
                    self.last_pod = Some(pod.clone());
                    if let Err(e) = self.sync(&pod).await {
                        tracing::warn!(pod = %pod_key(&pod), error = %e, "pod sync failed");
                    }
                }
            }
            tokio::select! {
                changed = self.rx.changed() => if changed.is_err() {
                    self.teardown(None, 0).await;
                    return;
                },
                _ = self.wake.1.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Brings downwardAPI volume files up to date when the pod's labels or annotations changed
    /// since the last version this worker saw (or, for a pod adopted from an earlier kubelet,
    /// may have changed while none ran).
    fn refresh_downward_volumes(&self, pod: &Pod) {
        if let Some(last) = &self.last_pod
            && last.metadata.labels == pod.metadata.labels
            && last.metadata.annotations == pod.metadata.annotations
        {
            return;
        }
        if let Err(e) =
            volumes::refresh_downward_volumes(pod, &self.pod_dir(pod), &self.ctx.allocatable)
        {
            tracing::warn!(pod = %pod_key(pod), error = %e, "refreshing downwardAPI volumes");
        }
    }

    /// Rewrites projected volumes whose ServiceAccount token is due for a refresh.
    async fn refresh_token_volumes(&self, pod: &Pod) {
        let (ctx, dir) = (&self.ctx, self.pod_dir(pod));
        if let Err(e) =
            volumes::refresh_token_volumes(&ctx.client, &ctx.tokens, pod, &dir, &ctx.allocatable)
                .await
        {
            tracing::warn!(pod = %pod_key(pod), error = %e, "refreshing service account tokens");
        }
    }

    async fn event(&self, pod: &Pod, type_: &str, reason: &str, message: String) {
        record_event(&self.ctx, pod, type_, reason, message).await;
    }

    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        volumes::pod_dir(
            &self.ctx.config.root_dir,
            pod.metadata.uid.as_deref().unwrap_or_default(),
        )
    }

    fn log_dir(&self, pod: &Pod) -> PathBuf {
        pod_log_dir(
            &self.ctx.config.pod_logs_dir,
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default(),
        )
    }

    /// The pod's sandbox config (upstream's `generatePodSandboxConfig`).
    fn sandbox_config(&self, pod: &Pod) -> Result<sandbox::Built, String> {
        let cfg = &self.ctx.config;
        let host = dns::read_host_config(&cfg.resolv_conf)?;
        let node = sandbox::NodeInputs {
            dns: dns::Node {
                cluster_dns: &cfg.cluster_dns,
                cluster_domain: &cfg.cluster_domain,
                host: host.as_ref(),
            },
            cgroup_root: &cfg.cgroup_root,
            log_directory: self.log_dir(pod).display().to_string(),
        };
        sandbox::config(pod, &node)
    }

    /// Applies `--pod-max-pids` to the pod's cgroup, which holds all its containers (as
    /// upstream's pod-level pids limit).
    fn limit_pids(&self, config: &cri::PodSandboxConfig) -> Result<(), String> {
        let Ok(max) = u64::try_from(self.ctx.config.pod_max_pids) else {
            return Ok(());
        };
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.as_str())
            .unwrap_or_default();
        match crate::cgroups::Mounts::read().set_pids_max(parent, max) {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(
                    "no pids cgroup controller on this host: --pod-max-pids is not enforced"
                );
                Ok(())
            }
            Err(e) => Err(format!("setting pids.max of cgroup {parent}: {e}")),
        }
    }

    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<(), super::Error> {
        if self.sandbox.is_some() {
            return Ok(());
        }
        let mut rc = self.ctx.rc.clone();
        let config = match self.sandbox_config(pod) {
            Ok(built) => {
                for warning in built.dns_warnings {
                    self.event(pod, "Warning", "DNSConfigForming", warning)
                        .await;
                }
                built.config
            }
            Err(e) => {
                let msg = format!("Failed to create pod sandbox: {e}");
                self.event(pod, "Warning", "FailedCreatePodSandBox", msg.clone())
                    .await;
                return Err(super::Error::Config(msg));
            }
        };
        let id = rc
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        if let Err(e) = self.limit_pids(&config) {
            let _ = rc
                .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await;
            let msg = format!("Failed to create pod sandbox: {e}");
            self.event(pod, "Warning", "FailedCreatePodSandBox", msg.clone())
                .await;
            return Err(super::Error::Config(msg));
        }
        if sandbox::host_network(pod) {
            // The node's network: no CNI, and the pod's addresses are the node's.
            let ips = self.ctx.node_ip.iter().map(|ip| ip.to_string()).collect();
            tracing::info!(pod = %pod_key(pod), sandbox = %id, "sandbox in the node's network");
            self.sandbox = Some(Sandbox {
                id,
                netns: String::new(),
                ips,
            });
            return Ok(());
        }
        let st = rc
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await?
            .into_inner();
        let netns = st
            .info
            .get(crate::runtime::NETNS_INFO_KEY)
            .cloned()
            .unwrap_or_default();
        let meta = config.metadata.clone().unwrap_or_default();
        let at = cni::Attachment {
            container_id: &id,
            netns: &netns,
            namespace: &meta.namespace,
            name: &meta.name,
            uid: &meta.uid,
        };
        match cni::add(
            &self.ctx.config.cni_conf_dir,
            &self.ctx.config.cni_bin_dir,
            &at,
        )
        .await
        {
            Ok(ips) => {
                tracing::info!(pod = %pod_key(pod), sandbox = %id, ?ips, "sandbox networked");
                self.sandbox = Some(Sandbox { id, netns, ips });
                Ok(())
            }
            Err(e) => {
                let _ = cni::del(
                    &self.ctx.config.cni_conf_dir,
                    &self.ctx.config.cni_bin_dir,
                    &at,
                )
                .await;
                let _ = rc
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await;
                self.event(
                    pod,
                    "Warning",
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                )
                .await;
                Err(e)
            }
        }
    }

    async fn sync(&mut self, pod: &Pod) -> Result<(), super::Error> {
        if self.finished {
            return Ok(());
        }
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(Time(k8s_openapi::jiff::Timestamp::now())));
        }
        if !self.adopted {
            self.adopted = true;
            self.adopt(pod).await;
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if self.sandbox.is_none() && matches!(phase, Some("Succeeded" | "Failed")) {
                // Finished under an earlier kubelet: its status stays, nothing runs again.
                self.finished = true;
                self.ctx
                    .devices
                    .release(pod.metadata.uid.as_deref().unwrap_or_default());
                return Ok(());
            }
        }
        if !self.admitted {
            if let Err(e) = self.ctx.devices.admit(pod).await {
                // As upstream's device manager admission handler: the pod fails, nothing runs.
                let message = format!("Allocate failed due to {e}, which is unexpected");
                self.reject(pod, "UnexpectedAdmissionError", message).await;
                self.finished = true;
                return Ok(());
            }
            self.admitted = true;
        }
        if let Err(e) = self.ensure_sandbox(pod).await {
            self.write_status(pod, "Pending").await;
            return Err(e);
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut init_done = true;
        let mut init_failed = false;
        for c in spec.init_containers.clone().unwrap_or_default() {
            let view = self.ensure_container(pod, &c, true, &policy).await;
            match view {
                View::Terminated { code: 0, .. } => continue,
                View::Terminated { .. } => {
                    init_failed = policy == "Never";
                    init_done = false;
                    break;
                }
                _ => {
                    init_done = false;
                    break;
                }
            }
        }
        if init_done {
            for c in &spec.containers {
                self.ensure_container(pod, c, false, &policy).await;
                self.sync_prober(pod, c);
            }
            for c in &spec.containers {
                self.kill_if_unhealthy(pod, c).await;
            }
        }
        self.ensure_ephemeral(pod).await;
        let owned: Vec<(View, bool)> = spec
            .containers
            .iter()
            .map(|c| {
                let t = self.containers.get(&c.name);
                (
                    t.and_then(|t| t.view.clone()).unwrap_or(WAITING),
                    t.is_some_and(|t| t.last.is_some()),
                )
            })
            .collect();
        let views: Vec<(&View, bool)> = owned.iter().map(|(v, l)| (v, *l)).collect();
        let phase = status::phase(&policy, init_failed, init_done, &views);
        self.write_status(pod, phase).await;
        if phase == "Succeeded" || phase == "Failed" {
            // Kubernetes releases a finished pod's sandbox and network; the status stays.
            self.finished = true;
            self.release(pod).await;
            self.ctx
                .devices
                .release(pod.metadata.uid.as_deref().unwrap_or_default());
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        for t in self.containers.values_mut() {
            t.stop_prober();
        }
    }
}

const WAITING: View = View::Waiting {
    reason: String::new(),
    message: String::new(),
};

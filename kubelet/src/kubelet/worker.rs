//! One worker per pod: a level-triggered loop that, on every change of the pod and at least
//! once a second, drives the runtime toward the pod spec — sandbox and CNI ADD, image pulls
//! per `imagePullPolicy`, init containers in order, then the containers, restarts per
//! `restartPolicy` with back-off — and writes `pods/status`. On deletion it stops the
//! containers gracefully, releases the network and sandbox, and confirms the deletion.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekube_api::events::{EventType, Recorder};
use k8s_openapi::api::core::v1::{Container, HostIP, Pod, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;

use super::status::{self, Observed, View};
use super::{Ctx, cni, dns, hosts, inputs, ownership, probe, sandbox, security, volumes};
use crate::cri;

/// First restart / pull back-off; doubles up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a failed pull shows as ErrImagePull before ImagePullBackOff.
const PULL_ERROR_SHOWN: Duration = Duration::from_secs(3);
/// Longest a postStart hook may run before it counts as failed.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);
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
    finished: bool,
    /// The newest pod seen, for releasing resources after it vanished from the apiserver.
    last_pod: Option<Pod>,
    /// What the probers concluded, by container name.
    verdicts: probe::Verdicts,
    /// Probers wake the worker through this when a verdict changes.
    wake: (watch::Sender<()>, watch::Receiver<()>),
    /// Whether the runtime was searched for this pod's sandbox left by an earlier kubelet.
    adopted: bool,
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

fn backoff_next(d: Duration) -> Duration {
    if d.is_zero() {
        BACKOFF
    } else {
        (d * 2).min(MAX_BACKOFF)
    }
}

/// Removes sandboxes a previous kubelet left for pods other than those in `keep` (by UID),
/// and the directories of such pods (those this kubelet, started at `started`, did not make).
pub async fn clear_stale_sandboxes(
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
pub(super) async fn remove_sandbox(
    rc: &mut crate::runtime::RuntimeClient,
    config: &super::Config,
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
pub(super) fn remove_pod_dir(root: &std::path::Path, uid: &str) {
    if let Err(e) = volumes::remove_unmounting(&volumes::pod_dir(root, uid)) {
        tracing::warn!(%uid, error = %e, "removing pod directory");
    }
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
            finished: false,
            last_pod: None,
            verdicts: Default::default(),
            wake: watch::channel(()),
            adopted: false,
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
                return Ok(());
            }
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
        }
        Ok(())
    }

    /// Drives one container toward running (or done); returns its current view.
    async fn ensure_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        policy: &str,
    ) -> View {
        let mut rc = self.ctx.rc.clone();
        let key = pod_key(pod);
        let t = self.containers.entry(c.name.clone()).or_default();
        if let Some(id) = t.id.clone() {
            let st = rc
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await;
            let Ok(st) = st.map(|s| s.into_inner().status.unwrap_or_default()) else {
                t.id = None;
                return t.view.clone().unwrap_or(WAITING);
            };
            if st.state == cri::ContainerState::ContainerRunning as i32 {
                let v = View::Running {
                    id: id.clone(),
                    started: st.started_at,
                };
                t.view = Some(v.clone());
                return v;
            }
            if st.state != cri::ContainerState::ContainerExited as i32 {
                return t.view.clone().unwrap_or(WAITING);
            }
            let done = View::Terminated {
                id: id.clone(),
                code: st.exit_code,
                reason: st.reason.clone(),
                message: st.message.clone(),
                started: st.started_at,
                finished: st.finished_at,
            };
            let restart = match policy {
                "Never" => false,
                "OnFailure" => st.exit_code != 0,
                _ => !init || st.exit_code != 0,
            };
            if !restart {
                t.view = Some(done.clone());
                return done;
            }
            let now = Instant::now();
            t.stop_prober();
            if st.finished_at - st.started_at > 600_000_000_000 {
                t.backoff = Duration::ZERO;
            }
            if t.not_before.is_none() && t.backoff.is_zero() {
                // As upstream: the first restart is immediate, later ones back off.
                t.backoff = BACKOFF;
                t.not_before = Some(now);
            }
            match t.not_before {
                None => {
                    let wait = t.backoff;
                    t.not_before = Some(now + wait);
                    t.backoff = backoff_next(wait);
                    let msg = format!(
                        "back-off {}s restarting failed container={} pod={}",
                        wait.as_secs(),
                        c.name,
                        pod.metadata.name.as_deref().unwrap_or_default()
                    );
                    t.view = Some(View::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: msg,
                    });
                    t.last = Some(done);
                    let v = t.view.clone().unwrap_or(WAITING);
                    self.event(
                        pod,
                        "Warning",
                        "BackOff",
                        "Back-off restarting failed container".into(),
                    )
                    .await;
                    return v;
                }
                Some(at) if now < at => return t.view.clone().unwrap_or(WAITING),
                Some(_) => {
                    t.not_before = None;
                    t.last = Some(done);
                    t.restarts += 1;
                    let _ = rc
                        .remove_container(cri::RemoveContainerRequest { container_id: id })
                        .await;
                    t.id = None;
                }
            }
        } else if let Some(at) = t.not_before {
            if Instant::now() < at {
                // A failed pull shows as ErrImagePull first, then as ImagePullBackOff while the
                // back-off runs.
                if let Some(View::Waiting { reason, message }) = t.view.clone()
                    && reason == "ErrImagePull"
                    && t.pull_failed_at
                        .is_some_and(|f| f.elapsed() >= PULL_ERROR_SHOWN)
                {
                    t.view = Some(View::Waiting {
                        reason: "ImagePullBackOff".into(),
                        message,
                    });
                    let image = c.image.clone().unwrap_or_default();
                    self.event(
                        pod,
                        "Normal",
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    )
                    .await;
                    let t = self.containers.entry(c.name.clone()).or_default();
                    return t.view.clone().unwrap_or(WAITING);
                }
                return t.view.clone().unwrap_or(WAITING);
            }
            t.not_before = None;
        }
        tracing::debug!(pod = %key, container = %c.name, "starting container");
        self.start_container(pod, c).await
    }

    fn set_waiting(&mut self, name: &str, reason: &str, message: String, retry: Duration) -> View {
        let t = self.containers.entry(name.to_owned()).or_default();
        let v = View::Waiting {
            reason: reason.into(),
            message,
        };
        t.view = Some(v.clone());
        t.not_before = Some(Instant::now() + retry);
        v
    }

    /// Makes the container's image present as its pull policy says; returns what `imageID`
    /// shows (`<registry>/<repository>@<manifest digest>`, or the image ID without one).
    async fn pull(&mut self, pod: &Pod, c: &Container) -> Result<String, View> {
        let image = c.image.clone().unwrap_or_default();
        let reference = match crate::runtime::reference::normalize(&image) {
            Ok(r) => r,
            Err(e) => {
                // Upstream's wording, reason and event for an unparsable image.
                let msg = format!("Failed to apply default image tag {image:?}: {e}");
                self.event(pod, "Warning", "InspectFailed", msg.clone())
                    .await;
                return Err(self.set_waiting(&c.name, "InvalidImageName", msg, MAX_BACKOFF));
            }
        };
        let mut ic = self.ctx.ic.clone();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':') {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let spec = cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let present = ic
            .image_status(cri::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image);
        if policy == "Never" || (policy == "IfNotPresent" && present.is_some()) {
            return match present {
                Some(i) => Ok(shown_image_id(i, &image)),
                None => {
                    let msg = format!(
                        "Container image \"{image}\" is not present with pull policy of Never"
                    );
                    self.event(pod, "Warning", "ErrImageNeverPull", msg.clone())
                        .await;
                    Err(self.set_waiting(&c.name, "ErrImageNeverPull", msg, BACKOFF))
                }
            };
        }
        self.event(
            pod,
            "Normal",
            "Pulling",
            format!("Pulling image \"{image}\""),
        )
        .await;
        let started = Instant::now();
        let auth =
            super::pull_secrets::credentials(&self.ctx.client, pod, reference.registry()).await;
        match ic
            .pull_image(cri::PullImageRequest {
                image: Some(spec.clone()),
                auth,
                sandbox_config: None,
            })
            .await
        {
            Ok(r) => {
                self.containers
                    .entry(c.name.clone())
                    .or_default()
                    .pull_failures = 0;
                self.event(
                    pod,
                    "Normal",
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                )
                .await;
                let id = r.into_inner().image_ref;
                let pulled = ic
                    .image_status(cri::ImageStatusRequest {
                        image: Some(spec),
                        verbose: false,
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().image);
                Ok(pulled.map(|i| shown_image_id(i, &image)).unwrap_or(id))
            }
            Err(e) => {
                let t = self.containers.entry(c.name.clone()).or_default();
                t.pull_failures += 1;
                let backoff =
                    (BACKOFF * 2u32.pow(t.pull_failures.saturating_sub(1).min(5))).min(MAX_BACKOFF);
                let msg = format!("Failed to pull image \"{image}\": {}", e.message());
                self.event(pod, "Warning", "Failed", msg.clone()).await;
                self.event(pod, "Warning", "Failed", "Error: ErrImagePull".into())
                    .await;
                // Shown as ErrImagePull now, as ImagePullBackOff while the back-off runs.
                let view = self.set_waiting(&c.name, "ErrImagePull", msg, backoff);
                self.containers
                    .entry(c.name.clone())
                    .or_default()
                    .pull_failed_at = Some(Instant::now());
                Err(view)
            }
        }
    }

    async fn start_container(&mut self, pod: &Pod, c: &Container) -> View {
        let image_id = match self.pull(pod, c).await {
            Ok(id) => id,
            Err(v) => return v,
        };
        let ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned())
            .unwrap_or_default();
        // The downward API sees the addresses even before the status carrying them is written.
        let mut known = pod.clone();
        let st = known.status.get_or_insert_with(Default::default);
        if !ip.is_empty() {
            st.pod_ip = Some(ip.clone());
        }
        if st.host_ip.is_none() {
            st.host_ip = self.ctx.node_ip.map(|ip| ip.to_string());
        }
        let allocatable = &self.ctx.allocatable;
        let env = match inputs::env(&self.ctx.client, &known, c, &ip, allocatable).await {
            Ok(env) => env,
            Err(e) => return self.config_error(pod, c, e.0).await,
        };
        let pod_dir = self.pod_dir(pod);
        let volumes = match volumes::prepare(
            &self.ctx.client,
            &self.ctx.tokens,
            &known,
            &pod_dir,
            allocatable,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => return self.mount_failed(pod, c, e).await,
        };
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let mut mounts = match volumes::mounts(c, &pod_dir, &volumes, &vars) {
            Ok(m) => m,
            Err(e) => return self.config_error(pod, c, e.0).await,
        };
        // As upstream: the kubelet's hosts file, once the pod has an address, unless the
        // container mounts its own.
        let ips = self
            .sandbox
            .as_ref()
            .map(|s| s.ips.clone())
            .unwrap_or_default();
        if !ips.is_empty() && !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            match hosts::write(&pod_dir, pod, &ips, &self.ctx.config.cluster_domain) {
                Ok(m) => mounts.push(m),
                Err(e) => return self.config_error(pod, c, e).await,
            }
        }
        let expand = |v: &Option<Vec<String>>| {
            v.clone()
                .unwrap_or_default()
                .iter()
                .map(|s| inputs::expand(s, &vars))
                .collect::<Vec<_>>()
        };
        let restarts = self
            .containers
            .get(&c.name)
            .map(|t| t.restarts)
            .unwrap_or(0);
        let volume_paths = volumes
            .iter()
            .map(|(name, v)| (name.clone(), v.path.clone()))
            .collect();
        if let Err(e) = ownership::apply_fs_group(&known, &volume_paths) {
            return self.config_error(pod, c, e).await;
        }
        let seccomp_root = self.ctx.config.root_dir.join("seccomp");
        let defaults = security::Defaults {
            seccomp_default: self.ctx.config.seccomp_default,
            seccomp_root: &seccomp_root,
        };
        let security_context = match security::container_context(pod, c, &defaults) {
            Ok(sc) => cri::LinuxContainerSecurityContext {
                namespace_options: Some(sandbox::namespace_options(pod)),
                ..sc
            },
            Err(e) => return self.config_error(pod, c, e).await,
        };
        let checked = match self.image_user(c).await {
            Ok((uid, user)) => security::verify_run_as_non_root(pod, c, uid, &user),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            return self.config_error(pod, c, e).await;
        }
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: c.name.clone(),
                attempt: restarts as u32,
            }),
            image: Some(cri::ImageSpec {
                image: c.image.clone().unwrap_or_default(),
                ..Default::default()
            }),
            command: expand(&c.command),
            args: expand(&c.args),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs: env
                .into_iter()
                .map(|(key, value)| cri::KeyValue { key, value })
                .collect(),
            mounts,
            labels: [
                (
                    POD_UID_LABEL.to_owned(),
                    pod.metadata.uid.clone().unwrap_or_default(),
                ),
                ("io.kubernetes.container.name".to_owned(), c.name.clone()),
            ]
            .into(),
            log_path: format!("{}/{restarts}.log", c.name),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(inputs::resources(c)),
                security_context: Some(security_context),
            }),
            ..Default::default()
        };
        let Some(sandbox_id) = self.sandbox.as_ref().map(|s| s.id.clone()) else {
            return WAITING;
        };
        let mut rc = self.ctx.rc.clone();
        let id = match rc
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id,
                config: Some(config),
                sandbox_config: self.sandbox_config(pod).ok().map(|b| b.config),
            })
            .await
        {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                let msg = e.message().to_owned();
                self.event(pod, "Warning", "Failed", format!("Error: {msg}"))
                    .await;
                return self.set_waiting(
                    &c.name,
                    "CreateContainerError",
                    msg,
                    Duration::from_secs(1),
                );
            }
        };
        self.event(
            pod,
            "Normal",
            "Created",
            format!("Created container {}", c.name),
        )
        .await;
        let t = self.containers.entry(c.name.clone()).or_default();
        t.id = Some(id.clone());
        t.image_id = image_id;
        t.not_before = None;
        match rc
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            Ok(_) => {
                self.event(
                    pod,
                    "Normal",
                    "Started",
                    format!("Started container {}", c.name),
                )
                .await;
                if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
                    let target = probe::Target {
                        container_id: id.clone(),
                        pod_ip: ip.clone(),
                    };
                    if let Err(e) =
                        probe::run_handler(&self.ctx, &h, c, &target, POST_START_TIMEOUT).await
                    {
                        let msg = hook_failure(&h, pod, c, &e);
                        self.event(pod, "Warning", "FailedPostStartHook", msg).await;
                        let grace = grace_period(pod, None);
                        self.event(pod, "Normal", "Killing", "FailedPostStartHook".into())
                            .await;
                        stop_gracefully(
                            self.ctx.clone(),
                            pod.clone(),
                            Some(c.clone()),
                            id.clone(),
                            ip.clone(),
                            grace,
                        )
                        .await;
                    }
                }
            }
            Err(e) => {
                self.event(pod, "Warning", "Failed", format!("Error: {}", e.message()))
                    .await;
            }
        }
        let st = rc
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|s| s.into_inner().status)
            .unwrap_or_default();
        let v = if st.state == cri::ContainerState::ContainerExited as i32 {
            View::Terminated {
                id,
                code: st.exit_code,
                reason: st.reason,
                message: st.message,
                started: st.started_at,
                finished: st.finished_at,
            }
        } else {
            View::Running {
                id,
                started: st.started_at,
            }
        };
        self.containers.entry(c.name.clone()).or_default().view = Some(v.clone());
        v
    }

    /// Starts the prober of a container that runs without one, stops it once not running.
    fn sync_prober(&mut self, pod: &Pod, c: &Container) {
        let ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned())
            .unwrap_or_default();
        let t = self.containers.entry(c.name.clone()).or_default();
        match t.view.clone() {
            Some(View::Running { id, .. }) if t.prober.as_ref().map(|p| &p.0) != Some(&id) => {
                t.stop_prober();
                let target = probe::Target {
                    container_id: id.clone(),
                    pod_ip: ip,
                };
                let task = probe::spawn(
                    self.ctx.clone(),
                    pod.clone(),
                    c.clone(),
                    target,
                    self.verdicts.clone(),
                    self.wake.0.clone(),
                );
                t.prober = Some((id.clone(), task));
            }
            Some(View::Running { .. }) => {}
            _ => t.stop_prober(),
        }
    }

    /// Kills a container whose liveness or startup probe failed; the restart policy decides
    /// what follows.
    async fn kill_if_unhealthy(&mut self, pod: &Pod, c: &Container) {
        let Some(Some(View::Running { id, .. })) =
            self.containers.get(&c.name).map(|t| t.view.clone())
        else {
            return;
        };
        let kill = {
            let mut v = self.verdicts.lock().expect("verdicts");
            let kill = v
                .get(&c.name)
                .filter(|v| v.container_id == id)
                .and_then(|v| v.kill.clone());
            if kill.is_some() {
                v.remove(&c.name);
            }
            kill
        };
        let Some((kind, _)) = kill else { return };
        self.event(
            pod,
            "Normal",
            "Killing",
            format!(
                "Container {} failed {kind} probe, will be restarted",
                c.name
            ),
        )
        .await;
        let probe = if kind == "startup" {
            c.startup_probe.as_ref()
        } else {
            c.liveness_probe.as_ref()
        };
        let ip = self
            .sandbox
            .as_ref()
            .and_then(|s| s.ips.first().cloned())
            .unwrap_or_default();
        stop_gracefully(
            self.ctx.clone(),
            pod.clone(),
            Some(c.clone()),
            id,
            ip,
            grace_period(pod, probe),
        )
        .await;
    }

    /// Takes over the sandbox and containers an earlier kubelet left running for this pod,
    /// with the restart counts and last states it reported.
    async fn adopt(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut rc = self.ctx.rc.clone();
        let filter = cri::PodSandboxFilter {
            label_selector: [(POD_UID_LABEL.to_owned(), uid.clone())].into(),
            state: Some(cri::PodSandboxStateValue {
                state: cri::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        };
        let Ok(list) = rc
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
        else {
            return;
        };
        let Some(sb) = list
            .into_inner()
            .items
            .into_iter()
            .max_by_key(|s| s.created_at)
        else {
            return;
        };
        let Ok(st) = rc
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sb.id.clone(),
                verbose: true,
            })
            .await
        else {
            return;
        };
        let netns = st
            .into_inner()
            .info
            .get(crate::runtime::NETNS_INFO_KEY)
            .cloned()
            .unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let ips: Vec<String> = status
            .pod_ips
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.ip)
            .collect();
        let reported: Vec<k8s_openapi::api::core::v1::ContainerStatus> = status
            .container_statuses
            .clone()
            .into_iter()
            .flatten()
            .chain(status.init_container_statuses.clone().into_iter().flatten())
            .collect();
        let filter = cri::ContainerFilter {
            pod_sandbox_id: sb.id.clone(),
            ..Default::default()
        };
        let containers = rc
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .map(|r| r.into_inner().containers)
            .unwrap_or_default();
        let mut newest: HashMap<String, cri::Container> = HashMap::new();
        for c in containers {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            if newest
                .get(&name)
                .is_none_or(|n| n.created_at < c.created_at)
            {
                newest.insert(name, c);
            }
        }
        for (name, c) in newest {
            let seen = reported.iter().find(|s| s.name == name);
            let attempt = c.metadata.as_ref().map(|m| m.attempt as i32).unwrap_or(0);
            let t = self.containers.entry(name.clone()).or_default();
            t.id = Some(c.id.clone());
            t.restarts = attempt.max(seen.map(|s| s.restart_count).unwrap_or(0));
            t.image_id = seen.map(|s| s.image_id.clone()).unwrap_or(c.image_ref);
            t.last = seen
                .and_then(|s| s.last_state.as_ref())
                .and_then(|l| l.terminated.as_ref())
                .map(view_of);
            tracing::info!(pod = %pod_key(pod), container = %name, id = %c.id, "adopted container");
        }
        // A container that ran but is gone from the runtime (the earlier kubelet stopped
        // between removing it for a restart and creating the next one) is started again as a
        // restart: its count goes on from what the apiserver shows rather than from zero.
        for s in status.container_statuses.iter().flatten() {
            let ran = has_run(s);
            if !ran || self.containers.get(&s.name).is_some_and(|t| t.id.is_some()) {
                continue;
            }
            let t = self.containers.entry(s.name.clone()).or_default();
            t.restarts = t.restarts.max(s.restart_count + 1);
            t.last = s
                .state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .or_else(|| s.last_state.as_ref().and_then(|l| l.terminated.as_ref()))
                .map(view_of);
            tracing::info!(pod = %pod_key(pod), container = %s.name, restarts = t.restarts, "container gone from the runtime; restarting it");
        }
        tracing::info!(pod = %pod_key(pod), sandbox = %sb.id, "adopted sandbox");
        self.first_seen = None;
        self.sandbox = Some(Sandbox {
            id: sb.id,
            netns,
            ips,
        });
    }

    /// The uid the image runs as, or its user name when that is not numeric, as the runtime
    /// reports them (neither: root).
    async fn image_user(&self, c: &Container) -> Result<(Option<i64>, String), String> {
        let image = c.image.clone().unwrap_or_default();
        let status = self
            .ctx
            .ic
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(|e| format!("reading the user of image {image:?}: {}", e.message()))?
            .into_inner()
            .image
            .ok_or_else(|| format!("image {image:?} is not present"))?;
        Ok((status.uid.map(|u| u.value), status.username))
    }

    async fn config_error(&mut self, pod: &Pod, c: &Container, msg: String) -> View {
        self.event(pod, "Warning", "Failed", format!("Error: {msg}"))
            .await;
        self.set_waiting(
            &c.name,
            "CreateContainerConfigError",
            msg,
            Duration::from_secs(2),
        )
    }

    /// A volume of the pod could not be set up: the container waits in ContainerCreating (the
    /// setup is retried) and a FailedMount event says why, as upstream.
    async fn mount_failed(&mut self, pod: &Pod, c: &Container, e: volumes::SetUpError) -> View {
        self.event(pod, "Warning", "FailedMount", e.to_string())
            .await;
        self.set_waiting(
            &c.name,
            "ContainerCreating",
            String::new(),
            Duration::from_secs(2),
        )
    }

    async fn write_status(&mut self, pod: &Pod, phase: &str) {
        if pod
            .status
            .as_ref()
            .is_none_or(|s| s.container_statuses.is_none())
        {
            // The apiserver's copy has none of what was written (a mirror pod recreated).
            self.written = None;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let previous = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let verdicts = self.verdicts.lock().expect("verdicts").clone();
        let observe = |c: &Container| -> k8s_openapi::api::core::v1::ContainerStatus {
            let t = self.containers.get(&c.name);
            let running = match t.and_then(|t| t.view.as_ref()) {
                Some(View::Running { id, .. }) => Some(id),
                _ => None,
            };
            let verdict = verdicts
                .get(&c.name)
                .filter(|v| Some(&v.container_id) == running);
            let started = running.is_some()
                && verdict
                    .map(|v| v.started)
                    .unwrap_or(c.startup_probe.is_none());
            let ready = running.is_some()
                && verdict
                    .map(|v| v.ready && v.kill.is_none())
                    .unwrap_or(c.startup_probe.is_none() && c.readiness_probe.is_none());
            let waiting = View::Waiting {
                reason: "PodInitializing".into(),
                message: String::new(),
            };
            // Shown normalised, as containerd reports it (`docker.io/library/nginx:alpine`).
            let image = c.image.as_deref().unwrap_or_default();
            let image = crate::runtime::reference::normalize(image)
                .map(|r| r.whole())
                .unwrap_or_else(|_| image.to_owned());
            status::container_status(&Observed {
                name: &c.name,
                image: &image,
                image_id: t.map(|t| t.image_id.as_str()).unwrap_or_default(),
                view: t.and_then(|t| t.view.as_ref()).unwrap_or(&waiting),
                last: t.and_then(|t| t.last.as_ref()),
                restarts: t.map(|t| t.restarts).unwrap_or(0),
                ready,
                started,
            })
        };
        let containers: Vec<_> = spec.containers.iter().map(observe).collect();
        if phase == "Running"
            && containers
                .iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            && let Some(seen) = self.first_seen.take()
        {
            crate::metrics::pod_started(seen.elapsed());
        }
        let inits: Vec<_> = spec
            .init_containers
            .clone()
            .unwrap_or_default()
            .iter()
            .map(observe)
            .collect();
        let init_done = spec
            .init_containers
            .clone()
            .unwrap_or_default()
            .iter()
            .all(|c| {
                matches!(
                    self.containers.get(&c.name).and_then(|t| t.view.as_ref()),
                    Some(View::Terminated { code: 0, .. })
                )
            });
        let ready = containers.iter().all(|c| c.ready) && phase == "Running";
        let done = phase == "Succeeded" || phase == "Failed";
        let not_ready = if done {
            Some("PodCompleted")
        } else if ready {
            None
        } else {
            Some("ContainersNotReady")
        };
        let conditions = vec![
            status::condition(
                &previous,
                "PodReadyToStartContainers",
                self.sandbox.is_some() && !done,
                None,
            ),
            status::condition(
                &previous,
                "Initialized",
                init_done,
                if init_done {
                    None
                } else {
                    Some("ContainersNotInitialized")
                },
            ),
            status::condition(&previous, "Ready", ready, not_ready),
            status::condition(&previous, "ContainersReady", ready, not_ready),
            status::condition(&previous, "PodScheduled", true, None),
        ];
        let ips = self
            .sandbox
            .as_ref()
            .map(|s| s.ips.clone())
            .or_else(|| {
                pod.status
                    .as_ref()
                    .and_then(|s| s.pod_ips.clone())
                    .map(|v| v.into_iter().map(|p| p.ip).collect())
            })
            .unwrap_or_default();
        let host_ip = self.ctx.node_ip.map(|ip| ip.to_string());
        let status = PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: host_ip.clone(),
            host_ips: host_ip.map(|ip| vec![HostIP { ip }]),
            pod_ip: ips.first().cloned(),
            pod_ips: (!ips.is_empty())
                .then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
            start_time: self.start_time.clone(),
            container_statuses: Some(containers),
            init_container_statuses: (!inits.is_empty()).then_some(inits),
            qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        // Compare without transition times so an unchanged status is not written again.
        let mut key = value.clone();
        if let Some(conds) = key["conditions"].as_array_mut() {
            for c in conds {
                c.as_object_mut().map(|o| o.remove("lastTransitionTime"));
            }
        }
        if self.written.as_ref() == Some(&key) {
            return;
        }
        if value.get("initContainerStatuses").is_none() {
            value["initContainerStatuses"] = serde_json::Value::Null;
        }
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": value})),
            )
            .await
        {
            Ok(_) => self.written = Some(key),
            Err(e) => tracing::warn!(pod = %pod_key(pod), error = %e, "writing pod status"),
        }
    }

    /// Stops every container (preStop hook, SIGTERM, then SIGKILL once `grace` seconds have
    /// passed), then releases the network, the sandbox and the volumes.
    async fn teardown(&mut self, pod: Option<&Pod>, grace: i64) {
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
    async fn release(&mut self, pod: &Pod) {
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

    async fn confirm_deletion(&self, pod: &Pod) {
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

/// The grace period for stopping a container: the probe's override, else the pod's.
fn grace_period(pod: &Pod, probe: Option<&k8s_openapi::api::core::v1::Probe>) -> i64 {
    probe
        .and_then(|p| p.termination_grace_period_seconds)
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0)
}

/// A failed hook as upstream's event message words it.
fn hook_failure(
    h: &k8s_openapi::api::core::v1::LifecycleHandler,
    pod: &Pod,
    c: &Container,
    error: &str,
) -> String {
    let what = if let Some(e) = &h.exec {
        format!(
            "Exec lifecycle hook ({:?})",
            e.command.clone().unwrap_or_default()
        )
    } else if let Some(g) = &h.http_get {
        format!(
            "HTTP lifecycle hook ({})",
            g.path.clone().unwrap_or_default()
        )
    } else {
        "Lifecycle hook".to_owned()
    };
    let m = &pod.metadata;
    format!(
        "{what} for Container \"{}\" in Pod \"{}_{}({})\" failed - error: {error}",
        c.name,
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or("default"),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// Stops one container: its preStop hook (when `c` has one), then SIGTERM and SIGKILL once
/// `grace` seconds have passed since the start (at least 2 s after a hook, as upstream).
async fn stop_gracefully(
    ctx: Arc<Ctx>,
    pod: Pod,
    c: Option<Container>,
    id: String,
    ip: String,
    grace: i64,
) {
    let began = Instant::now();
    let mut timeout = grace;
    if let Some(c) = &c
        && let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone())
    {
        let target = probe::Target {
            container_id: id.clone(),
            pod_ip: ip,
        };
        if let Err(e) = probe::run_handler(
            &ctx,
            &h,
            c,
            &target,
            Duration::from_secs(grace.max(1) as u64),
        )
        .await
        {
            record_event(
                &ctx,
                &pod,
                "Warning",
                "FailedPreStopHook",
                hook_failure(&h, &pod, c, &e),
            )
            .await;
        }
        timeout = (grace - began.elapsed().as_secs() as i64).max(if grace > 0 { 2 } else { 0 });
    }
    let mut rc = ctx.rc.clone();
    if let Err(e) = rc
        .stop_container(cri::StopContainerRequest {
            container_id: id,
            timeout,
        })
        .await
    {
        tracing::warn!(error = %e, "stopping container");
    }
}

/// A container state the previous kubelet reported, as a [`View`].
fn view_of(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> View {
    let ns = |t: &Option<Time>| t.as_ref().map(|t| t.0.as_nanosecond() as i64).unwrap_or(0);
    View::Terminated {
        id: t
            .container_id
            .clone()
            .unwrap_or_default()
            .trim_start_matches("ekube://")
            .to_owned(),
        code: t.exit_code,
        reason: t.reason.clone().unwrap_or_default(),
        message: t.message.clone().unwrap_or_default(),
        started: ns(&t.started_at),
        finished: ns(&t.finished_at),
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

/// What `imageID` shows for a stored image: its first repo digest, as containerd reports it,
/// else the image ID.
/// The `imageID` shown for a container of `image` started as `name`: the image's repo digest
/// in `name`'s repository (an image pulled from two registries has one per registry), else its
/// first one, else its ID.
fn shown_image_id(image: cri::Image, name: &str) -> String {
    crate::runtime::reference::repo_digest_for(&image.repo_digests, name)
        .cloned()
        .unwrap_or(image.id)
}

/// Whether a reported container has run at least once. One waiting in back-off shows no ID
/// and no running or terminated state, but its count and last state say it ran.
fn has_run(s: &k8s_openapi::api::core::v1::ContainerStatus) -> bool {
    s.container_id.is_some()
        || s.restart_count > 0
        || s.last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        || s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_in_back_off_has_run() {
        use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus};
        let waiting = |restarts| ContainerStatus {
            restart_count: restarts,
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(has_run(&waiting(3)));
        assert!(!has_run(&waiting(0)));
    }
}

//! A container's steps, as the pod worker takes them: start it (env, volumes and mounts,
//! security context, create and start through CRI, the postStart hook), restart it per
//! `restartPolicy` with back-off, keep its prober running and kill it when a liveness or
//! startup probe fails, and stop it gracefully (preStop hook, SIGTERM, then SIGKILL).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{POD_UID_LABEL, WAITING, Worker, pod_key, record_event};
use crate::cri;
use crate::status::View;
use crate::{Ctx, devices, hosts, inputs, ownership, probe, sandbox, security, volumes};

/// First restart / pull back-off; doubles up to [`MAX_BACKOFF`].
pub(super) const BACKOFF: Duration = Duration::from_secs(10);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a failed pull shows as ErrImagePull before ImagePullBackOff.
const PULL_ERROR_SHOWN: Duration = Duration::from_secs(3);
/// Longest a postStart hook may run before it counts as failed.
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

fn backoff_next(d: Duration) -> Duration {
    if d.is_zero() {
        BACKOFF
    } else {
        (d * 2).min(MAX_BACKOFF)
    }
}

impl Worker {
    /// Drives one container toward running (or done); returns its current view.
    pub(super) async fn ensure_container(
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

    pub(super) fn set_waiting(
        &mut self,
        name: &str,
        reason: &str,
        message: String,
        retry: Duration,
    ) -> View {
        let t = self.containers.entry(name.to_owned()).or_default();
        let v = View::Waiting {
            reason: reason.into(),
            message,
        };
        t.view = Some(v.clone());
        t.not_before = Some(Instant::now() + retry);
        v
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
        let mut namespaces = sandbox::namespace_options(pod);
        // An ephemeral container with a target joins that container's PID namespace (CRI's
        // TARGET mode), unless the pod's containers already share the node's or the pod's.
        if let Some(target) = super::ephemeral::target_of(pod, &c.name)
            && namespaces.pid == cri::NamespaceMode::Container as i32
        {
            let Some(id) = self.containers.get(target).and_then(|t| t.id.clone()) else {
                let msg = format!("target container {target} is not running");
                return self.config_error(pod, c, msg).await;
            };
            namespaces.pid = cri::NamespaceMode::Target as i32;
            namespaces.target_id = id;
        }
        let security_context = match security::container_context(pod, c, &defaults) {
            Ok(sc) => cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces),
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
        let mut config = cri::ContainerConfig {
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
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(inputs::resources(c)),
                security_context: Some(security_context),
            }),
            ..Default::default()
        };
        // The devices admission gave the container, and the plugins' last word before start.
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        devices::apply(&self.ctx.devices.container(uid, &c.name), &mut config);
        if let Err(e) = self.ctx.devices.pre_start(uid, &c.name).await {
            return self.config_error(pod, c, e).await;
        }
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
    pub(super) fn sync_prober(&mut self, pod: &Pod, c: &Container) {
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
    pub(super) async fn kill_if_unhealthy(&mut self, pod: &Pod, c: &Container) {
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
}

/// The grace period for stopping a container: the probe's override, else the pod's.
pub(super) fn grace_period(pod: &Pod, probe: Option<&k8s_openapi::api::core::v1::Probe>) -> i64 {
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
pub(super) async fn stop_gracefully(
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

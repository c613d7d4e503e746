//! The CRI services: sandbox and container bookkeeping here, the gRPC handlers in [`rpc`]
//! and [`images`], restart recovery in [`recovery`].
//!
//! State is kept in memory behind one mutex that is never held across an await, and mirrored
//! to records on disk ([`store`]) so a restarted runtime takes over what still runs. Each
//! container runs under a [`shim`] and is watched by a task that records the exit (and whether
//! the memory cgroup OOM-killed it) before `runc delete` frees the cgroups.

mod images;
mod recovery;
mod rpc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::image::ImageStore;
use super::runc::Runc;
use super::{Config, Error, Result, sandbox, shim, spec, store, streaming};
use crate::cri::{self, ContainerState, PodSandboxState};

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn new_id() -> String {
    format!(
        "{:016x}{:016x}{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    config: cri::PodSandboxConfig,
    created_at: i64,
    ready: bool,
    dir: PathBuf,
}

#[derive(Debug, Clone)]
struct Container {
    status: cri::ContainerStatus,
    sandbox_id: String,
    dir: PathBuf,
    cgroups_path: String,
    /// Flips to true once the process has exited and been recorded.
    exited: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, Container>,
}

/// The runtime: image store, runc, and what runs.
pub struct Runtime {
    root: PathBuf,
    images: ImageStore,
    runc: Runc,
    state: Arc<Mutex<State>>,
    /// The open CRI log of each supervised container, swapped by ReopenContainerLog.
    logs: Arc<Mutex<HashMap<String, LogFile>>>,
    /// What this host lets containers be granted (capabilities held, AppArmor).
    host: super::security::HostSecurity,
    /// Images (by ID) containers are being created from right now, so that RemoveImage does
    /// not take their layers while the container is not recorded yet. Also the lock under
    /// which RemoveImage checks and forgets an image.
    creating: Arc<Mutex<HashMap<String, usize>>>,
    /// Where exec, attach and port-forward sessions are served.
    streaming: streaming::Server,
}

/// Keeps an image pinned while a container is created from it.
struct Pin {
    creating: Arc<Mutex<HashMap<String, usize>>>,
    id: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = creating.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                creating.remove(&self.id);
            }
        }
    }
}

/// A container's CRI log file, shared by the tasks copying its stdout and stderr.
type LogFile = Arc<tokio::sync::Mutex<tokio::fs::File>>;

/// Whether the memory cgroup at `rel` recorded an OOM kill (v1 `memory.oom_control` or v2
/// `memory.events`).
fn oom_killed(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    crate::cgroups::hierarchies().iter().any(|m| {
        ["memory.oom_control", "memory.events"].iter().any(|f| {
            std::fs::read_to_string(m.join(rel).join(f))
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
        })
    })
}

/// Removes the cgroup directory `rel` (and its empty children) from every hierarchy.
fn remove_cgroup(rel: &str) {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    for m in crate::cgroups::hierarchies() {
        let dir = m.join(rel);
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children
                .flatten()
                .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
            {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

fn umount(path: &Path) {
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 with a valid path; failure (not mounted) is ignored.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_overlay(lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let lowerdir = lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, tgt, fs, d) = (
        c("overlay"),
        c(&target.display().to_string()),
        c("overlay"),
        c(&data),
    );
    // SAFETY: mount(2) with valid C strings.
    if unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            0,
            d.as_ptr().cast(),
        )
    } != 0
    {
        return Err(Error::io("mounting overlay at", target)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

impl Runtime {
    /// Opens the runtime's state directories, clears what a previous run left, and imports
    /// images from the images directory.
    pub async fn open(config: &Config) -> Result<Self> {
        for d in [
            config.root.join("sandboxes"),
            config.root.join("containers"),
            config.runc_root.clone(),
        ] {
            std::fs::create_dir_all(&d).map_err(Error::io("creating", &d))?;
        }
        let registries = super::registries::Registries::load(
            &config.registries_config,
            config.insecure_registries.clone(),
        )?;
        let images = ImageStore::open(&config.root.join("images"), registries)?;
        let runc = Runc {
            binary: config.runc.clone(),
            root: config.runc_root.clone(),
        };
        let streaming = streaming::Server::start(config.streaming_address, runc.clone()).await?;
        let runtime = Self {
            root: config.root.clone(),
            images,
            runc,
            streaming,
            state: Arc::new(Mutex::new(State::default())),
            logs: Default::default(),
            host: super::security::HostSecurity::probe(),
            creating: Default::default(),
        };
        runtime.recover().await;
        if let Some(dir) = &config.images_dir {
            runtime.images.import_dir(dir).await?;
        }
        super::addon_image::import(&runtime.images).await?;
        Ok(runtime)
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    fn sandbox(&self, id: &str) -> Result<Sandbox> {
        self.state
            .lock()
            .expect("state")
            .sandboxes
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id}")))
    }

    fn container(&self, id: &str) -> Result<Container> {
        self.state
            .lock()
            .expect("state")
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {id}")))
    }

    /// The container `id`, which must be running.
    fn running(&self, id: &str) -> std::result::Result<Container, Status> {
        let c = self.container(id)?;
        if c.status.state != ContainerState::ContainerRunning as i32 {
            return Err(Status::failed_precondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(c)
    }

    /// The network namespace of sandbox `sb`; `None` when it shares the node's.
    fn netns(sb: &Sandbox) -> Option<PathBuf> {
        let own_net =
            sandbox::kept(&sandbox::options(&sb.config)).is_ok_and(|kinds| kinds.contains(&"net"));
        own_net.then(|| sandbox::ns_path(&sb.dir, "net"))
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Container)) {
        if let Some(c) = self.state.lock().expect("state").containers.get_mut(id) {
            f(c);
        }
        Self::persist(&self.state.lock().expect("state"), id);
    }

    async fn run_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let kinds = sandbox::kept(&sandbox::options(&config))?;
        let id = new_id();
        let dir = self.root.join("sandboxes").join(&id);
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        let hostname = if !kinds.contains(&"uts") {
            // The node's UTS namespace: the pod has the node's hostname, as with containerd.
            node_hostname()
        } else if config.hostname.is_empty() {
            config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| id[..12].to_owned())
        } else {
            config.hostname.clone()
        };
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let _ = std::fs::write(dir.join("cgroup_parent"), &parent);
        sandbox::write_etc(&dir, &hostname, config.dns_config.as_ref())?;
        let d = dir.clone();
        tokio::task::spawn_blocking(move || sandbox::create_namespaces(&d, &hostname, &kinds))
            .await
            .map_err(|e| Error::Sandbox(e.to_string()))??;
        if !config.log_directory.is_empty() {
            let _ = std::fs::create_dir_all(&config.log_directory);
        }
        tracing::info!(sandbox = %id, pod = ?config.metadata.as_ref().map(|m| &m.name), "sandbox ready");
        let sb = Sandbox {
            id: id.clone(),
            config,
            created_at: now_ns(),
            ready: true,
            dir,
        };
        Self::persist_sandbox(&sb);
        self.state
            .lock()
            .expect("state")
            .sandboxes
            .insert(id.clone(), sb);
        Ok(id)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let ids: Vec<String> = {
            let state = self.state.lock().expect("state");
            if !state.sandboxes.contains_key(id) {
                return Ok(());
            }
            state
                .containers
                .values()
                .filter(|c| c.sandbox_id == id)
                .map(|c| c.status.id.clone())
                .collect()
        };
        for c in ids {
            self.stop_container(&c, 0).await?;
        }
        if let Some(s) = self.state.lock().expect("state").sandboxes.get_mut(id) {
            s.ready = false;
            Self::persist_sandbox(s);
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let Ok(sb) = self.sandbox(id) else {
            return Ok(());
        };
        self.stop_sandbox(id).await?;
        let ids: Vec<String> = {
            let state = self.state.lock().expect("state");
            state
                .containers
                .values()
                .filter(|c| c.sandbox_id == id)
                .map(|c| c.status.id.clone())
                .collect()
        };
        for c in ids {
            self.remove_container(&c).await?;
        }
        sandbox::remove_namespaces(&sb.dir)?;
        let parent = sb
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let shared = self
            .state
            .lock()
            .expect("state")
            .sandboxes
            .values()
            .any(|s| {
                s.id != id && s.config.linux.as_ref().map(|l| &l.cgroup_parent) == Some(&parent)
            });
        if !shared {
            remove_cgroup(&parent);
        }
        let _ = std::fs::remove_dir_all(&sb.dir);
        self.state.lock().expect("state").sandboxes.remove(id);
        tracing::info!(sandbox = %id, "sandbox removed");
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        let sb = self.sandbox(sandbox_id)?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let (image, _pin) = self.pin_image(&image_name)?;
        let id = new_id();
        let dir = self.root.join("containers").join(&id);
        let rootfs = dir.join("rootfs");
        for d in [&rootfs, &dir.join("upper"), &dir.join("work")] {
            std::fs::create_dir_all(d).map_err(Error::io("creating", d))?;
        }
        if config.stdin {
            shim::make_stdin(&dir)?;
        }
        let lower: Vec<PathBuf> = image
            .layers
            .iter()
            .rev()
            .map(|l| self.images.layer_dir(l))
            .collect();
        let parent = sb
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let parent = if parent.is_empty() {
            "/ekube-runtime".to_owned()
        } else {
            parent
        };
        let cgroups_path = format!("{}/{id}", parent.trim_end_matches('/'));
        let target_pid_namespace = self.target_pid_namespace(&config).await?;
        let built = (|| {
            mount_overlay(&lower, &dir.join("upper"), &dir.join("work"), &rootfs)?;
            let spec = spec::build(&spec::SpecInput {
                config: &config,
                image: &image.config,
                sandbox_dir: &sb.dir,
                hostname: &sandbox::hostname(&sb.dir),
                sandbox_namespaces: &sandbox::kept(&sandbox::options(&sb.config))?,
                target_pid_namespace: target_pid_namespace.as_deref(),
                cgroups_path: cgroups_path.clone(),
                rootfs: &rootfs,
                host: &self.host,
            })?;
            spec.save(dir.join("config.json")).map_err(Error::spec)
        })();
        if let Err(e) = built {
            umount(&rootfs);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let log_path = if config.log_path.is_empty() {
            String::new()
        } else {
            Path::new(&sb.config.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        if let Some(p) = Path::new(&log_path).parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let status = cri::ContainerStatus {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: ContainerState::ContainerCreated as i32,
            created_at: now_ns(),
            image: config.image.clone(),
            image_ref: image.image_ref(&image_name),
            image_id: image.id.to_string(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config.mounts.clone(),
            log_path,
            ..Default::default()
        };
        let (exited, _) = tokio::sync::watch::channel(false);
        let mut state = self.state.lock().expect("state");
        state.containers.insert(
            id.clone(),
            Container {
                status,
                sandbox_id: sandbox_id.to_owned(),
                dir,
                cgroups_path,
                exited,
            },
        );
        Self::persist(&state, &id);
        Ok(id)
    }

    /// In PID namespace mode `TARGET`, the namespace of the running target container.
    async fn target_pid_namespace(&self, config: &cri::ContainerConfig) -> Result<Option<PathBuf>> {
        let Some(ns) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .filter(|o| o.pid == cri::NamespaceMode::Target as i32)
        else {
            return Ok(None);
        };
        let target = self.container(&ns.target_id)?;
        match self.runc.pid(&target.status.id).await {
            Some(pid) => Ok(Some(PathBuf::from(format!("/proc/{pid}/ns/pid")))),
            None => Err(Error::InvalidArgument(format!(
                "target container {} is not running",
                ns.target_id
            ))),
        }
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        if c.status.state != ContainerState::ContainerCreated as i32 {
            return Err(Error::InvalidArgument(format!(
                "container {id} is not in created state"
            )));
        }
        let runc_log = c.dir.join("runc.log");
        // Only a created container starts, once: no PID file of an earlier run is there.
        let pid_file = shim::pid_path(&c.dir);
        let child = shim::spawn(&self.runc, id, &c.dir, &runc_log)?;
        self.update(id, |c| {
            c.status.state = ContainerState::ContainerRunning as i32;
            c.status.started_at = now_ns();
        });
        let mut exited = c.exited.subscribe();
        self.supervise(&c, Some(child)).await;
        // Report start-up failures (bad command, missing binary) from StartContainer itself;
        // runc's PID file says the command runs (a stat, cheap enough to look every few ms).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if *exited.borrow() {
                let c = self.container(id)?;
                if c.status.reason == "StartError" {
                    return Err(Error::Runc {
                        action: format!("start {id}"),
                        reason: c.status.message,
                    });
                }
                return Ok(());
            }
            if pid_file.exists() || tokio::time::Instant::now() > deadline {
                return Ok(());
            }
            tokio::select! {
                _ = exited.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    }

    /// Tails a running container's output into its CRI log and records its exit: from the
    /// shim `child` when this run started it, else by watching for the shim's exit file.
    async fn supervise(&self, c: &Container, child: Option<tokio::process::Child>) {
        let log_file = if c.status.log_path.is_empty() {
            "/dev/null".to_owned()
        } else {
            c.status.log_path.clone()
        };
        let file = match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(container = %c.status.id, error = %e, log = %log_file, "opening container log");
                match tokio::fs::OpenOptions::new()
                    .append(true)
                    .open("/dev/null")
                    .await
                {
                    Ok(f) => f,
                    Err(_) => return,
                }
            }
        };
        let log = Arc::new(tokio::sync::Mutex::new(file));
        self.logs
            .lock()
            .expect("logs")
            .insert(c.status.id.clone(), log.clone());
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let out = tokio::spawn(shim::tail(
            c.dir.clone(),
            "stdout",
            log.clone(),
            done_rx.clone(),
        ));
        let err = tokio::spawn(shim::tail(c.dir.clone(), "stderr", log, done_rx));
        let (state, logs, runc, id, dir, cgroups_path) = (
            self.state.clone(),
            self.logs.clone(),
            self.runc.clone(),
            c.status.id.clone(),
            c.dir.clone(),
            c.cgroups_path.clone(),
        );
        tokio::spawn(async move {
            match child {
                Some(mut child) => {
                    let _ = child.wait().await;
                }
                None => {
                    // Not our child: poll for the exit file; a shim that vanished without
                    // writing one (killed with its container) counts as an exit.
                    let mut gone = 0;
                    while shim::exit_code(&dir).is_none() && gone < 10 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if !matches!(
                            runc.status(&id).await.as_deref(),
                            Some("running" | "created" | "paused")
                        ) {
                            gone += 1;
                        }
                    }
                }
            }
            let _ = done_tx.send(true);
            let _ = tokio::join!(out, err);
            logs.lock().expect("logs").remove(&id);
            let code = shim::exit_code(&dir).unwrap_or(255);
            let runc_errors = runc_error(&dir.join("runc.log"));
            let oom = oom_killed(&cgroups_path);
            let _ = runc.delete(&id).await;
            let mut st = state.lock().expect("state");
            if let Some(c) = st.containers.get_mut(&id) {
                c.status.state = ContainerState::ContainerExited as i32;
                c.status.finished_at = now_ns();
                c.status.exit_code = code;
                (c.status.reason, c.status.message) =
                    if let Some(msg) = runc_errors.filter(|_| code != 0) {
                        c.status.exit_code = 128;
                        ("StartError".into(), msg)
                    } else if oom {
                        ("OOMKilled".into(), String::new())
                    } else if code == 0 {
                        ("Completed".into(), String::new())
                    } else {
                        ("Error".into(), String::new())
                    };
                tracing::info!(container = %id, exit_code = c.status.exit_code, reason = %c.status.reason, "container exited");
                let _ = c.exited.send(true);
            }
            Self::persist(&st, &id);
        });
    }

    async fn wait_exit(&self, c: &Container, timeout: Duration) -> bool {
        let mut rx = c.exited.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|e| *e))
            .await
            .is_ok()
    }

    /// Points a running container's log at a fresh file under its log path (after the
    /// kubelet renamed the old one away).
    async fn reopen_log(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        if c.status.state != ContainerState::ContainerRunning as i32 {
            return Err(Error::InvalidArgument(format!(
                "container {id} is not running"
            )));
        }
        let handle = self.logs.lock().expect("logs").get(id).cloned();
        let (Some(handle), false) = (handle, c.status.log_path.is_empty()) else {
            return Err(Error::InvalidArgument(format!("container {id} has no log")));
        };
        let path = PathBuf::from(&c.status.log_path);
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(Error::io("opening", &path))?;
        let mut current = handle.lock().await;
        let _ = tokio::io::AsyncWriteExt::flush(&mut *current).await;
        *current = file;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let c = self.container(id)?;
        if c.status.state != ContainerState::ContainerRunning as i32 {
            if c.status.state == ContainerState::ContainerCreated as i32 {
                self.update(id, |c| {
                    c.status.state = ContainerState::ContainerExited as i32;
                    c.status.finished_at = now_ns();
                    c.status.reason = "Error".into();
                });
            }
            return Ok(());
        }
        if timeout > 0 {
            let _ = self.runc.kill(id, "TERM").await;
            if self
                .wait_exit(&c, Duration::from_secs(timeout as u64))
                .await
            {
                return Ok(());
            }
        }
        let _ = self.runc.kill(id, "KILL").await;
        if !self.wait_exit(&c, Duration::from_secs(15)).await {
            return Err(Error::Timeout(format!(
                "container {id} did not exit after SIGKILL"
            )));
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let Ok(c) = self.container(id) else {
            return Ok(());
        };
        self.stop_container(id, 0).await?;
        self.runc.delete(id).await?;
        umount(&c.dir.join("rootfs"));
        let _ = std::fs::remove_dir_all(&c.dir);
        remove_cgroup(&c.cgroups_path);
        self.state.lock().expect("state").containers.remove(id);
        Ok(())
    }

    fn list_containers(&self, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
        let state = self.state.lock().expect("state");
        state
            .containers
            .values()
            .filter(|c| match &filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || c.status.id.starts_with(&f.id))
                        && (f.pod_sandbox_id.is_empty()
                            || c.sandbox_id.starts_with(&f.pod_sandbox_id))
                        && f.state.as_ref().is_none_or(|s| s.state == c.status.state)
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| c.status.labels.get(k) == Some(v))
                }
            })
            .map(|c| cri::Container {
                id: c.status.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.status.metadata.clone(),
                image: c.status.image.clone(),
                image_ref: c.status.image_ref.clone(),
                state: c.status.state,
                created_at: c.status.created_at,
                labels: c.status.labels.clone(),
                annotations: c.status.annotations.clone(),
                image_id: c.status.image_id.clone(),
            })
            .collect()
    }

    fn sandbox_status(sb: &Sandbox) -> cri::PodSandboxStatus {
        cri::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: if sb.ready {
                PodSandboxState::SandboxReady
            } else {
                PodSandboxState::SandboxNotready
            } as i32,
            created_at: sb.created_at,
            network: Some(cri::PodSandboxNetworkStatus::default()),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(sandbox::options(&sb.config)),
                }),
            }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            runtime_handler: String::new(),
        }
    }
}

/// The node's hostname, which a pod in the node's UTS namespace has.
fn node_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the valid buffer.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The `error`-level messages runc logged (JSON log), if any.
fn runc_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}

/// Key of `PodSandboxStatusResponse.info` holding the sandbox's network namespace path.
pub const NETNS_INFO_KEY: &str = "netns";

type R<T> = std::result::Result<Response<T>, Status>;

/// CPU and memory of `c` from its cgroup, as CRI `ContainerStats` (no rate: `usageNanoCores`
/// needs two samples, which the caller takes).
fn container_stats(mounts: &crate::cgroups::Mounts, c: &Container) -> cri::ContainerStats {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let value = |v: u64| Some(cri::UInt64Value { value: v });
    let memory = mounts.memory(&c.cgroups_path);
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.status.id.clone(),
            metadata: c.status.metadata.clone(),
            labels: c.status.labels.clone(),
            annotations: c.status.annotations.clone(),
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: mounts.cpu_ns(&c.cgroups_path).and_then(value),
            usage_nano_cores: None,
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: now,
            working_set_bytes: memory.as_ref().and_then(|m| value(m.working_set)),
            available_bytes: None,
            usage_bytes: memory.as_ref().and_then(|m| value(m.usage)),
            rss_bytes: memory.as_ref().and_then(|m| value(m.rss)),
            page_faults: memory.as_ref().and_then(|m| value(m.page_faults)),
            major_page_faults: memory.as_ref().and_then(|m| value(m.major_page_faults)),
        }),
        swap: None,
        writable_layer: None,
    }
}

//! The CRI services: sandbox and container bookkeeping, and the gRPC handlers.
//!
//! State is kept in memory behind one mutex that is never held across an await, and mirrored
//! to records on disk ([`store`]) so a restarted runtime takes over what still runs. Each
//! container runs under a [`shim`] and is watched by a task that records the exit (and whether
//! the memory cgroup OOM-killed it) before `runc delete` frees the cgroups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::image::ImageStore;
use super::runc::Runc;
use super::{Config, Error, Result, sandbox, shim, spec, store};
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
        let runtime = Self {
            root: config.root.clone(),
            images,
            runc: Runc {
                binary: config.runc.clone(),
                root: config.runc_root.clone(),
            },
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

    /// Takes over the sandboxes and containers an earlier run recorded: running containers
    /// keep running and are watched again, exited ones keep their exit status. What has no
    /// usable record (or lost its namespaces) is removed with its mounts and cgroups.
    async fn recover(&self) {
        let mut kept_sandboxes = Vec::new();
        for entry in std::fs::read_dir(self.root.join("sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = entry.path();
            let id = entry.file_name().to_string_lossy().into_owned();
            let kept = |r: &store::SandboxRecord| {
                sandbox::kept(&sandbox::options(&r.config))
                    .is_ok_and(|kinds| sandbox::namespaces_kept(&dir, &kinds))
            };
            match store::load_sandbox(&dir).filter(kept) {
                Some(r) => {
                    tracing::info!(sandbox = %id, "recovered sandbox");
                    self.state.lock().expect("state").sandboxes.insert(
                        id.clone(),
                        Sandbox {
                            id: id.clone(),
                            config: r.config,
                            created_at: r.created_at,
                            ready: r.ready,
                            dir,
                        },
                    );
                    kept_sandboxes.push(id);
                }
                None => {
                    let _ = sandbox::remove_namespaces(&dir);
                    if let Ok(parent) = std::fs::read_to_string(dir.join("cgroup_parent")) {
                        remove_cgroup(parent.trim());
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        let mut kept_containers = Vec::new();
        for entry in std::fs::read_dir(self.root.join("containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = entry.path();
            let id = entry.file_name().to_string_lossy().into_owned();
            let Some(r) =
                store::load_container(&dir).filter(|r| kept_sandboxes.contains(&r.sandbox_id))
            else {
                let _ = self.runc.delete(&id).await;
                umount(&dir.join("rootfs"));
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            };
            let running = r.status.state == ContainerState::ContainerRunning as i32;
            let (exited, _) = tokio::sync::watch::channel(!running);
            let c = Container {
                status: r.status,
                sandbox_id: r.sandbox_id,
                dir,
                cgroups_path: r.cgroups_path,
                exited,
            };
            self.state
                .lock()
                .expect("state")
                .containers
                .insert(id.clone(), c.clone());
            if running {
                tracing::info!(container = %id, "recovered running container");
                self.supervise(&c, None).await;
            }
            kept_containers.push(id);
        }
        for id in self
            .runc
            .list()
            .await
            .into_iter()
            .filter(|id| !kept_containers.contains(id))
        {
            tracing::info!(container = %id, "removing container left by an earlier run");
            let _ = self.runc.delete(&id).await;
        }
    }

    /// Saves a container's record (after each state change).
    fn persist(state: &State, id: &str) {
        if let Some(c) = state.containers.get(id) {
            let r = store::ContainerRecord {
                status: c.status.clone(),
                sandbox_id: c.sandbox_id.clone(),
                cgroups_path: c.cgroups_path.clone(),
            };
            if let Err(e) = store::save_container(&c.dir, &r) {
                tracing::warn!(container = %id, error = %e, "saving container record");
            }
        }
    }

    fn persist_sandbox(sb: &Sandbox) {
        let r = store::SandboxRecord {
            config: sb.config.clone(),
            created_at: sb.created_at,
            ready: sb.ready,
        };
        if let Err(e) = store::save_sandbox(&sb.dir, &r) {
            tracing::warn!(sandbox = %sb.id, error = %e, "saving sandbox record");
        }
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

    /// Finds `name` and pins it until the returned guard drops (after the container is
    /// recorded, or its creation failed).
    fn pin_image(&self, name: &str) -> Result<(super::image::ImageRecord, Pin)> {
        let mut creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let image = self
            .images
            .find(name)
            .ok_or_else(|| Error::NotFound(format!("image {name}")))?;
        let id = image.id.to_string();
        *creating.entry(id.clone()).or_default() += 1;
        let pin = Pin {
            creating: self.creating.clone(),
            id,
        };
        Ok((image, pin))
    }

    /// Removes `name` unless a container (in any state) uses it or one is being created from
    /// it: its layers are the lower layers of those containers' root file systems.
    async fn remove_image_named(&self, name: &str) -> Result<()> {
        let record = {
            let creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
            let Some(record) = self.images.find(name) else {
                return Ok(());
            };
            let id = record.id.to_string();
            let user = self
                .state
                .lock()
                .expect("state")
                .containers
                .values()
                .find(|c| c.status.image_id == id)
                .map(|c| c.status.id.clone());
            if let Some(container) = user {
                return Err(Error::InUse(format!(
                    "image {name} is in use by container {container}"
                )));
            }
            if creating.contains_key(&id) {
                return Err(Error::InUse(format!(
                    "image {name} is in use by a container being created"
                )));
            }
            self.images.forget(&record)?;
            record
        };
        self.images.prune(&record).await;
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
        let built = (|| {
            mount_overlay(&lower, &dir.join("upper"), &dir.join("work"), &rootfs)?;
            let spec = spec::build(&spec::SpecInput {
                config: &config,
                image: &image.config,
                sandbox_dir: &sb.dir,
                sandbox_namespaces: &sandbox::kept(&sandbox::options(&sb.config))?,
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

    async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        if c.status.state != ContainerState::ContainerCreated as i32 {
            return Err(Error::InvalidArgument(format!(
                "container {id} is not in created state"
            )));
        }
        let runc_log = c.dir.join("runc.log");
        let child = shim::spawn(&self.runc, id, &c.dir, &runc_log)?;
        self.update(id, |c| {
            c.status.state = ContainerState::ContainerRunning as i32;
            c.status.started_at = now_ns();
        });
        let mut exited = c.exited.subscribe();
        self.supervise(&c, Some(child)).await;
        // Report start-up failures (bad command, missing binary) from StartContainer itself.
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
            if self.runc.status(id).await.as_deref() == Some("running")
                || tokio::time::Instant::now() > deadline
            {
                return Ok(());
            }
            tokio::select! {
                _ = exited.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
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

    fn image_of(record: super::image::ImageRecord) -> cri::Image {
        let uid = record
            .config
            .user
            .split(':')
            .next()
            .and_then(|u| u.parse::<i64>().ok());
        cri::Image {
            id: record.id.to_string(),
            repo_tags: record.repo_tags.clone(),
            repo_digests: record.repo_digests.clone(),
            size: record.size,
            uid: uid.map(|value| cri::Int64Value { value }),
            username: if uid.is_none() {
                record.config.user.clone()
            } else {
                String::new()
            },
            spec: Some(cri::ImageSpec {
                image: record.id.into(),
                ..Default::default()
            }),
            // The node's own images cannot be pulled again: garbage collection leaves them.
            pinned: record
                .repo_tags
                .iter()
                .any(|t| super::addon_image::is_local(t)),
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
    }
}

#[tonic::async_trait]
impl cri::runtime_service_server::RuntimeService for Runtime {
    async fn version(&self, _: Request<cri::VersionRequest>) -> R<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "ekube".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> R<cri::RunPodSandboxResponse> {
        let config = req
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let pod_sandbox_id = self.run_sandbox(config).await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> R<cri::StopPodSandboxResponse> {
        self.stop_sandbox(&req.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> R<cri::RemovePodSandboxResponse> {
        self.remove_sandbox(&req.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> R<cri::PodSandboxStatusResponse> {
        let sb = self.sandbox(&req.into_inner().pod_sandbox_id)?;
        // The kubelet runs the CNI plugin itself (DESIGN.md §5) and needs the namespace path;
        // a sandbox in the node's network has none, so nothing is attached to or detached
        // from the node's own namespace.
        let own_net =
            sandbox::kept(&sandbox::options(&sb.config)).is_ok_and(|kinds| kinds.contains(&"net"));
        let info = own_net
            .then(|| {
                (
                    NETNS_INFO_KEY.to_owned(),
                    sandbox::ns_path(&sb.dir, "net").display().to_string(),
                )
            })
            .into_iter()
            .collect();
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(Self::sandbox_status(&sb)),
            info,
        }))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> R<cri::ListPodSandboxResponse> {
        let filter = req.into_inner().filter;
        let state = self.state.lock().expect("state");
        let items = state
            .sandboxes
            .values()
            .map(Self::sandbox_status)
            .filter(|s| match &filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || s.id.starts_with(&f.id))
                        && f.state.as_ref().is_none_or(|v| v.state == s.state)
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| s.labels.get(k) == Some(v))
                }
            })
            .map(|s| cri::PodSandbox {
                id: s.id,
                metadata: s.metadata,
                state: s.state,
                created_at: s.created_at,
                labels: s.labels,
                annotations: s.annotations,
                runtime_handler: s.runtime_handler,
            })
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> R<cri::CreateContainerResponse> {
        let req = req.into_inner();
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("config is required"))?;
        let container_id = Runtime::create_container(self, &req.pod_sandbox_id, config).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> R<cri::StartContainerResponse> {
        Runtime::start_container(self, &req.into_inner().container_id).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> R<cri::StopContainerResponse> {
        let req = req.into_inner();
        Runtime::stop_container(self, &req.container_id, req.timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> R<cri::RemoveContainerResponse> {
        Runtime::remove_container(self, &req.into_inner().container_id).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> R<cri::ListContainersResponse> {
        Ok(Response::new(cri::ListContainersResponse {
            containers: Runtime::list_containers(self, req.into_inner().filter),
        }))
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> R<cri::ContainerStatusResponse> {
        let c = self.container(&req.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(c.status),
            info: Default::default(),
        }))
    }

    async fn exec_sync(&self, req: Request<cri::ExecSyncRequest>) -> R<cri::ExecSyncResponse> {
        let req = req.into_inner();
        let c = self.container(&req.container_id)?;
        if c.status.state != ContainerState::ContainerRunning as i32 {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                req.container_id
            )));
        }
        let out = self
            .runc
            .exec(
                &req.container_id,
                &req.cmd,
                Duration::from_secs(req.timeout.max(0) as u64),
            )
            .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> R<cri::ReopenContainerLogResponse> {
        self.reopen_log(&req.into_inner().container_id).await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> R<cri::ContainerStatsResponse> {
        let c = self.container(&req.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(container_stats(&crate::cgroups::Mounts::read(), &c)),
        }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> R<cri::ListContainerStatsResponse> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let containers: Vec<Container> = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state
                .containers
                .iter()
                .filter(|(id, c)| {
                    (filter.id.is_empty() || **id == filter.id)
                        && (filter.pod_sandbox_id.is_empty()
                            || c.sandbox_id == filter.pod_sandbox_id)
                        && filter
                            .label_selector
                            .iter()
                            .all(|(k, v)| c.status.labels.get(k) == Some(v))
                        && c.status.state == ContainerState::ContainerRunning as i32
                })
                .map(|(_, c)| c.clone())
                .collect()
        };
        let mounts = crate::cgroups::Mounts::read();
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: containers
                .iter()
                .map(|c| container_stats(&mounts, c))
                .collect(),
        }))
    }

    async fn status(&self, _: Request<cri::StatusRequest>) -> R<cri::StatusResponse> {
        let cond = |t: &str| cri::RuntimeCondition {
            r#type: t.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
            }),
            info: Default::default(),
        }))
    }
}

#[tonic::async_trait]
impl cri::image_service_server::ImageService for Runtime {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> R<cri::ListImagesResponse> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let images = match filter {
            Some(f) => self.images.find(&f).into_iter().collect(),
            None => self.images.list(),
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.into_iter().map(Self::image_of).collect(),
        }))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> R<cri::ImageStatusResponse> {
        let image = req.into_inner().image.map(|i| i.image).unwrap_or_default();
        Ok(Response::new(cri::ImageStatusResponse {
            image: self.images.find(&image).map(Self::image_of),
            info: Default::default(),
        }))
    }

    async fn pull_image(&self, req: Request<cri::PullImageRequest>) -> R<cri::PullImageResponse> {
        let req = req.into_inner();
        let image = req.image.map(|i| i.image).unwrap_or_default();
        let secret = match req.auth {
            Some(a) if !a.username.is_empty() => Some((a.username, a.password)),
            Some(a) if !a.auth.is_empty() => Some(
                super::registries::decode_basic(&a.auth)
                    .map_err(|e| Error::InvalidArgument(format!("pull credentials: {e}")))?,
            ),
            _ => None,
        };
        let image_ref = self.images.pull(&image, secret.as_ref()).await?;
        Ok(Response::new(cri::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> R<cri::RemoveImageResponse> {
        let image = req.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.remove_image_named(&image).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> R<cri::ImageFsInfoResponse> {
        let root = self.images.root().to_owned();
        let walked = root.clone();
        let (bytes, inodes) =
            tokio::task::spawn_blocking(move || super::image::disk_usage(&walked))
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let usage = cri::FilesystemUsage {
            timestamp: now_ns(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: root.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: Vec::new(),
        }))
    }
}

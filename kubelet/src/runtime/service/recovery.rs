//! Restart recovery: sandbox and container records are mirrored to disk as they change, and a
//! restarted runtime takes over what they describe.

use super::*;

impl Runtime {
    /// Takes over the sandboxes and containers an earlier run recorded: running containers
    /// keep running and are watched again, exited ones keep their exit status. What has no
    /// usable record (or lost its namespaces) is removed with its mounts and cgroups.
    pub(super) async fn recover(&self) {
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
    pub(super) fn persist(state: &State, id: &str) {
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

    pub(super) fn persist_sandbox(sb: &Sandbox) {
        let r = store::SandboxRecord {
            config: sb.config.clone(),
            created_at: sb.created_at,
            ready: sb.ready,
        };
        if let Err(e) = store::save_sandbox(&sb.dir, &r) {
            tracing::warn!(sandbox = %sb.id, error = %e, "saving sandbox record");
        }
    }
}

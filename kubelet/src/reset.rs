//! The kubelet's part of `ekube reset`: with the kubelet stopped, every pod this node runs is
//! torn down through the CRI as the kubelet tears one down (network through CNI, then stop
//! and remove), then the kubelet's own state goes: pod directories (unmounted first), the
//! runtime's images and records under `--root-dir`, the pods' logs and the pod cgroups.

use std::path::PathBuf;

use super::{Config, Error, start_runtime, volumes, worker};
use crate::cri;
use crate::runtime;

/// What [`reset`] removed, and what it could not.
#[derive(Debug, Default)]
pub struct Report {
    /// `namespace/name` of each pod torn down.
    pub pods: Vec<String>,
    /// Paths removed.
    pub removed: Vec<PathBuf>,
    /// What stays, and why.
    pub left: Vec<String>,
}

/// Tears down every pod sandbox of the node's runtime and removes the kubelet's state. The
/// kubelet must not be running.
pub async fn reset(config: &Config) -> Result<Report, Error> {
    runtime::install_crypto();
    let mut report = Report::default();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    let (endpoint, runtime_task) = start_runtime(config, stop).await?;
    let torn_down = remove_sandboxes(config, &endpoint, &mut report).await;
    let _ = stop_tx.send(true);
    if let Some(task) = runtime_task {
        let _ = task.await;
    }
    torn_down?;

    for (path, removed) in [
        (
            config.root_dir.clone(),
            volumes::remove_unmounting(&config.root_dir),
        ),
        (
            config.pod_logs_dir.clone(),
            remove_if_empty(&config.pod_logs_dir),
        ),
    ] {
        match removed {
            Ok(()) => report.removed.push(path),
            Err(e) => report.left.push(format!("{}: {e}", path.display())),
        }
    }
    for dir in crate::cgroups::remove_tree(&config.cgroup_root) {
        report.left.push(format!(
            "cgroup {} (a process is still in it)",
            dir.display()
        ));
    }
    Ok(report)
}

/// Removes every sandbox the runtime at `endpoint` knows, with its pod's directory and logs.
async fn remove_sandboxes(
    config: &Config,
    endpoint: &str,
    report: &mut Report,
) -> Result<(), Error> {
    let (mut rc, _) = runtime::connect(endpoint).await?;
    let sandboxes = rc
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    for sandbox in sandboxes {
        let Some(meta) = worker::remove_sandbox(&mut rc, config, &sandbox.id).await else {
            report.pods.push(format!("sandbox {}", sandbox.id));
            continue;
        };
        let logs =
            worker::pod_log_dir(&config.pod_logs_dir, &meta.namespace, &meta.name, &meta.uid);
        if let Err(e) = std::fs::remove_dir_all(&logs)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            report.left.push(format!("{}: {e}", logs.display()));
        }
        report
            .pods
            .push(format!("{}/{}", meta.namespace, meta.name));
    }
    let left = rc
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    if !left.is_empty() {
        let ids: Vec<&str> = left.iter().map(|s| s.id.as_str()).collect();
        return Err(Error::Config(format!(
            "the runtime still holds sandboxes {ids:?} after removing them"
        )));
    }
    Ok(())
}

/// Removes `dir` when nothing is left in it (other programs may keep logs there too).
fn remove_if_empty(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

//! Container log rotation, as the upstream kubelet's container log manager does it: every
//! `--container-log-monitor-interval` the CRI log of each running container is checked, and
//! one that reached `--container-log-max-size` is renamed to `<log>.<YYYYMMDD-hhmmss>` and
//! the runtime is asked (CRI `ReopenContainerLog`) to continue in a fresh file. Rotated files
//! but the newest are gzip-compressed (`.gz`), and the oldest are removed so that a container
//! keeps at most `--container-log-max-files` files, the current one included.
//!
//! Readers (`kubectl logs`) read the current file only, as upstream.
//!
//! The same pass removes the log directories (`<ns>_<name>_<uid>` under `--pod-logs-dir`) of
//! pods that are gone, as upstream's container garbage collection does: no worker runs the pod
//! and the runtime holds no sandbox of it, so nothing writes there any more.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Ctx;
use crate::cri::{self, ContainerState};

/// Upstream's suffix format of rotated logs (Go layout `20060102-150405`).
const TIMESTAMP_FORMAT: &str = "%Y%m%d-%H%M%S";

/// Rotation limits.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_size: u64,
    pub max_files: usize,
}

/// Checks every running container's log every `interval` until `stop`.
pub async fn run(
    ctx: Arc<Ctx>,
    policy: Policy,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let mut rc = ctx.rc.clone();
        let running = cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        let Ok(containers) = cri::containers_with_status(&mut rc, running).await else {
            continue;
        };
        for (c, status) in containers {
            if status.log_path.is_empty() {
                continue;
            }
            let log = PathBuf::from(&status.log_path);
            if let Err(e) = rotate_if_needed(&mut rc, &c.id, &log, policy).await {
                tracing::warn!(container = %c.id, log = %log.display(), error = %e, "rotating container log");
            }
        }
        remove_orphaned_log_dirs(&ctx).await;
    }
}

/// Removes the log directories of pods this kubelet no longer runs and the runtime holds no
/// sandbox of.
async fn remove_orphaned_log_dirs(ctx: &Ctx) {
    let running = |uid: &str| ctx.pods.lock().expect("pod set lock").contains_key(uid);
    let candidates: Vec<(PathBuf, String)> = std::fs::read_dir(&ctx.config.pod_logs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let uid = pod_uid_of_log_dir(&e.file_name().to_string_lossy())?.to_owned();
            Some((e.path(), uid))
        })
        .filter(|(_, uid)| !running(uid))
        .collect();
    if candidates.is_empty() {
        return;
    }
    let Ok(list) = ctx
        .rc
        .clone()
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
    else {
        return;
    };
    let sandboxed: std::collections::HashSet<String> = list
        .into_inner()
        .items
        .into_iter()
        .filter_map(|sb| sb.labels.get(super::worker::POD_UID_LABEL).cloned())
        .collect();
    for (dir, uid) in candidates {
        // Checked again: a static pod whose manifest came back runs under the same UID.
        if sandboxed.contains(&uid) || running(&uid) {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "removed the log directory of a gone pod")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "removing a pod log directory")
            }
        }
    }
}

/// The pod UID in a log directory's name, `<namespace>_<name>_<uid>` (namespaces and pod names
/// cannot hold `_`, UIDs cannot either).
fn pod_uid_of_log_dir(name: &str) -> Option<&str> {
    let mut parts = name.split('_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !ns.is_empty() && !pod.is_empty() && !uid.is_empty()).then_some(uid)
}

/// Rotates `log` of container `id` when it reached the size limit.
async fn rotate_if_needed(
    rc: &mut crate::runtime::RuntimeClient,
    id: &str,
    log: &Path,
    policy: Policy,
) -> std::io::Result<()> {
    let size = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if size < policy.max_size {
        return Ok(());
    }
    // Make room: after this rotation the current file and max-files - 1 rotated ones remain.
    let mut rotated = rotated_files(log)?;
    let keep = policy.max_files.saturating_sub(2);
    while rotated.len() > keep {
        let oldest = rotated.remove(0);
        std::fs::remove_file(&oldest)?;
    }
    for r in &rotated {
        if r.extension().is_none_or(|e| e != "gz") {
            compress(r)?;
        }
    }
    let stamp = k8s_openapi::jiff::Zoned::now()
        .strftime(TIMESTAMP_FORMAT)
        .to_string();
    let target = PathBuf::from(format!("{}.{stamp}", log.display()));
    if target.exists() || PathBuf::from(format!("{}.gz", target.display())).exists() {
        // Rotated within this second already; the next round will do it.
        return Ok(());
    }
    std::fs::rename(log, &target)?;
    if let Err(status) = rc
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.to_owned(),
        })
        .await
    {
        // The runtime still writes to the renamed file: put it back.
        std::fs::rename(&target, log)?;
        return Err(std::io::Error::other(format!(
            "ReopenContainerLog: {}",
            status.message()
        )));
    }
    tracing::debug!(container = %id, rotated = %target.display(), size, "container log rotated");
    Ok(())
}

/// The rotated files of `log` (`<log>.<timestamp>` and `.gz`), oldest first.
fn rotated_files(log: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .map(|rest| rest.trim_end_matches(".gz"))
                .is_some_and(is_timestamp)
        })
        .map(|n| dir.join(n))
        .collect();
    // The timestamps sort chronologically as text.
    out.sort();
    Ok(out)
}

fn is_timestamp(s: &str) -> bool {
    k8s_openapi::jiff::civil::DateTime::strptime(TIMESTAMP_FORMAT, s).is_ok()
}

/// Gzips `path` into `path.gz` and removes `path`.
fn compress(path: &Path) -> std::io::Result<()> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.tmp", gz.display()));
    {
        let mut input = std::fs::File::open(path)?;
        let out = std::fs::File::create(&tmp)?;
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut input, &mut enc)?;
        enc.finish()?.sync_all()?;
    }
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)
}

/// Parses `--container-log-max-size` (a quantity such as `10Mi`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    ekube_api::quantity::bytes(s)
        .map_err(|e| format!("{s:?}: {e}"))
        .and_then(|b| u64::try_from(b).map_err(|_| format!("{s:?} is negative")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_directories_name_their_pod_uid() {
        assert_eq!(
            pod_uid_of_log_dir("default_web_0b6f2a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"),
            Some("0b6f2a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
        );
        for other in [
            "lost+found",
            "default_web",
            "a_b_c_d",
            "_web_uid",
            "default__uid",
        ] {
            assert_eq!(pod_uid_of_log_dir(other), None, "{other}");
        }
    }

    #[test]
    fn rotated_files_are_found_oldest_first_and_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for name in [
            "0.log",
            "0.log.20240102-030405",
            "0.log.20240101-000000.gz",
            "0.log.tmp",
            "1.log",
        ] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let found = rotated_files(&log).unwrap();
        let names: Vec<String> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0.log.20240101-000000.gz", "0.log.20240102-030405"]);
        compress(&found[1]).unwrap();
        let gz = dir.path().join("0.log.20240102-030405.gz");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "0.log.20240102-030405");
        assert!(!found[1].exists());
        assert_eq!(parse_size("10Mi"), Ok(10 * 1024 * 1024));
    }
}

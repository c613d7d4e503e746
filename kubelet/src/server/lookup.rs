//! Finding a pod's sandbox and containers through CRI: sandboxes carry the pod's
//! namespace/name/uid as metadata, containers the container name and restart attempt.

use std::path::PathBuf;

use http::StatusCode;

use super::Node;
use crate::cri::{self, ContainerState, PodSandboxState};

/// A lookup failure: the HTTP status and message the kubelet API answers with.
pub struct NotServed(pub StatusCode, pub String);

/// The pod's current sandbox: the ready one, else the newest.
pub async fn sandbox(node: &Node, ns: &str, pod: &str) -> Result<cri::PodSandbox, NotServed> {
    let mut rc = node.runtime.clone();
    let items = rc
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map_err(|e| {
            NotServed(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("listing pod sandboxes: {}", e.message()),
            )
        })?
        .into_inner()
        .items;
    items
        .into_iter()
        .filter(|s| {
            s.metadata
                .as_ref()
                .is_some_and(|m| m.namespace == ns && m.name == pod)
        })
        .max_by_key(|s| {
            (
                s.state == PodSandboxState::SandboxReady as i32,
                s.created_at,
            )
        })
        .ok_or_else(|| {
            NotServed(
                StatusCode::NOT_FOUND,
                format!("pod {ns}/{pod} not found on this node"),
            )
        })
}

/// One container of a pod as the runtime knows it.
pub struct Found {
    pub id: String,
    pub attempt: u32,
    pub running: bool,
    pub log_path: PathBuf,
}

/// The pod's containers named `name`, newest attempt first.
pub async fn containers(
    node: &Node,
    ns: &str,
    pod: &str,
    name: &str,
) -> Result<Vec<Found>, NotServed> {
    let sb = sandbox(node, ns, pod).await?;
    let mut rc = node.runtime.clone();
    let filter = cri::ContainerFilter {
        pod_sandbox_id: sb.id.clone(),
        label_selector: [("io.kubernetes.container.name".to_owned(), name.to_owned())].into(),
        ..Default::default()
    };
    let list = cri::containers_with_status(&mut rc, filter)
        .await
        .map_err(|e| {
            NotServed(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("listing containers: {}", e.message()),
            )
        })?;
    let mut found: Vec<Found> = list
        .into_iter()
        .map(|(c, status)| Found {
            id: c.id,
            attempt: c.metadata.map(|m| m.attempt).unwrap_or_default(),
            running: status.state == ContainerState::ContainerRunning as i32,
            log_path: PathBuf::from(status.log_path),
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse((f.attempt, f.running)));
    Ok(found)
}

/// The running container `name` of the pod.
pub async fn running(node: &Node, ns: &str, pod: &str, name: &str) -> Result<Found, NotServed> {
    containers(node, ns, pod, name)
        .await?
        .into_iter()
        .find(|c| c.running)
        .ok_or_else(|| {
            NotServed(
                StatusCode::BAD_REQUEST,
                format!("container {name} is not valid for pod {pod}: not running"),
            )
        })
}

/// The pod's log directory for container `name` when the runtime no longer has the
/// container: `<pod-logs-dir>/<ns>_<pod>_<uid>/<name>`. A finished pod's sandbox is gone but
/// its logs stay: then the newest directory of a pod of that name serves.
pub async fn log_dir(node: &Node, ns: &str, pod: &str, name: &str) -> Result<PathBuf, NotServed> {
    let dir = match sandbox(node, ns, pod).await {
        Ok(sb) => {
            let uid = sb.metadata.map(|m| m.uid).unwrap_or_default();
            node.pod_logs_dir.join(format!("{ns}_{pod}_{uid}"))
        }
        Err(NotServed(StatusCode::NOT_FOUND, message)) => {
            newest_pod_log_dir(&node.pod_logs_dir, ns, pod)
                .ok_or(NotServed(StatusCode::NOT_FOUND, message))?
        }
        Err(e) => return Err(e),
    };
    Ok(dir.join(name))
}

/// The most recently changed `<ns>_<pod>_<uid>` directory under `logs_dir`.
fn newest_pod_log_dir(logs_dir: &std::path::Path, ns: &str, pod: &str) -> Option<PathBuf> {
    let prefix = format!("{ns}_{pod}_");
    std::fs::read_dir(logs_dir)
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(&prefix)
                    .is_some_and(|uid| !uid.is_empty() && !uid.contains('_'))
            })
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_pods_logs_are_found_by_name() {
        let logs = tempfile::tempdir().unwrap();
        let old = logs.path().join("default_web_uid-1");
        let other = logs.path().join("default_web-2_uid-3");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let new = logs.path().join("default_web_uid-2");
        std::fs::create_dir_all(&new).unwrap();
        assert_eq!(newest_pod_log_dir(logs.path(), "default", "web"), Some(new));
        assert_eq!(
            newest_pod_log_dir(logs.path(), "default", "web-2"),
            Some(other)
        );
        assert_eq!(newest_pod_log_dir(logs.path(), "dev", "web"), None);
    }
}

//! Ephemeral containers (`spec.ephemeralContainers`, added through `pods/ephemeralcontainers`,
//! as `kubectl debug` does): started in the running pod's sandbox, so they share its network
//! and IPC, never restarted, and reported in `status.ephemeralContainerStatuses`. They take no
//! part in the pod's phase or readiness.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, EphemeralContainer, Pod};

use super::Worker;
use crate::status::View;

/// The container an ephemeral container runs as; `targetContainerName` is the worker's
/// business, not the container's.
pub(super) fn as_container(ec: &EphemeralContainer) -> Container {
    let mut v = serde_json::to_value(ec).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(v).unwrap_or_else(|_| Container {
        name: ec.name.clone(),
        image: ec.image.clone(),
        ..Default::default()
    })
}

/// The pod's ephemeral containers, as containers.
pub(super) fn containers(pod: &Pod) -> Vec<Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .into_iter()
        .flatten()
        .map(as_container)
        .collect()
}

/// The container whose PID namespace the ephemeral container `name` joins, if it names one.
pub(super) fn target_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.spec
        .as_ref()?
        .ephemeral_containers
        .as_ref()?
        .iter()
        .find(|ec| ec.name == name)?
        .target_container_name
        .as_deref()
        .filter(|t| !t.is_empty())
}

/// The status reported for ephemeral container `name` when it was started before (it has a
/// container ID).
fn reported<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .ephemeral_container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == name && s.container_id.is_some())
}

impl Worker {
    /// Starts the ephemeral containers not started yet; one that exited stays exited.
    pub(super) async fn ensure_ephemeral(&mut self, pod: &Pod) {
        for c in containers(pod) {
            let tracked = self.containers.get(&c.name).is_some_and(|t| t.id.is_some());
            if !tracked && let Some(before) = reported(pod, &c.name) {
                // Started by an earlier kubelet and gone from the runtime: it is not started
                // again, and keeps the end that was reported (or one saying it is gone).
                let t = self.containers.entry(c.name.clone()).or_default();
                if !matches!(t.view, Some(View::Terminated { .. })) {
                    let end = before.state.as_ref().and_then(|s| s.terminated.as_ref());
                    t.view = Some(
                        end.map(super::adopt::view_of).unwrap_or(View::Terminated {
                            id: String::new(),
                            code: 137,
                            reason: "ContainerStatusUnknown".into(),
                            message: "The container could not be located when the pod was \
                                  terminated"
                                .into(),
                            started: 0,
                            finished: 0,
                        }),
                    );
                }
                continue;
            }
            self.ensure_container(pod, &c, false, "Never").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_finds_the_target() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{"name": "app", "image": "busybox"}],
                "ephemeralContainers": [{
                    "name": "dbg", "image": "busybox", "command": ["sh"],
                    "stdin": true, "tty": true, "targetContainerName": "app",
                }],
            },
        }))
        .unwrap();
        let cs = containers(&pod);
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].name, "dbg");
        assert_eq!(cs[0].command.as_deref(), Some(&["sh".to_owned()][..]));
        assert_eq!((cs[0].stdin, cs[0].tty), (Some(true), Some(true)));
        assert_eq!(target_of(&pod, "dbg"), Some("app"));
        assert_eq!(target_of(&pod, "app"), None);
    }
}

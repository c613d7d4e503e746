//! Adoption after a kubelet restart: the worker takes over the sandbox and containers the
//! runtime still runs for its pod, with the restart counts and last states the apiserver
//! shows, so nothing already running is started again.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{POD_UID_LABEL, Sandbox, Worker, pod_key};
use crate::cri;
use crate::status::View;

impl Worker {
    /// Takes over the sandbox and containers an earlier kubelet left running for this pod,
    /// with the restart counts and last states it reported.
    pub(super) async fn adopt(&mut self, pod: &Pod) {
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
}

/// A container state the previous kubelet reported, as a [`View`].
pub(super) fn view_of(t: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> View {
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

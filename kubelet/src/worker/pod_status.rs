//! The `pods/status` the worker writes: each container's state and readiness as the worker
//! and its probers saw them, the pod's conditions and addresses. A status equal to the last
//! one written (transition times aside) is not written again.

use k8s_openapi::api::core::v1::{Container, HostIP, Pod, PodIP, PodStatus};
use kube::api::{Api, Patch, PatchParams};

use super::{Worker, pod_key};
use crate::status::{self, Observed, View};

impl Worker {
    /// Rejects a pod the node cannot run (upstream's `rejectPod`): a Warning event with
    /// `reason`, and the pod Failed with the reason and `Pod was rejected: <message>`.
    pub(super) async fn reject(&mut self, pod: &Pod, reason: &str, message: String) {
        tracing::warn!(pod = %pod_key(pod), %reason, %message, "pod rejected");
        self.event(pod, "Warning", reason, message.clone()).await;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let status = serde_json::json!({"status": {
            "phase": "Failed",
            "reason": reason,
            "message": format!("Pod was rejected: {message}"),
        }});
        if let Err(e) = api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await
        {
            tracing::warn!(pod = %pod_key(pod), error = %e, "writing pod status");
        }
    }

    pub(super) async fn write_status(&mut self, pod: &Pod, phase: &str) {
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
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
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
            let mut status = status::container_status(&Observed {
                name: &c.name,
                image: &image,
                image_id: t.map(|t| t.image_id.as_str()).unwrap_or_default(),
                view: t.and_then(|t| t.view.as_ref()).unwrap_or(&waiting),
                last: t.and_then(|t| t.last.as_ref()),
                restarts: t.map(|t| t.restarts).unwrap_or(0),
                ready,
                started,
            });
            status.allocated_resources_status = self.ctx.devices.health(uid, &c.name);
            status
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
        // Ephemeral containers are never ready: they serve nothing.
        let ephemeral: Vec<_> = super::ephemeral::containers(pod)
            .iter()
            .map(|c| {
                let mut status = observe(c);
                status.ready = false;
                status
            })
            .collect();
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
            ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
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
            self.unsynced_since = None;
            return;
        }
        let changed = *self
            .unsynced_since
            .get_or_insert_with(std::time::Instant::now);
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
            Ok(_) => {
                crate::metrics::pod_status_synced(changed.elapsed());
                self.unsynced_since = None;
                self.written = Some(key);
            }
            Err(e) => tracing::warn!(pod = %pod_key(pod), error = %e, "writing pod status"),
        }
    }
}

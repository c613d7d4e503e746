//! Admission: which devices each container of a pod gets, and what the plugin's answer puts
//! into the container's CRI config. Devices are picked among the free healthy ones, the
//! plugin's preferred ones first when it offers `GetPreferredAllocation`; a pod's init
//! containers pass theirs on to the containers after them, as upstream's `devicesToReuse`.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::{Allocation, Manager, State, api};

impl Manager {
    /// The device resources a container asks for: its limits (requests equal them, the
    /// apiserver makes sure) of resources a plugin serves or served.
    fn requests(&self, c: &Container) -> Vec<(String, usize)> {
        let state = self.state();
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .into_iter()
            .flatten()
            .filter(|(name, _)| state.resources.contains_key(*name))
            .filter_map(|(name, q)| {
                let n = ekube_api::quantity::parse_milli(&q.0).ok()? / 1000;
                (n > 0).then(|| (name.clone(), n as usize))
            })
            .collect()
    }

    /// Gives every container of `pod` the devices it asks for, before any of them starts
    /// (upstream's admission handler). Containers that already have theirs (the pod was
    /// admitted by an earlier kubelet) keep them. The error is the reason to reject the pod.
    pub async fn admit(&self, pod: &Pod) -> Result<(), String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &pod.spec else {
            return Ok(());
        };
        let _turn = self.inner.admitting.lock().await;
        let inits: HashSet<&str> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers);
        for c in containers {
            for (resource, needed) in self.requests(c) {
                if self.allocation(&uid, &c.name, &resource).is_some() {
                    continue;
                }
                let allocation = self.allocate(&uid, &inits, &resource, needed).await?;
                tracing::info!(pod = %uid, container = %c.name, %resource,
                    devices = ?allocation.device_ids, "devices allocated");
                self.state()
                    .allocations
                    .entry(uid.clone())
                    .or_default()
                    .entry(c.name.clone())
                    .or_default()
                    .insert(resource, allocation);
                self.save();
            }
        }
        Ok(())
    }

    /// Picks `needed` free healthy devices of `resource` for a container of pod `uid` and asks
    /// the plugin to allocate them.
    async fn allocate(
        &self,
        uid: &str,
        inits: &HashSet<&str>,
        resource: &str,
        needed: usize,
    ) -> Result<Allocation, String> {
        let (plugin, free) = {
            let state = self.state();
            let r = &state.resources[resource];
            let Some(plugin) = r.plugin.clone() else {
                return Err(format!(
                    "no device plugin is registered for {resource}; cannot allocate its devices"
                ));
            };
            let used = state.in_use(resource, uid, inits);
            let free: Vec<String> = r
                .devices
                .iter()
                .filter(|(id, healthy)| **healthy && !used.contains(*id))
                .map(|(id, _)| id.clone())
                .collect();
            (plugin, free)
        };
        if free.len() < needed {
            return Err(format!(
                "requested number of devices unavailable for {resource}. Requested: {needed}, Available: {}",
                free.len()
            ));
        }
        let mut client = plugin.client.clone();
        let mut chosen: Vec<String> = free[..needed].to_vec();
        if plugin.options.get_preferred_allocation_available {
            let asked = api::PreferredAllocationRequest {
                container_requests: vec![api::ContainerPreferredAllocationRequest {
                    available_device_i_ds: free.clone(),
                    must_include_device_i_ds: Vec::new(),
                    allocation_size: needed as i32,
                }],
            };
            match client.get_preferred_allocation(asked).await {
                Ok(answer) => {
                    let preferred = answer
                        .into_inner()
                        .container_responses
                        .into_iter()
                        .next()
                        .map(|r| r.device_i_ds)
                        .unwrap_or_default();
                    let distinct: HashSet<&String> = preferred.iter().collect();
                    if preferred.len() == needed
                        && distinct.len() == needed
                        && preferred.iter().all(|id| free.contains(id))
                    {
                        chosen = preferred;
                    } else {
                        tracing::warn!(%resource, ?preferred,
                            "device plugin preferred devices that are not free; taking others");
                    }
                }
                Err(e) => {
                    tracing::warn!(%resource, error = %e, "GetPreferredAllocation failed");
                }
            }
        }
        let answer = client
            .allocate(api::AllocateRequest {
                container_requests: vec![api::ContainerAllocateRequest {
                    devices_ids: chosen.clone(),
                }],
            })
            .await
            .map_err(|e| {
                format!(
                    "device plugin Allocate for {resource} failed: {}",
                    e.message()
                )
            })?;
        let response = answer
            .into_inner()
            .container_responses
            .into_iter()
            .next()
            .ok_or_else(|| {
                format!("device plugin for {resource} answered Allocate with nothing")
            })?;
        Ok(Allocation {
            device_ids: chosen,
            response,
        })
    }

    fn allocation(&self, uid: &str, container: &str, resource: &str) -> Option<Allocation> {
        self.state()
            .allocations
            .get(uid)?
            .get(container)?
            .get(resource)
            .cloned()
    }
}

/// Puts what the plugins answered to `Allocate` into a container's CRI config: their env
/// after the container's own, their mounts, device nodes and annotations.
pub fn apply(allocations: &[Allocation], config: &mut crate::cri::ContainerConfig) {
    use crate::cri;
    for a in allocations {
        let r = &a.response;
        config
            .envs
            .extend(r.envs.iter().map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            }));
        config.mounts.extend(r.mounts.iter().map(|m| cri::Mount {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.read_only,
            ..Default::default()
        }));
        config.devices.extend(r.devices.iter().map(|d| cri::Device {
            container_path: d.container_path.clone(),
            host_path: d.host_path.clone(),
            permissions: d.permissions.clone(),
        }));
        config
            .annotations
            .extend(r.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

impl State {
    /// The devices of `resource` held by containers, except those of pod `uid`'s init
    /// containers: they run before the next one starts, so their devices are reused by the
    /// pod's later containers, as upstream's `devicesToReuse`.
    fn in_use(&self, resource: &str, uid: &str, inits: &HashSet<&str>) -> HashSet<String> {
        self.allocations
            .iter()
            .flat_map(|(pod, containers)| containers.iter().map(move |(name, a)| (pod, name, a)))
            .filter(|(pod, name, _)| !(pod.as_str() == uid && inits.contains(name.as_str())))
            .filter_map(|(_, _, by_resource)| by_resource.get(resource))
            .flat_map(|a| a.device_ids.iter().cloned())
            .collect()
    }
}

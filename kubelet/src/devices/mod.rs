//! The device manager (upstream's `pkg/kubelet/cm/devicemanager`).
//!
//! Device plugins register on `<root-dir>/device-plugins/kubelet.sock` ([`registration`]).
//! For each, the manager connects back and follows `ListAndWatch` ([`plugin`]), and keeps the
//! node's extended resource: capacity is every device, allocatable the healthy ones.
//!
//! Pods get devices when the kubelet admits them ([`allocate`]). For each container's request
//! the manager picks free healthy devices (the plugin's preferred ones when it offers them)
//! and calls `Allocate`. What the plugin answers (env, mounts, device nodes, annotations) goes into the
//! container's CRI config. Allocations are checkpointed ([`checkpoint`]), so a restarted
//! kubelet gives running pods the same devices and never hands them out twice. They are freed
//! when the pod ends.

mod allocate;
pub mod api;
mod checkpoint;
pub mod example;
mod plugin;
mod registration;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ResourceHealth, ResourceStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tonic::transport::Channel;

pub use allocate::apply;
use api::device_plugin_client::DevicePluginClient;
pub use registration::serve;

/// How long the devices of a plugin that went away stay in the node's capacity (as
/// unhealthy) before they leave it; upstream's `endpointStopGracePeriod`.
pub const GRACE_PERIOD: Duration = Duration::from_secs(5 * 60);

/// The device manager; cheap to clone, all clones share one state.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    state: Mutex<State>,
    /// Held through an admission, so two pods never pick the same free devices.
    admitting: tokio::sync::Mutex<()>,
    /// Bumped whenever the node's capacity or allocatable may have changed.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    resources: BTreeMap<String, Resource>,
    /// Pod UID → container name → resource name → what it was given.
    allocations: BTreeMap<String, BTreeMap<String, BTreeMap<String, Allocation>>>,
    /// Numbers registrations, so the follower of a replaced plugin changes nothing.
    generation: u64,
}

/// One extended resource and the devices its plugin reported.
struct Resource {
    /// Device ID → healthy.
    devices: BTreeMap<String, bool>,
    plugin: Option<Plugin>,
    /// When its plugin went away, or the kubelet started with the resource in its checkpoint.
    stopped_at: Option<Instant>,
}

#[derive(Clone)]
struct Plugin {
    client: DevicePluginClient<Channel>,
    options: api::DevicePluginOptions,
    generation: u64,
}

/// The devices one container got for one resource, and the plugin's answer to `Allocate`.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    pub device_ids: Vec<String>,
    pub response: api::ContainerAllocateResponse,
}

impl Manager {
    /// A manager for the plugins of `dir` (`<root-dir>/device-plugins`), with the allocations
    /// and devices its checkpoint holds. A checkpoint that cannot be read is reported and set
    /// aside: allocations start empty rather than the kubelet not starting.
    pub fn open(dir: PathBuf) -> Self {
        let mut state = State::default();
        match checkpoint::read(&dir) {
            Ok(Some(saved)) => {
                for (resource, ids) in saved.registered {
                    state.resources.insert(
                        resource,
                        Resource {
                            // Healthy until the plugin re-registers and says otherwise, as
                            // upstream: a kubelet restart does not empty the node.
                            devices: ids.into_iter().map(|id| (id, true)).collect(),
                            plugin: None,
                            stopped_at: Some(Instant::now()),
                        },
                    );
                }
                state.allocations = saved.allocations;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "device manager checkpoint not usable; starting empty")
            }
        }
        Self {
            inner: Arc::new(Inner {
                dir,
                state: Mutex::new(state),
                admitting: tokio::sync::Mutex::new(()),
                changed: tokio::sync::watch::channel(0).0,
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Wakes when the node's extended resources may have changed.
    pub fn changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().expect("device manager state")
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|n| *n += 1);
    }

    /// The node's extended resources as `(capacity, allocatable)`: every device, and the
    /// healthy ones while the plugin is registered. A resource whose plugin is gone longer
    /// than [`GRACE_PERIOD`] reads 0, as upstream keeps a removed resource at 0.
    pub fn resources(&self) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
        let state = self.state();
        let mut capacity = BTreeMap::new();
        let mut allocatable = BTreeMap::new();
        for (name, r) in &state.resources {
            let expired = r.stopped_at.is_some_and(|t| t.elapsed() > GRACE_PERIOD);
            let (all, healthy) = if expired {
                (0, 0)
            } else {
                (r.devices.len(), r.devices.values().filter(|h| **h).count())
            };
            capacity.insert(name.clone(), Quantity(all.to_string()));
            allocatable.insert(name.clone(), Quantity(healthy.to_string()));
        }
        (capacity, allocatable)
    }

    /// Takes a plugin that registered (replacing an earlier one for the same resource) and
    /// returns its generation, which its `ListAndWatch` follower reports under.
    fn add_plugin(
        &self,
        resource: &str,
        client: DevicePluginClient<Channel>,
        options: api::DevicePluginOptions,
    ) -> u64 {
        let mut state = self.state();
        state.generation += 1;
        let generation = state.generation;
        let r = state
            .resources
            .entry(resource.to_owned())
            .or_insert_with(|| Resource {
                devices: BTreeMap::new(),
                plugin: None,
                stopped_at: None,
            });
        r.plugin = Some(Plugin {
            client,
            options,
            generation,
        });
        r.stopped_at = None;
        generation
    }

    /// A `ListAndWatch` answer: the plugin's whole device list.
    fn set_devices(&self, resource: &str, generation: u64, devices: &[api::Device]) {
        {
            let mut state = self.state();
            let Some(r) = state.resources.get_mut(resource) else {
                return;
            };
            if r.plugin.as_ref().map(|p| p.generation) != Some(generation) {
                return;
            }
            r.devices = devices
                .iter()
                .map(|d| (d.id.clone(), d.health == api::HEALTHY))
                .collect();
        }
        self.save();
        self.notify();
    }

    /// The plugin's stream ended: its devices turn unhealthy (allocatable 0) at once, and
    /// leave the capacity after [`GRACE_PERIOD`] unless it registers again.
    fn plugin_gone(&self, resource: &str, generation: u64) {
        {
            let mut state = self.state();
            let Some(r) = state.resources.get_mut(resource) else {
                return;
            };
            if r.plugin.as_ref().map(|p| p.generation) != Some(generation) {
                return;
            }
            r.plugin = None;
            r.stopped_at = Some(Instant::now());
            r.devices.values_mut().for_each(|h| *h = false);
        }
        self.notify();
    }

    /// What a container was given, resource by resource, for its CRI config.
    pub fn container(&self, uid: &str, container: &str) -> Vec<Allocation> {
        self.state()
            .allocations
            .get(uid)
            .and_then(|p| p.get(container))
            .map(|by_resource| by_resource.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Calls `PreStartContainer` on the plugins that asked for it, with the container's devices.
    pub async fn pre_start(&self, uid: &str, container: &str) -> Result<(), String> {
        let calls: Vec<(String, Plugin, Vec<String>)> = {
            let state = self.state();
            let Some(by_resource) = state.allocations.get(uid).and_then(|p| p.get(container))
            else {
                return Ok(());
            };
            by_resource
                .iter()
                .filter_map(|(resource, a)| {
                    let plugin = state.resources.get(resource)?.plugin.clone()?;
                    plugin
                        .options
                        .pre_start_required
                        .then(|| (resource.clone(), plugin, a.device_ids.clone()))
                })
                .collect()
        };
        for (resource, plugin, devices_ids) in calls {
            plugin
                .client
                .clone()
                .pre_start_container(api::PreStartContainerRequest { devices_ids })
                .await
                .map_err(|e| {
                    format!(
                        "device plugin PreStartContainer for {resource} failed: {}",
                        e.message()
                    )
                })?;
        }
        Ok(())
    }

    /// The health of a container's devices, for `status.containerStatuses[].
    /// allocatedResourcesStatus` (upstream's ResourceHealthStatus): `Unknown` while the plugin
    /// is not registered, `Unhealthy` for a device it reports so or no longer lists.
    pub fn health(&self, uid: &str, container: &str) -> Option<Vec<ResourceStatus>> {
        let state = self.state();
        let by_resource = state.allocations.get(uid)?.get(container)?;
        let statuses = by_resource
            .iter()
            .map(|(resource, a)| {
                let r = state.resources.get(resource);
                let resources = a
                    .device_ids
                    .iter()
                    .map(|id| {
                        let health = match r {
                            Some(r) if r.plugin.is_some() => match r.devices.get(id) {
                                Some(true) => "Healthy",
                                _ => "Unhealthy",
                            },
                            _ => "Unknown",
                        };
                        ResourceHealth {
                            resource_id: id.clone(),
                            health: Some(health.into()),
                            ..Default::default()
                        }
                    })
                    .collect();
                ResourceStatus {
                    name: resource.clone(),
                    resources: Some(resources),
                }
            })
            .collect();
        Some(statuses)
    }

    /// Frees the devices of a pod that ended or went away.
    pub fn release(&self, uid: &str) {
        if self.state().allocations.remove(uid).is_some() {
            tracing::info!(pod = %uid, "devices freed");
            self.save();
        }
    }

    /// Frees the devices of every pod not in `keep` (the pods this node still runs, once the
    /// kubelet restarted and listed them).
    pub fn retain(&self, keep: &HashSet<String>) {
        let dropped = {
            let mut state = self.state();
            let before = state.allocations.len();
            state.allocations.retain(|uid, _| keep.contains(uid));
            state.allocations.len() != before
        };
        if dropped {
            self.save();
        }
    }

    /// Writes the checkpoint; a failure is logged (the allocations stay in memory).
    fn save(&self) {
        let saved = {
            let state = self.state();
            checkpoint::Saved {
                registered: state
                    .resources
                    .iter()
                    .map(|(name, r)| (name.clone(), r.devices.keys().cloned().collect()))
                    .collect(),
                allocations: state.allocations.clone(),
            }
        };
        if let Err(e) = checkpoint::write(&self.inner.dir, &saved) {
            tracing::error!(error = %e, "writing the device manager checkpoint");
        }
    }
}

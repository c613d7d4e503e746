//! `ekube device-plugin example`: a device plugin to learn from and to test with. It serves
//! `--count` devices (`dev-0`, `dev-1`, …) of `--resource`, each backed by `/dev/null`, a
//! character device any container may safely get. A container given `dev-1` finds the node
//! `/dev/example/dev-1`, the env `EXAMPLE_DEVICES=dev-1` and the annotation
//! `example.ekube.io/devices`.
//!
//! What every plugin does, in order: serve `DevicePlugin` on a socket in the kubelet's
//! device-plugins directory, register there on `kubelet.sock`, answer `ListAndWatch` with the
//! device list and again on every change, and register again whenever `kubelet.sock` is made
//! afresh (the kubelet restarted). A refused registration ends the plugin, as upstream asks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::api;
use super::api::device_plugin_server::{DevicePlugin, DevicePluginServer};
use super::api::registration_client::RegistrationClient;

/// Flags of `ekube device-plugin example`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// The extended resource the devices make up.
    #[arg(long, default_value = "vendor.example/dev")]
    pub resource: String,
    /// How many devices to offer.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Report the last device unhealthy this long after start (e.g. `30s`).
    #[arg(long, value_parser = ekube_api::flags::parse_duration)]
    pub unhealthy_after: Option<Duration>,
    /// Ask the kubelet to call PreStartContainer before each container that uses a device.
    #[arg(long)]
    pub pre_start_required: bool,
    /// The kubelet's device-plugins directory (`<root-dir>/device-plugins`).
    #[arg(long, default_value = "/var/lib/ekube/kubelet/device-plugins")]
    pub device_plugin_path: PathBuf,
    /// The API version to register with (another than `v1beta1` shows the kubelet refusing it).
    #[arg(long, default_value = api::VERSION, hide = true)]
    pub api_version: String,
}

/// Device ID → healthy.
type Devices = BTreeMap<String, bool>;

/// The example's `DevicePlugin` service.
pub struct Plugin {
    devices: watch::Sender<Devices>,
    /// Set when the plugin stops: `ListAndWatch` streams end, so serving can end too.
    closed: watch::Sender<bool>,
    pre_start_required: bool,
    /// The device lists `PreStartContainer` was called with, in order.
    pub pre_started: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
}

impl Plugin {
    pub fn new(count: usize, pre_start_required: bool) -> Self {
        let devices = (0..count).map(|i| (format!("dev-{i}"), true)).collect();
        Self {
            devices: watch::channel(devices).0,
            closed: watch::channel(false).0,
            pre_start_required,
            pre_started: Default::default(),
        }
    }

    /// Sets a device's health; `ListAndWatch` streams send the new list.
    pub fn set_health(&self, id: &str, healthy: bool) {
        self.devices.send_modify(|d| {
            if let Some(h) = d.get_mut(id) {
                *h = healthy;
            }
        });
    }

    fn list(devices: &Devices) -> api::ListAndWatchResponse {
        api::ListAndWatchResponse {
            devices: devices
                .iter()
                .map(|(id, healthy)| api::Device {
                    id: id.clone(),
                    health: if *healthy {
                        api::HEALTHY
                    } else {
                        api::UNHEALTHY
                    }
                    .into(),
                    topology: None,
                })
                .collect(),
        }
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<api::ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for Arc<Plugin> {
    async fn get_device_plugin_options(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<api::DevicePluginOptions>, Status> {
        Ok(Response::new(api::DevicePluginOptions {
            pre_start_required: self.pre_start_required,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream = ListStream;

    async fn list_and_watch(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (rx, closed) = (self.devices.subscribe(), self.closed.subscribe());
        let stream = futures::stream::unfold(
            (rx, closed, true),
            |(mut rx, mut closed, first)| async move {
                if !first {
                    tokio::select! {
                        changed = rx.changed() => changed.ok()?,
                        _ = closed.wait_for(|c| *c) => return None,
                    }
                }
                let list = Plugin::list(&rx.borrow_and_update());
                Some((Ok(list), (rx, closed, false)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    /// Prefers the must-include devices, then the lowest-numbered available ones.
    async fn get_preferred_allocation(
        &self,
        request: Request<api::PreferredAllocationRequest>,
    ) -> Result<Response<api::PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| {
                let mut ids = r.must_include_device_i_ds;
                let mut available = r.available_device_i_ds;
                available.sort_by_key(|id| id.trim_start_matches("dev-").parse::<u64>().ok());
                for id in available {
                    if ids.len() >= r.allocation_size.max(0) as usize {
                        break;
                    }
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                api::ContainerPreferredAllocationResponse { device_i_ds: ids }
            })
            .collect();
        Ok(Response::new(api::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<api::AllocateRequest>,
    ) -> Result<Response<api::AllocateResponse>, Status> {
        let devices = self.devices.borrow().clone();
        let mut container_responses = Vec::new();
        for r in request.into_inner().container_requests {
            if let Some(id) = r
                .devices_ids
                .iter()
                .find(|id| devices.get(*id) != Some(&true))
            {
                return Err(Status::invalid_argument(format!(
                    "device {id} is unknown or unhealthy"
                )));
            }
            let ids = r.devices_ids.join(",");
            container_responses.push(api::ContainerAllocateResponse {
                envs: [("EXAMPLE_DEVICES".to_owned(), ids.clone())].into(),
                devices: r
                    .devices_ids
                    .iter()
                    .map(|id| api::DeviceSpec {
                        container_path: format!("/dev/example/{id}"),
                        host_path: "/dev/null".into(),
                        permissions: "rw".into(),
                    })
                    .collect(),
                annotations: [("example.ekube.io/devices".to_owned(), ids)].into(),
                ..Default::default()
            });
        }
        Ok(Response::new(api::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        request: Request<api::PreStartContainerRequest>,
    ) -> Result<Response<api::PreStartContainerResponse>, Status> {
        self.pre_started
            .lock()
            .expect("pre-start record")
            .push(request.into_inner().devices_ids);
        Ok(Response::new(api::PreStartContainerResponse {}))
    }
}

/// The socket's file name for `resource` (`vendor.example/dev` → `ekube-example-vendor.example-dev.sock`).
fn endpoint(resource: &str) -> String {
    format!("ekube-example-{}.sock", resource.replace('/', "-"))
}

/// Why a registration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Nothing answers on `kubelet.sock` (yet): try again.
    #[error("connecting to {socket}: {source}")]
    Unreachable {
        socket: String,
        source: tonic::transport::Error,
    },
    /// The kubelet answered no.
    #[error("the kubelet refused the registration: {0}")]
    Refused(String),
}

/// Registers `resource` served on `endpoint` with the kubelet of `dir`.
pub async fn register(
    dir: &std::path::Path,
    version: &str,
    resource: &str,
    endpoint: &str,
) -> Result<(), RegisterError> {
    let kubelet = dir.join(api::KUBELET_SOCKET);
    let channel = crate::runtime::unix_channel(kubelet.clone())
        .await
        .map_err(|source| RegisterError::Unreachable {
            socket: kubelet.display().to_string(),
            source,
        })?;
    RegistrationClient::new(channel)
        .register(api::RegisterRequest {
            version: version.into(),
            endpoint: endpoint.into(),
            resource_name: resource.into(),
            options: None,
        })
        .await
        .map_err(|e| RegisterError::Refused(e.message().to_owned()))?;
    Ok(())
}

/// The identity of the kubelet's socket file, to notice it being made afresh: a new file may
/// reuse the inode number of the one it replaces, never its change time as well.
fn socket_id(path: &std::path::Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

/// Runs the example plugin until `stop`.
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    if config.count == 0 {
        return Err("--count must be at least 1".into());
    }
    let plugin = Arc::new(Plugin::new(config.count, config.pre_start_required));
    serve(plugin, &config, stop).await
}

/// Serves `plugin` and keeps it registered (again after each kubelet restart) until `stop`.
pub async fn serve(
    plugin: Arc<Plugin>,
    config: &Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let dir = &config.device_plugin_path;
    let endpoint = endpoint(&config.resource);
    let socket = dir.join(&endpoint);
    let kubelet = dir.join(api::KUBELET_SOCKET);
    plugin.closed.send_replace(false);
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).map_err(|e| {
        format!(
            "binding {} ({e}); is --device-plugin-path the kubelet's device-plugins directory?",
            socket.display()
        )
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DevicePluginServer::new(plugin.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async move {
                    let mut rx = stop_rx;
                    let _ = rx.wait_for(|s| *s).await;
                },
            ),
    );
    let result = async {
        let mut registered = None;
        let mut unhealthy_at = config
            .unhealthy_after
            .map(|d| tokio::time::Instant::now() + d);
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = poll.tick() => {}
            }
            if unhealthy_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                unhealthy_at = None;
                let last = format!("dev-{}", config.count - 1);
                tracing::info!(device = %last, "reporting device unhealthy");
                plugin.set_health(&last, false);
            }
            let now = socket_id(&kubelet);
            if now.is_none() {
                // The kubelet is away; whatever socket comes next gets a registration.
                registered = None;
            } else if now != registered {
                match register(dir, &config.api_version, &config.resource, &endpoint).await {
                    Ok(()) => {
                        tracing::info!(resource = %config.resource, socket = %socket.display(),
                            devices = config.count, "registered with the kubelet");
                        registered = now;
                    }
                    Err(e @ RegisterError::Unreachable { .. }) => {
                        tracing::warn!(error = %e, "kubelet not answering yet; retrying");
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }
    .await;
    plugin.closed.send_replace(true);
    let _ = stop_tx.send(true);
    let _ = server.await;
    let _ = std::fs::remove_file(&socket);
    result
}

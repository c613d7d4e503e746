//! The Node object and its Lease: registration with capacity, labels, addresses and node
//! info, a Ready condition refreshed with the status, and the `kube-node-lease` Lease renewed
//! every 10 s.
//!
//! Like upstream's kubelet, the node is Ready only once the pod network is: until a CNI
//! network config is in `--cni-conf-dir`, Ready is `False` with reason `KubeletNotReady`. The
//! config dir is looked at every second so the node turns Ready as soon as the config appears
//! rather than at the next 10 s status update.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Ctx, Error};

/// How often the lease is renewed and the status refreshed.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the network config is looked for (a change is written at once).
const NETWORK_POLL: Duration = Duration::from_secs(1);

/// The Ready condition's message while no CNI config exists, as upstream's kubelet words
/// the runtime's `NetworkReady=false`.
pub const NETWORK_NOT_READY: &str = "container runtime network not ready: NetworkReady=false \
    reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";

/// What the status update needs to know besides the node itself: whether the network is
/// configured, and when each condition last changed (`lastTransitionTime` moves only then).
#[derive(Clone)]
struct Health {
    network_ready: bool,
    /// When the kubelet started: the transition time of the conditions that never change.
    started: Time,
    /// When Ready last changed.
    ready_since: Time,
}

impl Health {
    fn new(network_ready: bool) -> Self {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        Self {
            network_ready,
            started: now.clone(),
            ready_since: now,
        }
    }

    /// Records the current network state; whether Ready changes with it.
    fn observe(&mut self, network_ready: bool) -> bool {
        if network_ready == self.network_ready {
            return false;
        }
        self.network_ready = network_ready;
        self.ready_since = Time(k8s_openapi::jiff::Timestamp::now());
        true
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Status, reason and message of the Ready condition.
fn ready_condition(network_ready: bool) -> (&'static str, &'static str, &'static str) {
    if network_ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        ("False", "KubeletNotReady", NETWORK_NOT_READY)
    }
}

/// What this node offers pods (capacity and allocatable: nothing is reserved for the system):
/// the CPUs and memory of the host, `--max-pods`, and a nominal ephemeral storage.
pub fn allocatable(config: &super::Config) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    [
        ("cpu".to_owned(), Quantity(cpus.to_string())),
        (
            "memory".to_owned(),
            Quantity(format!("{}Ki", memory_bytes() / 1024)),
        ),
        ("pods".to_owned(), Quantity(config.max_pods.to_string())),
        ("ephemeral-storage".to_owned(), Quantity("10Gi".into())),
    ]
    .into()
}

fn status(ctx: &Ctx, health: &Health) -> NodeStatus {
    let (devices, healthy) = ctx.devices.resources();
    let mut capacity = ctx.allocatable.clone();
    capacity.extend(devices);
    let mut allocatable = ctx.allocatable.clone();
    allocatable.extend(healthy);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let cond = |t: &str, s: &str, reason: &str, message: &str| NodeCondition {
        type_: t.into(),
        status: s.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(if t == "Ready" {
            health.ready_since.clone()
        } else {
            health.started.clone()
        }),
    };
    let (ready, reason, message) = ready_condition(health.network_ready);
    let ready = cond("Ready", ready, reason, message);
    let mut addresses = vec![NodeAddress {
        type_: "Hostname".into(),
        address: ctx.node.clone(),
    }];
    if let Some(ip) = ctx.node_ip {
        addresses.insert(
            0,
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            },
        );
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".into());
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .unwrap_or_default()
        .trim()
        .to_owned();
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(addresses),
        conditions: Some(vec![
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ready,
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            container_runtime_version: format!("ekube://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: kernel,
            kube_proxy_version: String::new(),
            kubelet_version: ekube_api::GIT_VERSION.into(),
            machine_id: machine_id.clone(),
            operating_system: "linux".into(),
            os_image,
            system_uuid: machine_id,
            ..Default::default()
        }),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        ..Default::default()
    }
}

/// Creates the Node (or takes over an existing one); [`heartbeat`] writes its status.
pub async fn register(ctx: &Ctx) -> Result<(), Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname".to_owned(), ctx.node.clone()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), arch().to_owned()),
        ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("beta.kubernetes.io/arch".to_owned(), arch().to_owned()),
    ]
    .into();
    let node = Node {
        metadata: ObjectMeta {
            name: Some(ctx.node.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %ctx.node, "registered node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.patch(
                &ctx.node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": labels}})),
            )
            .await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn update_status(ctx: &Ctx, health: &Health) -> Result<(), Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    api.patch_status(
        &ctx.node,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status(ctx, health)})),
    )
    .await?;
    Ok(())
}

async fn renew_lease(ctx: &Ctx) -> Result<(), Error> {
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let spec = LeaseSpec {
        holder_identity: Some(ctx.node.clone()),
        lease_duration_seconds: Some(40),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    };
    match api
        .patch(
            &ctx.node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(ctx.node.clone()),
                    namespace: Some("kube-node-lease".into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Renews the lease and refreshes the node status every [`HEARTBEAT`] until `stop`, and at
/// once when the network config appears or goes or a device plugin's devices change.
pub async fn heartbeat(ctx: std::sync::Arc<Ctx>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let configured = || super::cni::network_configured(&ctx.config.cni_conf_dir);
    let mut health = Health::new(configured());
    let mut devices = ctx.devices.changed();
    let mut due = tokio::time::Instant::now();
    // Whether the API has not seen the current status yet.
    let mut stale = true;
    loop {
        if health.observe(configured()) {
            tracing::info!(
                network_ready = health.network_ready,
                "node readiness changed"
            );
            stale = true;
        }
        let now = tokio::time::Instant::now();
        if now >= due {
            due = now + HEARTBEAT;
            stale = true;
            if let Err(e) = renew_lease(&ctx).await {
                tracing::warn!(error = %e, "renewing node lease");
            }
        }
        if stale {
            // A failed update is retried at the next poll, not a whole heartbeat later.
            match update_status(&ctx, &health).await {
                Ok(()) => stale = false,
                Err(e) => tracing::warn!(error = %e, "updating node status"),
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(NETWORK_POLL) => {}
            _ = devices.changed() => stale = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_waits_for_the_network_config() {
        let dir = tempfile::tempdir().unwrap();
        let configured = || super::super::cni::network_configured(dir.path());
        let mut health = Health::new(configured());
        assert_eq!(
            ready_condition(health.network_ready),
            ("False", "KubeletNotReady", NETWORK_NOT_READY)
        );
        assert!(
            NETWORK_NOT_READY
                .ends_with("message:Network plugin returns error: cni plugin not initialized")
        );
        let since = health.ready_since.clone();
        assert!(!health.observe(configured()), "nothing changed yet");
        std::fs::write(
            dir.path().join("10-ekube.conflist"),
            r#"{"cniVersion": "1.0.0", "name": "ekube", "plugins": []}"#,
        )
        .unwrap();
        assert!(health.observe(configured()));
        assert_eq!(ready_condition(health.network_ready).0, "True");
        assert!(health.ready_since.0 >= since.0);
        assert!(!health.observe(configured()));
    }
}

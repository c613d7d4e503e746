//! The Node object and its Lease: registration with capacity, labels, addresses and node
//! info, a Ready condition refreshed with the status, and the `kube-node-lease` Lease renewed
//! every 10 s.

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

fn status(ctx: &Ctx) -> NodeStatus {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let resources: BTreeMap<String, Quantity> = [
        ("cpu".to_owned(), Quantity(cpus.to_string())),
        (
            "memory".to_owned(),
            Quantity(format!("{}Ki", memory_bytes() / 1024)),
        ),
        ("pods".to_owned(), Quantity(ctx.config.max_pods.to_string())),
        ("ephemeral-storage".to_owned(), Quantity("10Gi".into())),
    ]
    .into();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let cond = |t: &str, s: &str, reason: &str, message: &str| NodeCondition {
        type_: t.into(),
        status: s.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
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
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
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
            cond(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
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
            kubelet_version: format!("v1.34.0-ekube.{}", env!("CARGO_PKG_VERSION")),
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

/// Creates the Node (or takes over an existing one) and writes its status.
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
    update_status(ctx).await
}

async fn update_status(ctx: &Ctx) -> Result<(), Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    api.patch_status(
        &ctx.node,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status(ctx)})),
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

/// Renews the lease and refreshes the node status every [`HEARTBEAT`] until `stop`.
pub async fn heartbeat(ctx: std::sync::Arc<Ctx>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        if let Err(e) = renew_lease(&ctx).await {
            tracing::warn!(error = %e, "renewing node lease");
        }
        if let Err(e) = update_status(&ctx).await {
            tracing::warn!(error = %e, "updating node status");
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

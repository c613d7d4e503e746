//! This node's Node object: registering it when asked (until the kubelet does), giving it a
//! podCIDR when asked (until node IPAM does), waiting for its podCIDR, and publishing the
//! flannel annotations.
//!
//! Annotations are written with a JSON merge patch of `metadata.annotations` on the main
//! resource. Upstream flannel patches `nodes/status`; Kubernetes lets metadata through there,
//! but a status write in ekube's apiserver keeps the stored metadata, so the main resource it is.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeStatus};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Error, Result, peers};

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Reads the node; `None` when it does not exist.
pub async fn get(api: &Api<Node>, name: &str) -> Result<Option<Node>> {
    api.get_opt(name)
        .await
        .map_err(kube_err(format!("get node {name}")))
}

/// Creates the Node `name` (label `kubernetes.io/hostname`, InternalIP `ip`) when missing.
pub async fn register(api: &Api<Node>, name: &str, ip: Ipv4Addr) -> Result<()> {
    if get(api, name).await?.is_some() {
        return Ok(());
    }
    let addresses = vec![
        NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_string(),
        },
        NodeAddress {
            type_: "Hostname".into(),
            address: name.into(),
        },
    ];
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ])),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(addresses.clone()),
            ..Default::default()
        }),
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = name, "registered the node"),
        Err(e) if is_status(&e, 409) => return Ok(()),
        Err(e) => return Err(kube_err(format!("create node {name}"))(e)),
    }
    // A create may drop status (as Kubernetes does for some kinds); make sure the address sticks.
    let fresh = get(api, name).await?;
    if fresh
        .as_ref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .is_none_or(|a| a.is_empty())
    {
        let patch = json!({"status": {"addresses": addresses}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err(format!("set addresses of node {name}")))?;
    }
    Ok(())
}

/// Sets `spec.podCIDR` (and `podCIDRs`) to `cidr` when the node has none.
pub async fn ensure_pod_cidr(api: &Api<Node>, name: &str, cidr: Ipv4Network) -> Result<()> {
    let Some(node) = get(api, name).await? else {
        return Err(Error::Config(format!(
            "node {name} does not exist (pass --register-node to create it)"
        )));
    };
    if peers::pod_cidr(&node).is_some() {
        return Ok(());
    }
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_err(format!("set podCIDR of node {name}")))?;
    tracing::info!(node = name, %cidr, "set the node's podCIDR");
    Ok(())
}

/// Waits (polling every second) until the node exists with a podCIDR.
pub async fn wait_for_pod_cidr(api: &Api<Node>, name: &str) -> Result<Ipv4Network> {
    let mut logged = false;
    loop {
        match get(api, name).await {
            Ok(Some(n)) => {
                if let Some(c) = peers::pod_cidr(&n) {
                    return Ok(c);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading the node"),
        }
        if !logged {
            tracing::info!(node = name, "waiting for the node's spec.podCIDR");
            logged = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Merges `annotations` into the node's metadata.
pub async fn publish(
    api: &Api<Node>,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<()> {
    let patch = json!({"metadata": {"annotations": annotations}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_err(format!("annotate node {name}")))?;
    tracing::info!(node = name, "published the flannel annotations");
    Ok(())
}

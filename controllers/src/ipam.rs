//! Node IPAM: gives every Node a `spec.podCIDR` (and `podCIDRs`) cut from `--cluster-cidr`.
//!
//! The set of taken subnets is never kept across reconciles: it is read from a fresh list of
//! the Nodes each time one needs a subnet, so a deleted node's subnet is free again at once and
//! subnets a node already carries (set by an admin, or by an earlier run) are honoured. One lock
//! serialises allocations so two new nodes never get the same subnet.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use crate::{Context as _, ReconcileError, Result};

/// The cluster CIDR and the size of each node's slice of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCidr {
    pub network: Ipv4Network,
    pub mask: u8,
}

impl ClusterCidr {
    pub fn new(cidr: &str, mask: u8) -> Result<Self, String> {
        let network: Ipv4Network = cidr
            .parse()
            .map_err(|e| format!("--cluster-cidr {cidr:?}: {e}"))?;
        if mask < network.prefix() || mask > 30 {
            return Err(format!(
                "--node-cidr-mask-size {mask} must be between the cluster CIDR's prefix ({}) and 30",
                network.prefix()
            ));
        }
        let network = Ipv4Network::new(network.network(), network.prefix()).expect("valid prefix");
        Ok(Self { network, mask })
    }

    /// How many node subnets fit.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.mask - self.network.prefix())
    }

    /// The `index`th node subnet.
    pub fn subnet(&self, index: u64) -> Ipv4Network {
        let base = u32::from(self.network.network()) as u64;
        let addr = base + (index << (32 - self.mask));
        Ipv4Network::new(Ipv4Addr::from(addr as u32), self.mask).expect("valid prefix")
    }

    /// The lowest subnet that overlaps none of `used`.
    pub fn next_free(&self, used: &[Ipv4Network]) -> Option<Ipv4Network> {
        (0..self.capacity())
            .map(|i| self.subnet(i))
            .find(|s| !used.iter().any(|u| overlaps(s, u)))
    }
}

fn overlaps(a: &Ipv4Network, b: &Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

struct Ctx {
    client: kube::Client,
    cidr: ClusterCidr,
    lock: tokio::sync::Mutex<()>,
}

pub async fn run(client: kube::Client, cidr: ClusterCidr) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        client,
        cidr,
        lock: tokio::sync::Mutex::new(()),
    });
    Controller::new(nodes, watcher::Config::default())
        .run(
            reconcile,
            |_, e, _| {
                tracing::warn!(error = %e, "node ipam");
                Action::requeue(Duration::from_secs(2))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn pod_cidrs(node: &Node) -> Vec<Ipv4Network> {
    let spec = node.spec.as_ref();
    let mut out: Vec<Ipv4Network> = spec
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default()
        .iter()
        .chain(spec.and_then(|s| s.pod_cidr.as_ref()))
        .filter_map(|c| c.parse().ok())
        .collect();
    out.dedup();
    out
}

#[tracing::instrument(skip_all, fields(node = %node.name_any()))]
async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some_and(|c| !c.is_empty())
    {
        return Ok(Action::await_change());
    }
    let _guard = ctx.lock.lock().await;
    let api: Api<Node> = Api::all(ctx.client.clone());
    let all = api
        .list(&ListParams::default())
        .await
        .ctx(|| "listing nodes".into())?;
    let name = node.name_any();
    if let Some(current) = all.items.iter().find(|n| n.name_any() == name)
        && !pod_cidrs(current).is_empty()
    {
        return Ok(Action::await_change());
    }
    let used: Vec<Ipv4Network> = all
        .items
        .iter()
        .filter(|n| n.name_any() != name)
        .flat_map(pod_cidrs)
        .collect();
    let Some(subnet) = ctx.cidr.next_free(&used) else {
        return Err(ReconcileError::Other(format!(
            "no subnet of {} left for node {name}",
            ctx.cidr.network
        )));
    };
    let cidr = subnet.to_string();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})),
    )
    .await
    .ctx(|| format!("setting podCIDR of node {name}"))?;
    tracing::info!(%cidr, "assigned pod CIDR");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free_subnet() {
        let c = ClusterCidr::new("10.244.0.0/16", 24).unwrap();
        assert_eq!(c.capacity(), 256);
        assert_eq!(c.next_free(&[]).unwrap().to_string(), "10.244.0.0/24");
        let used = ["10.244.0.0/24", "10.244.2.0/24"].map(|s| s.parse().unwrap());
        assert_eq!(c.next_free(&used).unwrap().to_string(), "10.244.1.0/24");
        let all: Vec<Ipv4Network> = (0..256).map(|i| c.subnet(i)).collect();
        assert!(c.next_free(&all).is_none());
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(ClusterCidr::new("10.244.0.0/16", 8).is_err());
        assert!(ClusterCidr::new("nonsense", 24).is_err());
        assert_eq!(
            ClusterCidr::new("10.244.3.7/16", 24)
                .unwrap()
                .network
                .to_string(),
            "10.244.0.0/16"
        );
    }
}

//! Node IPAM: gives every Node a `spec.podCIDR` (and `podCIDRs`) cut from `--cluster-cidr`.
//!
//! What is taken is read from the controller's own watch of the Nodes (its store), as
//! upstream's range allocator keeps its CIDR set in memory, so assigning a subnet costs no list
//! of the cluster: a deleted node's subnet is free again once the watch has seen it go, and
//! subnets a node already carries (set by an admin, or by an earlier run) are honoured. One lock
//! serialises allocations, and the subnets this process assigned count as taken until the watch
//! shows them, so two new nodes never get the same subnet. A node that finds the range full
//! waits longer each time (up to [`FULL_RETRY_MAX`]) instead of asking every two seconds, and
//! says so as upstream's allocator does: a `CIDRNotAvailable` Event on the node, counted once
//! per attempt, so `kubectl describe node` shows why it has no podCIDR.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ipnetwork::Ipv4Network;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::events::{EventType, Recorder, reference};
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

    /// The lowest subnet that overlaps none of `used`: each used network marks the subnets it
    /// overlaps, so the cost is one pass over `used` and one over the range.
    pub fn next_free(&self, used: &[Ipv4Network]) -> Option<Ipv4Network> {
        let capacity = self.capacity();
        let mut taken = vec![false; capacity as usize];
        let shift = 32 - u32::from(self.mask);
        let base = u64::from(u32::from(self.network.network()));
        for u in used.iter().filter(|u| overlaps(&self.network, u)) {
            // The subnets from the one holding u's first address to the one holding its last.
            let first = u64::from(u32::from(u.network())).max(base);
            let last = u64::from(u32::from(u.broadcast()))
                .min(u64::from(u32::from(self.network.broadcast())));
            for i in (first - base) >> shift..=(last - base) >> shift {
                taken[i as usize] = true;
            }
        }
        (0..capacity)
            .find(|&i| !taken[i as usize])
            .map(|i| self.subnet(i))
    }
}

fn overlaps(a: &Ipv4Network, b: &Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// The longest a node waits before asking again for a subnet of a full range.
const FULL_RETRY_MAX: Duration = Duration::from_secs(60);

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
    cidr: ClusterCidr,
    /// The controller's view of the Nodes.
    nodes: Store<Node>,
    /// Serialises allocations, and holds the subnets assigned by this process (by node name)
    /// until the watch shows them on their node.
    assigned: tokio::sync::Mutex<HashMap<String, Ipv4Network>>,
    /// The nodes that found the range full, by name.
    full: Mutex<HashMap<String, Full>>,
}

/// A node waiting for a subnet of a full range.
#[derive(Default)]
struct Full {
    /// How many times in a row it found the range full.
    times: u32,
    /// Its `CIDRNotAvailable` Event, once written.
    event: Option<String>,
}

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    cidr: ClusterCidr,
) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    let ctx = Arc::new(Ctx {
        client,
        recorder,
        cidr,
        nodes: store.clone(),
        assigned: tokio::sync::Mutex::new(HashMap::new()),
        full: Mutex::new(HashMap::new()),
    });
    // A deleted node frees its subnet: nodes waiting for one try again at once rather than at
    // their next retry.
    let (freed, on_freed) = tokio::sync::mpsc::channel(1);
    let waiting = ctx.clone();
    let changes = reflector(
        writer,
        watcher(nodes, watcher::Config::default()).default_backoff(),
    )
    .inspect_ok(move |event| {
        if matches!(event, watcher::Event::Delete(_))
            && !waiting.full.lock().expect("not poisoned").is_empty()
        {
            // Full means a wake-up is already pending.
            let _ = freed.try_send(());
        }
    })
    .applied_objects();
    Controller::for_stream(changes, store)
        .reconcile_all_on(tokio_stream::wrappers::ReceiverStream::new(on_freed))
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// Retries in 2 s, or, for a node that found the range full, in twice the last wait.
fn error_policy(node: Arc<Node>, e: &ReconcileError, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %e, "node ipam");
    let full = ctx.full.lock().expect("not poisoned");
    let wait = match full.get(&node.name_any()) {
        Some(f) => Duration::from_secs(2 << f.times.min(5)).min(FULL_RETRY_MAX),
        None => Duration::from_secs(2),
    };
    Action::requeue(wait)
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
    let mut assigned = ctx.assigned.lock().await;
    let name = node.name_any();
    let nodes = ctx.nodes.state();
    // What the watch shows replaces what this process remembers assigning; a node the watch
    // no longer has holds nothing and waits for nothing.
    let waiting: HashSet<String> = nodes
        .iter()
        .filter(|n| pod_cidrs(n).is_empty())
        .map(|n| n.name_any())
        .collect();
    assigned.retain(|n, _| waiting.contains(n));
    ctx.full
        .lock()
        .expect("not poisoned")
        .retain(|n, _| waiting.contains(n));
    // Given one already, by an admin or by this process (the watch has yet to show it).
    if !waiting.contains(&name) || assigned.contains_key(&name) {
        return Ok(Action::await_change());
    }
    let used: Vec<Ipv4Network> = nodes
        .iter()
        .flat_map(|n| pod_cidrs(n))
        .chain(assigned.values().copied())
        .collect();
    let Some(subnet) = ctx.cidr.next_free(&used) else {
        drop(assigned);
        not_available(&node, &ctx).await;
        return Err(ReconcileError::Other(format!(
            "no subnet of {} left for node {name}",
            ctx.cidr.network
        )));
    };
    ctx.full.lock().expect("not poisoned").remove(&name);
    let cidr = subnet.to_string();
    let api: Api<Node> = Api::all(ctx.client.clone());
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})),
    )
    .await
    .ctx(|| format!("setting podCIDR of node {name}"))?;
    assigned.insert(name, subnet);
    tracing::info!(%cidr, "assigned pod CIDR");
    Ok(Action::await_change())
}

/// Counts one more attempt of `node` on a full range, and its Event: upstream's
/// `CIDRNotAvailable` status change, written once and then counted.
async fn not_available(node: &Node, ctx: &Ctx) {
    let name = node.name_any();
    let (times, event) = {
        let mut full = ctx.full.lock().expect("not poisoned");
        let waiting = full.entry(name.clone()).or_default();
        waiting.times += 1;
        (waiting.times, waiting.event.clone())
    };
    let counted = match &event {
        Some(event) => {
            let count = i32::try_from(times).unwrap_or(i32::MAX);
            ctx.recorder.repeat("default", event, count).await
        }
        None => false,
    };
    if counted {
        return;
    }
    let message = format!("Node {name} status is now: CIDRNotAvailable");
    let written = ctx
        .recorder
        .record_named(
            reference(node),
            EventType::Normal,
            "CIDRNotAvailable",
            &message,
        )
        .await;
    if let Some(waiting) = ctx.full.lock().expect("not poisoned").get_mut(&name) {
        waiting.event = written;
    }
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
    fn a_used_network_takes_every_subnet_it_overlaps() {
        let c = ClusterCidr::new("10.244.0.0/16", 24).unwrap();
        let net = |s: &str| -> Ipv4Network { s.parse().unwrap() };
        // Wider than a node subnet: takes four.
        assert_eq!(
            c.next_free(&[net("10.244.0.0/22")]).unwrap(),
            net("10.244.4.0/24")
        );
        // Narrower: takes the one it is in.
        assert_eq!(
            c.next_free(&[net("10.244.0.0/24"), net("10.244.1.128/25")])
                .unwrap(),
            net("10.244.2.0/24")
        );
        // Outside the cluster CIDR: takes nothing; covering it: takes all.
        assert_eq!(
            c.next_free(&[net("10.1.0.0/24")]).unwrap(),
            net("10.244.0.0/24")
        );
        assert!(c.next_free(&[net("10.0.0.0/8")]).is_none());
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

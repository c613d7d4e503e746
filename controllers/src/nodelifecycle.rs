//! Node lifecycle controller: notices nodes whose kubelet went silent, marks them NotReady,
//! taints them, and evicts their pods.
//!
//! A node is silent when neither its Lease in `kube-node-lease` nor its `Ready` heartbeat has
//! changed for `--node-monitor-grace-period`, measured on this controller's own clock from
//! when it last saw a change (as upstream does, so clock skew between hosts does not matter).
//! A silent node's conditions become `Unknown` ("Kubelet stopped posting node status."), its pods
//! lose `Ready`, and it gets the `node.kubernetes.io/unreachable` taints (`not-ready` when the
//! kubelet itself reports `Ready=False`). Pods that do not tolerate the NoExecute taint are
//! deleted after `--pod-eviction-timeout` (or their toleration's `tolerationSeconds`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::events::{EventType, Recorder};
use crate::util::now;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub period: Duration,
    pub grace: Duration,
    pub eviction: Duration,
}

/// What the controller remembers about one node.
struct Health {
    /// The (lease renewTime, Ready heartbeat) last seen, and when it changed.
    probe: (Option<String>, Option<String>),
    changed: Instant,
    /// Since when the node has been NotReady or Unknown, on this controller's clock.
    unhealthy_since: Option<Instant>,
}

pub async fn run(
    client: kube::Client,
    recorder: Recorder,
    settings: Settings,
) -> Result<(), String> {
    let mut health: HashMap<String, Health> = HashMap::new();
    let mut tick = tokio::time::interval(settings.period);
    loop {
        tick.tick().await;
        if let Err(e) = monitor(&client, &recorder, settings, &mut health).await {
            tracing::warn!(error = %e, "node lifecycle");
        }
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The taints a node should carry for its Ready condition (`None`: no condition yet).
pub fn wanted_taints(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("Unknown") => Some(UNREACHABLE),
        Some("False") => Some(NOT_READY),
        _ => None,
    }
}

/// How long a pod may stay on a node tainted `key:NoExecute`: `None` forever.
pub fn eviction_delay(pod: &Pod, key: &str, default: Duration) -> Option<Duration> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let matching = tolerations.iter().find(|t| {
        let key_ok = match t.operator.as_deref() {
            Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == key),
            _ => t.key.as_deref() == Some(key),
        };
        key_ok
            && t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "NoExecute")
    });
    match matching {
        None => Some(default),
        Some(t) => t
            .toleration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

async fn monitor(
    client: &kube::Client,
    recorder: &Recorder,
    settings: Settings,
    health: &mut HashMap<String, Health>,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let node_list = nodes.list(&ListParams::default()).await?;
    let lease_list = leases.list(&ListParams::default()).await?;
    let renew: HashMap<String, String> = lease_list
        .items
        .iter()
        .filter_map(|l| {
            Some((
                l.name_any(),
                serde_json::to_string(l.spec.as_ref()?.renew_time.as_ref()?).ok()?,
            ))
        })
        .collect();
    health.retain(|name, _| node_list.items.iter().any(|n| n.name_any() == *name));
    for node in &node_list.items {
        let name = node.name_any();
        let ready = ready_condition(node);
        let probe = (
            renew.get(&name).cloned(),
            ready
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .and_then(|t| serde_json::to_string(t).ok()),
        );
        let h = health.entry(name.clone()).or_insert_with(|| Health {
            probe: probe.clone(),
            changed: Instant::now(),
            unhealthy_since: None,
        });
        if h.probe != probe {
            h.probe = probe;
            h.changed = Instant::now();
        }
        let mut status = ready.map(|c| c.status.clone());
        if h.changed.elapsed() > settings.grace && status.as_deref() != Some("Unknown") {
            mark_unknown(client, recorder, node, ready.is_none()).await?;
            status = Some("Unknown".into());
        }
        // Taints follow the Ready condition.
        let want = wanted_taints(status.as_deref());
        let current: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let mut taints: Vec<Taint> = current
            .iter()
            .filter(|t| {
                !(t.key == UNREACHABLE || t.key == NOT_READY) || Some(t.key.as_str()) == want
            })
            .cloned()
            .collect();
        if let Some(key) = want {
            for effect in ["NoSchedule", "NoExecute"] {
                if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                    taints.push(Taint {
                        key: key.into(),
                        effect: effect.into(),
                        time_added: Some(now()),
                        value: None,
                    });
                }
            }
        }
        if taints != current {
            nodes
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"taints": taints}})),
                )
                .await?;
        }
        match want {
            None => h.unhealthy_since = None,
            Some(key) => {
                let since = *h.unhealthy_since.get_or_insert_with(Instant::now);
                evict(
                    client,
                    recorder,
                    &name,
                    key,
                    since.elapsed(),
                    settings.eviction,
                )
                .await?;
            }
        }
    }
    Ok(())
}

async fn mark_unknown(
    client: &kube::Client,
    recorder: &Recorder,
    node: &Node,
    never: bool,
) -> Result<(), kube::Error> {
    let name = node.name_any();
    let message = if never {
        "Kubelet never posted node status."
    } else {
        "Kubelet stopped posting node status."
    };
    let now = now();
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        if !conditions.iter().any(|c| c.type_ == t) {
            conditions.push(NodeCondition {
                type_: t.into(),
                ..Default::default()
            });
        }
    }
    for c in conditions
        .iter_mut()
        .filter(|c| c.type_ != "NetworkUnavailable")
    {
        if c.status != "Unknown" {
            c.last_transition_time = Some(now.clone());
        }
        c.status = "Unknown".into();
        c.reason = Some("NodeStatusUnknown".into());
        c.message = Some(message.into());
        c.last_heartbeat_time = c.last_heartbeat_time.clone().or(Some(now.clone()));
    }
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": conditions}})),
        )
        .await?;
    tracing::info!(node = %name, "node stopped posting status, marked NotReady");
    recorder
        .record(
            node,
            EventType::Normal,
            "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady"),
        )
        .await;
    // Its pods are no longer Ready (so Services stop sending them traffic).
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await?;
    for mut pod in on_node.items {
        let Some(ns) = pod.namespace() else { continue };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        // An update of the status, as upstream's node controller writes it (its role may
        // update pods/status, not patch it); a pod that changed meanwhile is skipped.
        let status = pod.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "Ready");
        conditions.push(PodCondition {
            type_: "Ready".into(),
            status: "False".into(),
            last_transition_time: Some(now.clone()),
            ..Default::default()
        });
        let _ = api
            .replace_status(&pod.name_any(), &PostParams::default(), &pod)
            .await;
    }
    Ok(())
}

async fn evict(
    client: &kube::Client,
    recorder: &Recorder,
    node: &str,
    key: &str,
    unhealthy_for: Duration,
    default: Duration,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    for pod in on_node.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(delay) = eviction_delay(&pod, key, default) else {
            continue;
        };
        if unhealthy_for < delay {
            continue;
        }
        let Some(ns) = pod.namespace() else { continue };
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let name = pod.name_any();
        tracing::info!(pod = %name, %node, "evicting pod from unreachable node");
        recorder
            .record(
                &pod,
                EventType::Normal,
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {ns}/{name}"),
            )
            .await;
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_decide_eviction() {
        let pod = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
        };
        let d = Duration::from_secs(300);
        assert_eq!(eviction_delay(&pod(json!([])), UNREACHABLE, d), Some(d));
        let forever =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]));
        assert_eq!(eviction_delay(&forever, UNREACHABLE, d), None);
        let bounded = pod(
            json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]),
        );
        assert_eq!(
            eviction_delay(&bounded, UNREACHABLE, d),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            eviction_delay(&pod(json!([{"operator": "Exists"}])), NOT_READY, d),
            None
        );
        assert_eq!(wanted_taints(Some("True")), None);
        assert_eq!(wanted_taints(Some("Unknown")), Some(UNREACHABLE));
    }
}

//! The controller-manager (and the scheduler it works with) against a real `ekube server`.
//!
//! No kubelet runs here: the tests create Node objects themselves and play the kubelet with a
//! [`FakeKubelet`] task that renews node Leases, gives bound pods an IP and `Running`, marks them
//! Ready (or leaves that to the test), and confirms graceful pod deletions.

mod daemonset;
mod deployments;
mod disruption;
mod gc;
mod history;
mod hpa;
mod ipam;
mod jobs;
mod nodes;
mod replicationcontroller;
mod statefulset;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use ekube_tests::{ServerProcess, ok, until};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolumeClaim, Pod, Service,
    ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Creates a Ready node with the given allocatable cpu and labels.
async fn create_node(client: &Client, name: &str, cpu: &str, labels: Value) -> Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}, {"type": "Hostname", "address": name}],
    }});
    // A controller (node IPAM) may write the node at the same moment: retry conflicts.
    let mut attempts = 0;
    loop {
        match nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status.clone()))
            .await
        {
            Ok(n) => return Ok(n),
            Err(kube::Error::Api(e)) if e.code == 409 && attempts < 10 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Plays the kubelet of a set of nodes.
struct FakeKubelet {
    task: tokio::task::JoinHandle<()>,
    /// Mark pods Ready as soon as they run.
    auto_ready: Arc<AtomicBool>,
    /// Nodes whose Lease is renewed.
    nodes: Arc<Mutex<BTreeSet<String>>>,
}

impl FakeKubelet {
    fn start(client: Client, nodes: &[&str], auto_ready: bool) -> Self {
        let auto = Arc::new(AtomicBool::new(auto_ready));
        let names: Arc<Mutex<BTreeSet<String>>> =
            Arc::new(Mutex::new(nodes.iter().map(|s| s.to_string()).collect()));
        let (a, n) = (auto.clone(), names.clone());
        let task = tokio::spawn(async move {
            let ip = AtomicU32::new(1);
            // A pod starts once: a later event from before its start (another writer's update,
            // still without a pod IP) must not turn a pod a test has finished back to Running.
            let mut started = BTreeSet::new();
            let pods: Api<Pod> = Api::all(client.clone());
            let mut stream = watcher(pods, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            let mut lease_tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = lease_tick.tick() => {
                        let names: Vec<String> = n.lock().unwrap().iter().cloned().collect();
                        for name in names {
                            renew_lease(&client, &name).await;
                        }
                    }
                    ev = stream.next() => {
                        let Some(Ok(pod)) = ev else { continue };
                        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
                        if !n.lock().unwrap().contains(&node) {
                            continue;
                        }
                        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap());
                        if pod.metadata.deletion_timestamp.is_some() {
                            let _ = api.delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await;
                            continue;
                        }
                        let uid = pod.uid().unwrap_or_default();
                        let unstarted = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_none();
                        if unstarted && !started.contains(&uid) {
                            let i = ip.fetch_add(1, Ordering::SeqCst);
                            let ready = a.load(Ordering::SeqCst);
                            let patch = Patch::Strategic(pod_status(i, ready));
                            if api.patch_status(&pod.name_any(), &PatchParams::default(), &patch).await.is_ok() {
                                started.insert(uid);
                            }
                        }
                    }
                }
            }
        });
        Self {
            task,
            auto_ready: auto,
            nodes: names,
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pod_status(i: u32, ready: bool) -> Value {
    let now = k8s_openapi::jiff::Timestamp::now();
    let r = if ready { "True" } else { "False" };
    json!({"status": {
        "phase": "Running",
        "podIP": format!("10.244.{}.{}", i / 250, i % 250 + 2),
        "podIPs": [{"ip": format!("10.244.{}.{}", i / 250, i % 250 + 2)}],
        "conditions": [
            {"type": "Ready", "status": r, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": r, "lastTransitionTime": now},
        ],
    }})
}

async fn set_ready(client: &Client, pod: &Pod, ready: bool) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap());
    let now = k8s_openapi::jiff::Timestamp::now();
    let r = if ready { "True" } else { "False" };
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": r, "lastTransitionTime": now}]}});
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await?;
    Ok(())
}

async fn renew_lease(client: &Client, node: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now},
    });
    let l: Lease = serde_json::from_value(lease).unwrap();
    if leases.create(&PostParams::default(), &l).await.is_err() {
        let _ = leases
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"renewTime": now}})),
            )
            .await;
    }
}

fn deployment(name: &str, replicas: i32, image: &str, extra_spec: Value) -> Deployment {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    });
    if let (Some(spec), Value::Object(extra)) = (d["spec"].as_object_mut(), extra_spec) {
        spec.extend(extra);
    }
    serde_json::from_value(d).unwrap()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

async fn pods_of(client: &Client, ns: &str, app: &str) -> Result<Vec<Pod>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map_err(|e| e.to_string())?
        .items)
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

async fn wait_gone<K>(api: &Api<K>, name: &str, secs: u64) -> Result<()>
where
    K: kube::Resource + Clone + for<'de> k8s_openapi::serde::Deserialize<'de> + std::fmt::Debug,
{
    until(secs, &format!("{name} is deleted"), || {
        let api = api.clone();
        async move {
            match api.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(Some(())),
                Some(o) => Err(format!("still there: finalizers {:?}", o.meta().finalizers)),
            }
        }
    })
    .await
}

/// Sets a pod's phase the way a kubelet reports a finished pod.
async fn finish_pod(client: &Client, pod: &Pod, phase: &str) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap());
    let now = k8s_openapi::jiff::Timestamp::now();
    let code = if phase == "Succeeded" { 0 } else { 1 };
    let patch = json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [{"name": "c", "image": "busybox:latest", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now}}}],
    }});
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(patch),
    )
    .await?;
    Ok(())
}

fn running(p: &Pod) -> bool {
    live(p)
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .map(|s| s.containers[0].image.clone().unwrap_or_default())
        .unwrap_or_default()
}

async fn pods_with(client: &Client, ns: &str, selector: &str) -> Result<Vec<Pod>, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| e.to_string())?
        .items)
}

fn job_condition(job: &Job, type_: &str) -> Option<(String, Option<String>)> {
    let c = job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

fn job_spec(name: &str, extra: Value) -> Job {
    let mut j = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:latest"}]}}},
    });
    if let (Some(spec), Value::Object(extra)) = (j["spec"].as_object_mut(), extra) {
        spec.extend(extra);
    }
    serde_json::from_value(j).unwrap()
}

//! The controller-manager (and the scheduler it works with) against a real `ekube server`.
//!
//! No kubelet runs here: the tests create Node objects themselves and play the kubelet with a
//! [`FakeKubelet`] task that renews node Leases, gives bound pods an IP and `Running`, marks them
//! Ready (or leaves that to the test), and confirms graceful pod deletions.

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

/// Polls `check` every 100 ms until it yields `Some`, failing after `secs` with `what` and the
/// last state `check` described.
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
                        if pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_none() {
                            let i = ip.fetch_add(1, Ordering::SeqCst);
                            let ready = a.load(Ordering::SeqCst);
                            let _ = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(pod_status(i, ready))).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_ipam_gives_distinct_subnets_and_reuses_released_ones() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    // A node that comes with a subnet keeps it.
    let preset: Node = serde_json::from_value(
        json!({"metadata": {"name": "preset"}, "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}),
    )?;
    nodes.create(&PostParams::default(), &preset).await?;
    for n in ["ipam-a", "ipam-b", "ipam-c"] {
        create_node(&client, n, "4", json!({})).await?;
    }
    let cidrs = until(20, "every node has a podCIDR", || {
        let nodes = nodes.clone();
        async move {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let cidrs: BTreeMap<String, String> = list
                .items
                .iter()
                .filter_map(|n| Some((n.name_any(), n.spec.as_ref()?.pod_cidr.clone()?)))
                .collect();
            if cidrs.len() == 4 {
                Ok(Some(cidrs))
            } else {
                Err(format!("{cidrs:?}"))
            }
        }
    })
    .await?;
    assert_eq!(
        cidrs["preset"], "10.244.0.0/24",
        "a preset podCIDR is honoured"
    );
    let distinct: BTreeSet<&String> = cidrs.values().collect();
    assert_eq!(distinct.len(), 4, "subnets are distinct: {cidrs:?}");
    for c in cidrs.values() {
        assert!(
            c.starts_with("10.244.") && c.ends_with(".0/24"),
            "{c} is a /24 of the cluster CIDR"
        );
    }
    let b = nodes.get("ipam-b").await?;
    assert_eq!(
        b.spec.as_ref().unwrap().pod_cidrs.as_ref().unwrap(),
        &vec![cidrs["ipam-b"].clone()]
    );
    // Deleting a node frees its subnet for the next one.
    nodes.delete("ipam-b", &DeleteParams::default()).await?;
    until(10, "ipam-b is gone", || {
        let nodes = nodes.clone();
        async move {
            Ok(nodes
                .get_opt("ipam-b")
                .await
                .map_err(|e| e.to_string())?
                .is_none()
                .then_some(()))
        }
    })
    .await?;
    create_node(&client, "ipam-d", "4", json!({})).await?;
    let d = until(20, "ipam-d gets a podCIDR", || {
        let nodes = nodes.clone();
        async move {
            Ok(nodes
                .get("ipam-d")
                .await
                .map_err(|e| e.to_string())?
                .spec
                .and_then(|s| s.pod_cidr))
        }
    })
    .await?;
    assert_eq!(d, cidrs["ipam-b"], "the released subnet is reused");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_spreads_over_nodes_and_its_service_lists_ready_pods() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let names = ["spread-1", "spread-2", "spread-3"];
    for n in names {
        create_node(&client, n, "4", json!({})).await?;
    }
    let kubelet = FakeKubelet::start(client.clone(), &names, true);
    let ns = "default";
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("web", 3, "web:v1", json!({})),
        )
        .await?;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await?;
    let pods = until(30, "3 ready pods of web, one per node", || {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, ns, "web").await?;
            let nodes: BTreeSet<String> = pods.iter().filter_map(node_of).collect();
            let ready = pods.iter().filter(|p| is_ready(p)).count();
            if pods.len() == 3 && ready == 3 && nodes.len() == 3 {
                Ok(Some(pods))
            } else {
                Err(format!(
                    "{} pods, {ready} ready, on nodes {nodes:?}",
                    pods.len()
                ))
            }
        }
    })
    .await?;
    for p in &pods {
        assert!(
            p.name_any().starts_with("web-"),
            "pod name {}",
            p.name_any()
        );
        let owner = &p.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReplicaSet", Some(true))
        );
        assert!(p.labels().contains_key("pod-template-hash"));
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let slice = until(
        20,
        "the EndpointSlice of web lists exactly the ready pods",
        || {
            let (slices, client) = (slices.clone(), client.clone());
            async move {
                // Compare with the pods as they are now: the ReplicaSet may have replaced one.
                let pods = pods_of(&client, ns, "web")
                    .await
                    .map_err(|e| e.to_string())?;
                let ips: BTreeSet<String> = pods
                    .iter()
                    .filter(|p| is_ready(p))
                    .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                    .collect();
                let list = slices
                    .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                    .await
                    .map_err(|e| e.to_string())?;
                let got: BTreeSet<String> = list
                    .items
                    .iter()
                    .flat_map(|s| s.endpoints.iter().flatten())
                    .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                    .flat_map(|e| e.addresses.clone())
                    .collect();
                if got == ips && list.items.len() == 1 {
                    Ok(Some(list.items[0].clone()))
                } else {
                    Err(format!("{got:?} vs {ips:?}"))
                }
            }
        },
    )
    .await?;
    assert_eq!(
        slice.labels()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice.labels()["tier"], "front", "service labels are copied");
    assert_eq!(slice.owner_references()[0].kind, "Service");
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), Some(8080)),
        "named targetPort resolved"
    );
    for e in slice.endpoints.iter().flatten() {
        let target = e.target_ref.as_ref().unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert!(
            e.node_name
                .as_deref()
                .is_some_and(|n| n.starts_with("spread-"))
        );
    }
    // A pod that stops being ready leaves the ready set (and moves to notReadyAddresses).
    set_ready(&client, &pods[0], false).await?;
    let gone = pods[0].status.as_ref().unwrap().pod_ip.clone().unwrap();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    until(20, "the unready pod is listed as not ready", || {
        let (slices, endpoints, gone) = (slices.clone(), endpoints.clone(), gone.clone());
        async move {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .map_err(|e| e.to_string())?;
            let slice_not_ready = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .any(|e| {
                    e.addresses.contains(&gone)
                        && e.conditions.as_ref().and_then(|c| c.ready) == Some(false)
                });
            let ep = endpoints.get("web").await.map_err(|e| e.to_string())?;
            let subset = ep.subsets.unwrap_or_default();
            let ep_ok = subset.len() == 1
                && subset[0].addresses.as_ref().map(|a| a.len()) == Some(2)
                && subset[0]
                    .not_ready_addresses
                    .as_ref()
                    .is_some_and(|a| a[0].ip == gone)
                && subset[0].ports.as_ref().is_some_and(|p| p[0].port == 8080);
            if slice_not_ready && ep_ok {
                Ok(Some(()))
            } else {
                Err(format!("slice ok {slice_not_ready}, endpoints {subset:?}"))
            }
        }
    })
    .await?;
    drop(kubelet);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_converges_up_and_down() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let names = ["scale-1", "scale-2"];
    for n in names {
        create_node(&client, n, "16", json!({})).await?;
    }
    let _kubelet = FakeKubelet::start(client.clone(), &names, true);
    let ns = "default";
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deploys
        .create(
            &PostParams::default(),
            &deployment("scaler", 3, "web:v1", json!({})),
        )
        .await?;
    for target in [3usize, 10, 2] {
        deploys
            .patch(
                "scaler",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": target}})),
            )
            .await?;
        until(
            45,
            &format!("scaler converges to {target} ready pods"),
            || {
                let (client, deploys) = (client.clone(), deploys.clone());
                async move {
                    let pods = pods_of(&client, ns, "scaler").await?;
                    let live_ready = pods.iter().filter(|p| live(p) && is_ready(p)).count();
                    let d = deploys.get("scaler").await.map_err(|e| e.to_string())?;
                    let st = d.status.clone().unwrap_or_default();
                    let done = pods.len() == target
                        && live_ready == target
                        && st.available_replicas == Some(target as i32)
                        && st.replicas == Some(target as i32)
                        && st.observed_generation == d.metadata.generation;
                    if done {
                        Ok(Some(()))
                    } else {
                        Err(format!(
                            "{} pods, {live_ready} ready, status {st:?}",
                            pods.len()
                        ))
                    }
                }
            },
        )
        .await?;
    }
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let sets = rs.list(&ListParams::default()).await?;
    assert_eq!(
        sets.items.len(),
        1,
        "scaling does not create new replica sets"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let ev = events.list(&ListParams::default()).await?;
    let reasons: BTreeSet<String> = ev.items.iter().filter_map(|e| e.reason.clone()).collect();
    for r in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "SuccessfulDelete",
        "Scheduled",
    ] {
        assert!(reasons.contains(r), "an event with reason {r}: {reasons:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_update_respects_surge_and_unavailability() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let names = ["roll-1", "roll-2", "roll-3"];
    for n in names {
        create_node(&client, n, "16", json!({})).await?;
    }
    let kubelet = FakeKubelet::start(client.clone(), &names, true);
    let ns = "default";
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let strategy = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}});
    deploys
        .create(
            &PostParams::default(),
            &deployment("roll", 4, "web:v1", strategy),
        )
        .await?;
    until(30, "4 ready pods of roll", || {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, ns, "roll").await?;
            let ready = pods.iter().filter(|p| live(p) && is_ready(p)).count();
            if ready == 4 && pods.len() == 4 {
                Ok(Some(()))
            } else {
                Err(format!("{} pods, {ready} ready", pods.len()))
            }
        }
    })
    .await?;
    ok(server.kubectl(&["rollout", "status", "deployment/roll", "--timeout=30s"]));
    // From here on the test decides when new pods become ready.
    kubelet.auto_ready.store(false, Ordering::SeqCst);
    // Watch every pod change and check the limits on the cluster's state after each.
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let watch = {
        let (client, violations) = (client.clone(), violations.clone());
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, ns);
            let mut state: HashMap<String, Pod> = HashMap::new();
            let mut stream = watcher(api, watcher::Config::default().labels("app=roll"))
                .default_backoff()
                .boxed();
            let mut listed = false;
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        state.insert(p.name_any(), p);
                    }
                    watcher::Event::Delete(p) => {
                        state.remove(&p.name_any());
                    }
                    watcher::Event::Init => {
                        listed = false;
                        state.clear();
                    }
                    watcher::Event::InitDone => listed = true,
                }
                if !listed {
                    continue;
                }
                let total = state.values().filter(|p| live(p)).count();
                let available = state.values().filter(|p| live(p) && is_ready(p)).count();
                if total > 5 || available < 3 {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("{total} pods, {available} available"));
                }
            }
        })
    };
    deploys
        .patch("roll", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2", "ports": [{"name": "http", "containerPort": 8080}]}]}}}})))
        .await?;
    // Play the kubelet: mark new pods ready one at a time, slowly.
    let image = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| s.containers[0].image.clone().unwrap_or_default())
            .unwrap_or_default()
    };
    until(90, "every pod runs web:v2 and is ready", || {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, ns, "roll").await?;
            let waiting: Vec<&Pod> = pods
                .iter()
                .filter(|p| {
                    live(p)
                        && !is_ready(p)
                        && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
                })
                .collect();
            if let Some(p) = waiting.first() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                set_ready(&client, p, true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let live_pods: Vec<&Pod> = pods.iter().filter(|p| live(p)).collect();
            let done = pods.len() == 4
                && live_pods
                    .iter()
                    .all(|p| image(p) == "web:v2" && is_ready(p));
            if done {
                Ok(Some(()))
            } else {
                Err(format!(
                    "{} pods: {:?}",
                    pods.len(),
                    pods.iter()
                        .map(|p| (image(p), is_ready(p), live(p)))
                        .collect::<Vec<_>>()
                ))
            }
        }
    })
    .await?;
    ok(server.kubectl(&["rollout", "status", "deployment/roll", "--timeout=30s"]));
    watch.abort();
    let v = violations.lock().unwrap().clone();
    assert!(v.is_empty(), "maxSurge/maxUnavailable exceeded: {v:?}");
    let d = deploys.get("roll").await?;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    let cond = d.status.unwrap().conditions.unwrap();
    let progressing = cond
        .iter()
        .find(|c| c.type_.as_deref() == Some("Progressing"))
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    // Rollback: kubectl patches the old template back; the old set becomes revision 3.
    kubelet.auto_ready.store(true, Ordering::SeqCst);
    ok(server.kubectl(&["rollout", "undo", "deployment/roll"]));
    until(60, "rollback to web:v1 completes", || {
        let (client, deploys) = (client.clone(), deploys.clone());
        async move {
            let pods = pods_of(&client, ns, "roll").await?;
            for p in pods.iter().filter(|p| {
                live(p)
                    && !is_ready(p)
                    && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
            }) {
                let _ = set_ready(&client, p, true).await;
            }
            let d = deploys.get("roll").await.map_err(|e| e.to_string())?;
            let rev = d
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .cloned();
            let done = pods.len() == 4
                && pods.iter().all(|p| image(p) == "web:v1" && is_ready(p))
                && rev.as_deref() == Some("3");
            if done {
                Ok(Some(()))
            } else {
                Err(format!("revision {rev:?}, {} pods", pods.len()))
            }
        }
    })
    .await?;
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    assert_eq!(
        sets.items.len(),
        2,
        "the rollback reused the first replica set"
    );
    Ok(())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_collection_follows_propagation_policy() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let names = ["gc-1", "gc-2"];
    for n in names {
        create_node(&client, n, "16", json!({})).await?;
    }
    let _kubelet = FakeKubelet::start(client.clone(), &names, true);
    let ns = "default";
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    for name in ["bg", "orphan", "fg"] {
        deploys
            .create(
                &PostParams::default(),
                &deployment(name, 2, "web:v1", json!({})),
            )
            .await?;
    }
    for name in ["bg", "orphan", "fg"] {
        until(30, &format!("2 ready pods of {name}"), || {
            let client = client.clone();
            async move {
                let pods = pods_of(&client, ns, name).await?;
                let ready = pods.iter().filter(|p| is_ready(p)).count();
                if ready == 2 {
                    Ok(Some(()))
                } else {
                    Err(format!("{ready} ready"))
                }
            }
        })
        .await?;
    }
    // Background: the deployment goes at once, then its replica set and pods.
    deploys.delete("bg", &DeleteParams::background()).await?;
    until(30, "replica sets and pods of bg are gone", || {
        let (client, sets) = (client.clone(), sets.clone());
        async move {
            let pods = pods_of(&client, ns, "bg").await?;
            let rs = sets
                .list(&ListParams::default().labels("app=bg"))
                .await
                .map_err(|e| e.to_string())?;
            if pods.is_empty() && rs.items.is_empty() {
                Ok(Some(()))
            } else {
                Err(format!("{} pods, {} sets", pods.len(), rs.items.len()))
            }
        }
    })
    .await?;
    // Orphan: the deployment goes, its replica set and pods stay, unowned.
    deploys.delete("orphan", &DeleteParams::orphan()).await?;
    wait_gone(&deploys, "orphan", 30).await?;
    let rs = sets
        .list(&ListParams::default().labels("app=orphan"))
        .await?;
    assert_eq!(rs.items.len(), 1);
    assert!(
        rs.items[0].owner_references().is_empty(),
        "the orphaned set lost its ownerReference"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pods = pods_of(&client, ns, "orphan")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(
        pods.iter().filter(|p| live(p)).count(),
        2,
        "orphaned pods keep running"
    );
    // Foreground: the deployment waits (with its finalizer) until its dependents are gone.
    deploys.delete("fg", &DeleteParams::foreground()).await?;
    let d = deploys.get_opt("fg").await?;
    if let Some(d) = d {
        assert!(
            d.finalizers().iter().any(|f| f == "foregroundDeletion"),
            "{:?}",
            d.finalizers()
        );
    }
    wait_gone(&deploys, "fg", 40).await?;
    let pods = pods_of(&client, ns, "fg")
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(
        pods.is_empty(),
        "foreground deletion removed the pods first: {}",
        pods.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_namespace_removes_everything_in_it() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "ns-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["ns-node"], true);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}}))?;
    namespaces.create(&PostParams::default(), &ns_obj).await?;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    until(20, "the default service account exists in doomed", || {
        let sas = sas.clone();
        async move {
            Ok(sas
                .get_opt("default")
                .await
                .map_err(|e| e.to_string())?
                .map(|_| ()))
        }
    })
    .await?;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "doomed");
    deploys
        .create(
            &PostParams::default(),
            &deployment("app", 2, "web:v1", json!({})),
        )
        .await?;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"a": "b"}}))?;
    Api::<ConfigMap>::namespaced(client.clone(), "doomed")
        .create(&PostParams::default(), &cm)
        .await?;
    until(30, "2 pods in doomed", || {
        let client = client.clone();
        async move {
            let n = pods_of(&client, "doomed", "app")
                .await?
                .iter()
                .filter(|p| is_ready(p))
                .count();
            if n == 2 {
                Ok(Some(()))
            } else {
                Err(format!("{n} ready"))
            }
        }
    })
    .await?;
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await?;
    wait_gone(&namespaces, "doomed", 60).await?;
    for (what, n) in [
        (
            "pods",
            Api::<Pod>::namespaced(client.clone(), "doomed")
                .list(&ListParams::default())
                .await?
                .items
                .len(),
        ),
        (
            "configmaps",
            Api::<ConfigMap>::namespaced(client.clone(), "doomed")
                .list(&ListParams::default())
                .await?
                .items
                .len(),
        ),
        (
            "deployments",
            deploys.list(&ListParams::default()).await?.items.len(),
        ),
    ] {
        assert_eq!(n, 0, "{what} left in the deleted namespace");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_node_becomes_not_ready_tainted_and_evicted() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    // A second controller-manager running only node lifecycle, with short timeouts.
    let log = std::fs::File::create(server.dir.join("lifecycle.log"))?;
    let mut lifecycle = std::process::Command::new(ekube_tests::ekube_bin())
        .args(["controller-manager", "--kubeconfig"])
        .arg(server.kubeconfig())
        .args([
            "--controllers",
            "nodelifecycle",
            "--node-monitor-period",
            "300ms",
        ])
        .args([
            "--node-monitor-grace-period",
            "3s",
            "--pod-eviction-timeout",
            "2s",
        ])
        .stderr(log)
        .spawn()?;
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut lifecycle);
    create_node(&client, "alive", "4", json!({})).await?;
    create_node(&client, "silent", "4", json!({})).await?;
    // Only "alive" renews its lease; neither confirms deletions, so evicted pods stay Terminating.
    let kubelet = FakeKubelet::start(client.clone(), &["alive"], true);
    kubelet.nodes.lock().unwrap().insert("alive".into());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stranded"},
        "spec": {"nodeName": "silent", "containers": [{"name": "c", "image": "busybox:latest"}]},
    }))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    until(30, "node silent is Unknown and tainted unreachable", || {
        let nodes = nodes.clone();
        async move {
            let n = nodes.get("silent").await.map_err(|e| e.to_string())?;
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .cloned();
            let taints: Vec<(String, String)> = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.effect))
                .collect();
            let ok = ready.as_ref().is_some_and(|r| {
                r.status == "Unknown" && r.reason.as_deref() == Some("NodeStatusUnknown")
            }) && taints
                .contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
                && taints.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()));
            if ok {
                Ok(Some(()))
            } else {
                Err(format!("ready {ready:?}, taints {taints:?}"))
            }
        }
    })
    .await?;
    until(30, "the pod on the silent node is evicted", || {
        let pods = pods.clone();
        async move {
            match pods.get_opt("stranded").await.map_err(|e| e.to_string())? {
                None => Ok(Some(())),
                Some(p) if p.metadata.deletion_timestamp.is_some() => Ok(Some(())),
                Some(p) => Err(format!("status {:?}", p.status.and_then(|s| s.conditions))),
            }
        }
    })
    .await?;
    let alive = nodes.get("alive").await?;
    let ready = alive
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.status, "True",
        "a node renewing its lease stays Ready"
    );
    assert!(
        alive
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .is_empty()
    );
    Ok(())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_runs_one_pod_per_eligible_node_and_rolls() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let names = ["ds-1", "ds-2", "ds-tainted"];
    for n in names {
        create_node(&client, n, "4", json!({})).await?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}});
    nodes
        .patch("ds-tainted", &PatchParams::default(), &Patch::Merge(taint))
        .await?;
    let kubelet = FakeKubelet::start(client.clone(), &names, true);
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "agent", "image": "busybox:latest"}]}},
        },
    }))?;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &ds).await?;
    let on_nodes = |want: &'static [&'static str], image_want: &'static str| {
        let (client, sets) = (client.clone(), sets.clone());
        async move {
            let pods = pods_of(&client, "default", "agent").await?;
            let live_pods: Vec<&Pod> = pods.iter().filter(|p| live(p)).collect();
            let nodes: BTreeSet<String> = live_pods.iter().filter_map(|p| node_of(p)).collect();
            let want_nodes: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            let ds = sets.get("agent").await.map_err(|e| e.to_string())?;
            let st = ds.status.clone().unwrap_or_default();
            let n = want.len() as i32;
            let done = live_pods.len() == want.len()
                && nodes == want_nodes
                && live_pods
                    .iter()
                    .all(|p| is_ready(p) && image(p) == image_want)
                && st.desired_number_scheduled == n
                && st.current_number_scheduled == n
                && st.number_ready == n
                && st.updated_number_scheduled == Some(n)
                && st.number_available == Some(n)
                && st.number_misscheduled == 0
                && st.observed_generation == ds.metadata.generation;
            if done {
                Ok(Some(pods))
            } else {
                Err(format!(
                    "pods on {nodes:?} ({} live), status {st:?}",
                    live_pods.len()
                ))
            }
        }
    };
    let pods = until(30, "one ready agent pod on each untainted node", || {
        on_nodes(&["ds-1", "ds-2"], "busybox:latest")
    })
    .await?;
    for p in &pods {
        let spec = p.spec.as_ref().unwrap();
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        let field = &terms[0].match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (
                field.key.as_str(),
                field.values.as_ref().unwrap()[0].clone()
            ),
            ("metadata.name", node_of(p).unwrap()),
            "pinned by node affinity"
        );
        assert!(p.labels().contains_key("controller-revision-hash"));
        let tolerations = spec.tolerations.as_ref().unwrap();
        assert!(tolerations.iter().any(|t| t.key.as_deref()
            == Some("node.kubernetes.io/unreachable")
            && t.effect.as_deref() == Some("NoExecute")));
        assert_eq!(p.owner_references()[0].kind, "DaemonSet");
    }
    // A node that joins later gets its pod too.
    kubelet.nodes.lock().unwrap().insert("ds-late".into());
    create_node(&client, "ds-late", "4", json!({})).await?;
    until(30, "the late node runs an agent pod", || {
        on_nodes(&["ds-1", "ds-2", "ds-late"], "busybox:latest")
    })
    .await?;
    ok(server.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=30s"]));
    // A rolling update through `ekube kubectl set image`, followed by the real kubectl.
    let out = ok(server.ekubectl(&["set", "image", "daemonset/agent", "agent=busybox:v2"]));
    assert_eq!(out, "daemonset.apps/agent image updated\n");
    let status = ok(server.kubectl(&["rollout", "status", "daemonset/agent", "--timeout=60s"]));
    assert!(
        status.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{status}"
    );
    until(30, "every agent pod runs busybox:v2", || {
        on_nodes(&["ds-1", "ds-2", "ds-late"], "busybox:v2")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_with_parallelism_runs_to_completion() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "job-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["job-node"], true);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_spec("batch", json!({"completions": 3, "parallelism": 2})),
    )
    .await?;
    let most_active = Arc::new(AtomicU32::new(0));
    let job = until(60, "job batch completes", || {
        let (client, jobs, most_active) = (client.clone(), jobs.clone(), most_active.clone());
        async move {
            let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=batch").await?;
            let active = pods
                .iter()
                .filter(|p| live(p) && !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
                .count() as u32;
            most_active.fetch_max(active, Ordering::SeqCst);
            // Play the workload: one running pod finishes per poll.
            if let Some(p) = pods.iter().find(|p| running(p)) {
                finish_pod(&client, p, "Succeeded")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let job = jobs.get("batch").await.map_err(|e| e.to_string())?;
            let st = job.status.clone().unwrap_or_default();
            if job_condition(&job, "Complete").is_some_and(|c| c.0 == "True") {
                Ok(Some(job))
            } else {
                Err(format!("{} pods, status {st:?}", pods.len()))
            }
        }
    })
    .await?;
    let st = job.status.clone().unwrap();
    assert_eq!(
        (st.succeeded, st.failed.unwrap_or(0), st.active.unwrap_or(0)),
        (Some(3), 0, 0)
    );
    assert!(st.start_time.is_some() && st.completion_time.is_some());
    assert!(
        most_active.load(Ordering::SeqCst) <= 2,
        "parallelism 2 exceeded: {} active",
        most_active.load(Ordering::SeqCst)
    );
    let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=batch")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(pods.len(), 3, "exactly completions pods ran");
    let uid = job.uid().unwrap();
    for p in &pods {
        assert_eq!(
            p.labels().get("batch.kubernetes.io/controller-uid"),
            Some(&uid)
        );
        assert_eq!(
            p.labels().get("job-name").map(String::as_str),
            Some("batch")
        );
        assert_eq!(p.owner_references()[0].kind, "Job");
    }
    let selector = job.spec.unwrap().selector.unwrap().match_labels.unwrap();
    assert_eq!(
        selector.get("batch.kubernetes.io/controller-uid"),
        Some(&uid),
        "the generated selector"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_fails_once_past_its_backoff_limit() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "fail-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["fail-node"], true);
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job_spec("flaky", json!({"backoffLimit": 1})),
    )
    .await?;
    // Every pod fails; the second failure (after the 10 s back-off) exceeds the limit.
    let job = until(60, "job flaky fails with BackoffLimitExceeded", || {
        let (client, jobs) = (client.clone(), jobs.clone());
        async move {
            let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=flaky").await?;
            for p in pods.iter().filter(|p| running(p)) {
                finish_pod(&client, p, "Failed")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let job = jobs.get("flaky").await.map_err(|e| e.to_string())?;
            match job_condition(&job, "Failed") {
                Some((s, reason)) if s == "True" => Ok(Some((job, reason))),
                _ => Err(format!("{} pods, status {:?}", pods.len(), job.status)),
            }
        }
    })
    .await?;
    assert_eq!(job.1.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(job.0.status.as_ref().unwrap().failed, Some(2));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods = pods_with(&client, "default", "batch.kubernetes.io/job-name=flaky")
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(pods.len(), 2, "no pod starts after the job failed");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: BTreeSet<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.contains("BackoffLimitExceeded"), "{reasons:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cronjob_every_minute_creates_jobs_and_keeps_its_history_limit() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "cron-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["cron-node"], true);
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "successfulJobsHistoryLimit": 0,
            "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox:latest"}]}}}},
        },
    }))?;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    cronjobs.create(&PostParams::default(), &cj).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // The first fire time is the next minute boundary.
    let job = until(75, "the cronjob creates its first job", || {
        let jobs = jobs.clone();
        async move {
            let list = jobs
                .list(&ListParams::default().labels("app=tick"))
                .await
                .map_err(|e| e.to_string())?;
            Ok(list.items.into_iter().next())
        }
    })
    .await?;
    let name = job.name_any();
    let scheduled: k8s_openapi::jiff::Timestamp =
        job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"].parse()?;
    assert_eq!(
        name,
        format!("tick-{}", scheduled.as_second() / 60),
        "job named by its fire time in minutes"
    );
    assert_eq!(scheduled.as_second() % 60, 0);
    assert_eq!(job.owner_references()[0].kind, "CronJob");
    until(10, "the cronjob lists its active job", || {
        let (cronjobs, name) = (cronjobs.clone(), name.clone());
        async move {
            let st = cronjobs
                .get("tick")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let active: Vec<String> = st
                .active
                .iter()
                .flatten()
                .filter_map(|r| r.name.clone())
                .collect();
            if active == [name] && st.last_schedule_time.is_some() {
                Ok(Some(()))
            } else {
                Err(format!("{st:?}"))
            }
        }
    })
    .await?;
    // The job's pod succeeds: the job completes and, with a history limit of 0, goes.
    until(
        30,
        "the finished job is removed by the history limit",
        || {
            let (client, jobs, cronjobs, name) =
                (client.clone(), jobs.clone(), cronjobs.clone(), name.clone());
            async move {
                let pods = pods_with(
                    &client,
                    "default",
                    &format!("batch.kubernetes.io/job-name={name}"),
                )
                .await?;
                for p in pods.iter().filter(|p| running(p)) {
                    finish_pod(&client, p, "Succeeded")
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let gone = jobs
                    .get_opt(&name)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none_or(|j| j.metadata.deletion_timestamp.is_some());
                let st = cronjobs
                    .get("tick")
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                if gone
                    && st.last_successful_time.is_some()
                    && st.active.as_ref().is_none_or(|a| a.is_empty())
                {
                    Ok(Some(()))
                } else {
                    Err(format!("job gone {gone}, status {st:?}"))
                }
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_creates_in_order_and_scales_down_from_the_top() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "sts-node", "16", json!({})).await?;
    // The test decides when pods become ready.
    let _kubelet = FakeKubelet::start(client.clone(), &["sts-node"], false);
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "busybox:latest"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }))?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &sts).await?;
    // Record the order pods appear and disappear in.
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let watch = {
        let (client, order) = (client.clone(), order.clone());
        tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            let mut seen = BTreeSet::new();
            let mut stream = watcher(api, watcher::Config::default().labels("app=db"))
                .default_backoff()
                .boxed();
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p)
                        if seen.insert(p.uid().unwrap_or_default()) =>
                    {
                        order.lock().unwrap().push(format!("+{}", p.name_any()));
                    }
                    watcher::Event::Delete(p) => {
                        order.lock().unwrap().push(format!("-{}", p.name_any()))
                    }
                    _ => {}
                }
            }
        })
    };
    for ord in 0..3 {
        let name = format!("db-{ord}");
        let pod = until(30, &format!("{name} runs"), || {
            let client = client.clone();
            let name = name.clone();
            async move {
                let pods = pods_of(&client, "default", "db").await?;
                let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
                if names.len() > ord + 1 {
                    return Err(format!(
                        "more pods than ready predecessors allow: {names:?}"
                    ));
                }
                Ok(pods
                    .into_iter()
                    .find(|p| p.name_any() == name && running(p)))
            }
        })
        .await?;
        // Nothing beyond it appears while it is not ready.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let names: Vec<String> = pods_of(&client, "default", "db")
            .await
            .map_err(anyhow::Error::msg)?
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(names.len(), ord + 1, "ordered creation: {names:?}");
        assert_eq!(
            pod.labels().get("statefulset.kubernetes.io/pod-name"),
            Some(&name)
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some(name.as_str()), Some("db"))
        );
        let claim = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .and_then(|v| v.persistent_volume_claim.clone())
            .unwrap();
        assert_eq!(claim.claim_name, format!("data-db-{ord}"));
        set_ready(&client, &pod, true).await?;
    }
    let status = ok(server.kubectl(&["rollout", "status", "statefulset/db", "--timeout=30s"]));
    assert!(status.contains("roll out complete"), "{status}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let names: BTreeSet<String> = claims
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(
        names,
        ["data-db-0", "data-db-1", "data-db-2"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    // Scale down with ekube kubectl: from the highest ordinal, one at a time.
    assert_eq!(
        ok(server.ekubectl(&["scale", "statefulset/db", "--replicas=1"])),
        "statefulset.apps/db scaled\n"
    );
    until(30, "db scales down to db-0", || {
        let (client, sets) = (client.clone(), sets.clone());
        async move {
            let names: Vec<String> = pods_of(&client, "default", "db")
                .await?
                .iter()
                .map(|p| p.name_any())
                .collect();
            let st = sets
                .get("db")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            if names == ["db-0"] && st.replicas == 1 && st.ready_replicas == Some(1) {
                Ok(Some(()))
            } else {
                Err(format!("{names:?}, {st:?}"))
            }
        }
    })
    .await?;
    watch.abort();
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        ["+db-0", "+db-1", "+db-2", "-db-2", "-db-1"],
        "creation and deletion order"
    );
    assert_eq!(
        claims.list(&ListParams::default()).await?.items.len(),
        3,
        "claims outlive their pods"
    );
    // A rolling update through the real kubectl replaces db-0 with the new template.
    let before = sets.get("db").await?.status.unwrap_or_default();
    assert_eq!(
        ok(server.kubectl(&["set", "image", "statefulset/db", "db=busybox:v2"])),
        "statefulset.apps/db image updated\n"
    );
    until(30, "db-0 runs busybox:v2 at the new revision", || {
        let (client, sets) = (client.clone(), sets.clone());
        let old_revision = before.update_revision.clone();
        async move {
            let pods = pods_of(&client, "default", "db").await?;
            for p in pods.iter().filter(|p| running(p) && !is_ready(p)) {
                set_ready(&client, p, true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let st = sets
                .get("db")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let done = pods.len() == 1
                && image(&pods[0]) == "busybox:v2"
                && is_ready(&pods[0])
                && st.update_revision != old_revision
                && st.current_revision == st.update_revision
                && st.updated_replicas == Some(1);
            if done {
                Ok(Some(()))
            } else {
                Err(format!(
                    "{:?}, {st:?}",
                    pods.iter()
                        .map(|p| (p.name_any(), image(p), is_ready(p)))
                        .collect::<Vec<_>>()
                ))
            }
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_scale_set_image_and_rollout_verbs() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let names = ["verbs-1", "verbs-2"];
    for n in names {
        create_node(&client, n, "16", json!({})).await?;
    }
    let _kubelet = FakeKubelet::start(client.clone(), &names, true);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(
            &PostParams::default(),
            &deployment("verbs", 2, "web:v1", json!({})),
        )
        .await?;
    let converged = |replicas: usize, image_want: &'static str, revision: &'static str| {
        let (client, deploys) = (client.clone(), deploys.clone());
        async move {
            let pods = pods_of(&client, "default", "verbs").await?;
            let d = deploys.get("verbs").await.map_err(|e| e.to_string())?;
            let rev = d
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .cloned()
                .unwrap_or_default();
            let done = pods.len() == replicas
                && pods
                    .iter()
                    .all(|p| live(p) && is_ready(p) && image(p) == image_want)
                && rev == revision;
            if done {
                Ok(Some(()))
            } else {
                Err(format!(
                    "revision {rev}, pods {:?}",
                    pods.iter()
                        .map(|p| (image(p), is_ready(p), live(p)))
                        .collect::<Vec<_>>()
                ))
            }
        }
    };
    until(30, "2 pods of web:v1", || converged(2, "web:v1", "1")).await?;

    // ekube kubectl.
    assert_eq!(
        ok(server.ekubectl(&["scale", "deployment/verbs", "--replicas=3"])),
        "deployment.apps/verbs scaled\n"
    );
    until(30, "3 pods of web:v1", || converged(3, "web:v1", "1")).await?;
    assert_eq!(
        ok(server.ekubectl(&["set", "image", "deployment/verbs", "web=web:v2"])),
        "deployment.apps/verbs image updated\n"
    );
    let status = ok(server.ekubectl(&["rollout", "status", "deployment/verbs", "--timeout=60s"]));
    assert!(
        status.ends_with("deployment \"verbs\" successfully rolled out\n"),
        "{status}"
    );
    until(30, "3 pods of web:v2", || converged(3, "web:v2", "2")).await?;
    let history = ok(server.ekubectl(&["rollout", "history", "deployment/verbs"]));
    assert!(
        history.contains("REVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"),
        "{history}"
    );
    assert_eq!(
        ok(server.ekubectl(&["rollout", "undo", "deployment/verbs"])),
        "deployment.apps/verbs rolled back\n"
    );
    until(60, "rolled back to web:v1 as revision 3", || {
        converged(3, "web:v1", "3")
    })
    .await?;
    assert_eq!(
        ok(server.ekubectl(&["rollout", "restart", "deployment/verbs"])),
        "deployment.apps/verbs restarted\n"
    );
    let d = deploys.get("verbs").await?;
    let template_annotations = d
        .spec
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert!(template_annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    until(60, "the restart rolls out as revision 4", || {
        converged(3, "web:v1", "4")
    })
    .await?;

    // The real kubectl: these verbs run client-side on top of patches and ReplicaSet lists.
    assert_eq!(
        ok(server.kubectl(&["scale", "deployment", "verbs", "--replicas=2"])),
        "deployment.apps/verbs scaled\n"
    );
    until(30, "2 pods after kubectl scale", || {
        converged(2, "web:v1", "4")
    })
    .await?;
    assert_eq!(
        ok(server.kubectl(&["set", "image", "deployment/verbs", "web=web:v2"])),
        "deployment.apps/verbs image updated\n"
    );
    let status = ok(server.kubectl(&["rollout", "status", "deployment/verbs", "--timeout=60s"]));
    assert!(
        status.ends_with("deployment \"verbs\" successfully rolled out\n"),
        "{status}"
    );
    until(30, "web:v2 after kubectl set image", || {
        converged(2, "web:v2", "5")
    })
    .await?;
    let history = ok(server.kubectl(&["rollout", "history", "deployment/verbs"]));
    assert!(
        history.contains("REVISION") && history.contains("\n5 "),
        "{history}"
    );
    assert_eq!(
        ok(server.kubectl(&["rollout", "undo", "deployment/verbs"])),
        "deployment.apps/verbs rolled back\n"
    );
    let status = ok(server.kubectl(&["rollout", "status", "deployment/verbs", "--timeout=60s"]));
    assert!(
        status.ends_with("deployment \"verbs\" successfully rolled out\n"),
        "{status}"
    );
    until(30, "web:v1 after kubectl rollout undo", || {
        converged(2, "web:v1", "6")
    })
    .await?;
    Ok(())
}

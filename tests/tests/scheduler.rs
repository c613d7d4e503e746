//! The scheduler against a real `ekube server` with Node objects the test creates: placement
//! by nodeSelector, resources and taints, and the FailedScheduling wording of Kubernetes.

use anyhow::Result;
use ekube_tests::{ServerProcess, until};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn create_node(
    client: &Client,
    name: &str,
    cpu: &str,
    labels: Value,
    spec: Value,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "spec": spec}),
    )?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = k8s_openapi::jiff::Timestamp::now();
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    // A controller (node IPAM) may write the node at the same moment: retry conflicts.
    let mut attempts = 0;
    loop {
        match nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status.clone()))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempts < 10 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

fn pod(name: &str, spec_extra: Value, cpu: Option<&str>) -> Pod {
    let mut container = json!({"name": "c", "image": "busybox:latest"});
    if let Some(cpu) = cpu {
        container["resources"] = json!({"requests": {"cpu": cpu}});
    }
    let mut spec = json!({"containers": [container]});
    if let Value::Object(extra) = spec_extra {
        spec.as_object_mut().unwrap().extend(extra);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Waits until the pod is bound and returns the node.
async fn bound_node(pods: &Api<Pod>, name: &str, secs: u64) -> Result<String> {
    until(secs, &format!("pod {name} is scheduled"), || {
        let pods = pods.clone();
        async move {
            let p = pods.get(name).await.map_err(|e| e.to_string())?;
            match p.spec.and_then(|s| s.node_name) {
                Some(n) => Ok(Some(n)),
                None => Err(format!(
                    "conditions {:?}",
                    p.status.and_then(|s| s.conditions)
                )),
            }
        }
    })
    .await
}

/// Waits until the pod carries PodScheduled=False with `message` and the matching Event exists.
async fn unschedulable(client: &Client, pods: &Api<Pod>, name: &str, message: &str) -> Result<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    until(20, &format!("pod {name} is reported unschedulable"), || {
        let (pods, events) = (pods.clone(), events.clone());
        async move {
            let p = pods.get(name).await.map_err(|e| e.to_string())?;
            let cond = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
                .cloned();
            let cond_ok = cond.as_ref().is_some_and(|c| {
                c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref().is_some_and(|m| m.starts_with(message))
            });
            let evs = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let event_ok = evs.items.iter().any(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some("FailedScheduling")
                    && e.type_.as_deref() == Some("Warning")
                    && e.message.as_deref().is_some_and(|m| m.starts_with(message))
            });
            if cond_ok && event_ok {
                Ok(Some(()))
            } else {
                Err(format!("condition {cond:?}, event found {event_ok}"))
            }
        }
    })
    .await?;
    let p = pods.get(name).await?;
    assert!(p.spec.unwrap().node_name.is_none(), "{name} stays Pending");
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_selector_nobody_matches_until_a_node_is_labelled() -> Result<()> {
    // The apiserver traces each connection's certificate user: the scheduler's must be its own.
    let server =
        ServerProcess::start_with_env(&[], &[("RUST_LOG", "info,ekube_apiserver::server=trace")])?;
    let client = server.client().await?;
    for n in ["sel-1", "sel-2", "sel-3"] {
        create_node(
            &client,
            n,
            "4",
            json!({"kubernetes.io/hostname": n}),
            json!({}),
        )
        .await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("picky", json!({"nodeSelector": {"disk": "ssd"}}), None),
    )
    .await?;
    unschedulable(
        &client,
        &pods,
        "picky",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
    )
    .await?;
    // kubectl describe shows the event as Kubernetes does.
    let describe = ekube_tests::ok(server.kubectl(&["describe", "pod", "picky"]));
    assert!(describe.contains("FailedScheduling"), "{describe}");
    // Labelling a node is a cluster change that retries the pod at once.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "sel-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await?;
    assert_eq!(bound_node(&pods, "picky", 10).await?, "sel-2");
    let p = pods.get("picky").await?;
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(cond.status, "True");
    scheduler_ran_as_itself(&server)?;
    Ok(())
}

/// `ekube server` runs the scheduler with kubeadm's `scheduler.conf`: a certificate for
/// `system:kube-scheduler` (not `system:masters`), which RBAC lets bind pods and nothing more.
fn scheduler_ran_as_itself(server: &ServerProcess) -> Result<()> {
    let log = server.log();
    assert!(
        log.contains(r#"name: "system:kube-scheduler""#),
        "no apiserver connection as system:kube-scheduler in the log:\n{log}"
    );
    let as_scheduler = |args: &[&str]| {
        let conf = server.dir.join("scheduler.conf");
        let out = std::process::Command::new(ekube_tests::kubectl_bin())
            .arg("--kubeconfig")
            .arg(&conf)
            .args(["auth", "can-i"])
            .args(args)
            .output()
            .expect("running kubectl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        as_scheduler(&["create", "pods", "--subresource=binding"]),
        "yes"
    );
    assert_eq!(as_scheduler(&["create", "pods"]), "no");
    assert_eq!(as_scheduler(&["get", "secrets"]), "no");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resources_taints_and_unschedulable_nodes_are_respected() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "small-1", "1", json!({}), json!({})).await?;
    create_node(&client, "small-2", "1", json!({}), json!({})).await?;
    create_node(
        &client,
        "tainted",
        "64",
        json!({}),
        json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}),
    )
    .await?;
    create_node(
        &client,
        "cordoned",
        "64",
        json!({}),
        json!({"unschedulable": true}),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("huge", json!({}), Some("8")))
        .await?;
    unschedulable(
        &client,
        &pods,
        "huge",
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable, 2 Insufficient cpu.",
    )
    .await?;
    // A pod tolerating the taint fits there.
    let tolerant = json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]});
    pods.create(
        &PostParams::default(),
        &pod("tolerant", tolerant, Some("8")),
    )
    .await?;
    assert_eq!(bound_node(&pods, "tolerant", 10).await?, "tainted");
    // Requests add up: two 600m pods do not both fit on a 1-cpu node.
    pods.create(
        &PostParams::default(),
        &pod("half-a", json!({"nodeSelector": {}}), Some("600m")),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod("half-b", json!({}), Some("600m")),
    )
    .await?;
    let a = bound_node(&pods, "half-a", 10).await?;
    let b = bound_node(&pods, "half-b", 10).await?;
    assert!(
        a.starts_with("small-") && b.starts_with("small-") && a != b,
        "half-a on {a}, half-b on {b}"
    );
    pods.create(
        &PostParams::default(),
        &pod("half-c", json!({}), Some("600m")),
    )
    .await?;
    unschedulable(&client, &pods, "half-c", "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable, 2 Insufficient cpu.").await?;
    // Deleting a bound pod frees its share, and the waiting pod gets it.
    pods.delete(
        "half-a",
        &kube::api::DeleteParams::default().grace_period(0),
    )
    .await?;
    let _ = pods
        .delete(
            "half-a",
            &kube::api::DeleteParams::default().grace_period(0),
        )
        .await;
    assert_eq!(bound_node(&pods, "half-c", 15).await?, a);
    Ok(())
}

//! Node lifecycle: a node whose Lease stops being renewed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_node_becomes_not_ready_tainted_and_evicted() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    // A second controller-manager running only node lifecycle, with short timeouts (beside the
    // server's, so it does not wait for the Lease).
    let log = std::fs::File::create(server.dir.join("lifecycle.log"))?;
    let mut lifecycle = std::process::Command::new(ekube_tests::ekube_bin())
        .args(["controller-manager", "--kubeconfig"])
        .arg(server.kubeconfig())
        .args([
            "--controllers",
            "nodelifecycle",
            "--node-monitor-period",
            "300ms",
            "--leader-elect=false",
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

//! DaemonSets: one pod per eligible node, rolling updates.

use super::*;

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

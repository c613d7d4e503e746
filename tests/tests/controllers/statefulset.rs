//! StatefulSets: ordered creation and scale-down.

use super::*;

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

/// `persistentVolumeClaimRetentionPolicy: Delete`: a scaled-down pod's claims go with it, and
/// the rest with the set; `Retain` (the default, above) keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_claims_follow_the_retention_policy() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "ret-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["ret-node"], true);
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "kv"},
        "spec": {
            "replicas": 3,
            "serviceName": "kv",
            "podManagementPolicy": "Parallel",
            "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Delete"},
            "selector": {"matchLabels": {"app": "kv"}},
            "template": {"metadata": {"labels": {"app": "kv"}}, "spec": {"containers": [{"name": "kv", "image": "busybox:latest"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }))?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let set = sets.create(&PostParams::default(), &sts).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim_names = || {
        let claims = claims.clone();
        async move {
            let list = claims
                .list(&ListParams::default().labels("app=kv"))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(
                list.items
                    .iter()
                    .filter(|c| c.metadata.deletion_timestamp.is_none())
                    .map(|c| c.name_any())
                    .collect::<BTreeSet<String>>(),
            )
        }
    };
    until(30, "3 running pods, each claim owned by the set", || {
        let (client, claims) = (client.clone(), claims.clone());
        let uid = set.uid();
        async move {
            let pods = pods_of(&client, "default", "kv").await?;
            let list = claims
                .list(&ListParams::default().labels("app=kv"))
                .await
                .map_err(|e| e.to_string())?;
            let owned = list.items.iter().all(|c| {
                c.owner_references()
                    .iter()
                    .any(|r| Some(&r.uid) == uid.as_ref() && r.kind == "StatefulSet")
            });
            if pods.iter().filter(|p| running(p)).count() == 3 && list.items.len() == 3 && owned {
                Ok(Some(()))
            } else {
                Err(format!(
                    "{} pods, {} claims, owned: {owned}",
                    pods.len(),
                    list.items.len()
                ))
            }
        }
    })
    .await?;
    // Scaled down: the claims of kv-1 and kv-2 go with their pods.
    ok(server.kubectl(&["scale", "statefulset/kv", "--replicas=1"]));
    until(60, "only kv-0's claim left", || async move {
        let names = claim_names().await?;
        if names == BTreeSet::from(["data-kv-0".to_owned()]) {
            Ok(Some(()))
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await?;
    // Deleted: the last claim goes with the set (after its pod, which used it).
    ok(server.kubectl(&["delete", "statefulset", "kv"]));
    until(60, "no claim left", || async move {
        let names = claim_names().await?;
        if names.is_empty() {
            Ok(Some(()))
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await?;
    Ok(())
}

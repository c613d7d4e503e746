//! Deployments and ReplicaSets: spreading, scaling, rolling updates, and the kubectl verbs that drive them.

use super::*;

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
    // Taken from the slice just checked: the ReplicaSet may have replaced one of `pods`.
    let listed: BTreeSet<String> = slice
        .endpoints
        .iter()
        .flatten()
        .flat_map(|e| e.addresses.clone())
        .collect();
    let unready = pods_of(&client, ns, "web")
        .await
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_ref())
                .is_some_and(|ip| listed.contains(ip))
        })
        .ok_or_else(|| anyhow::anyhow!("no pod of the slice is left"))?;
    set_ready(&client, &unready, false).await?;
    let gone = unready.status.as_ref().unwrap().pod_ip.clone().unwrap();
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

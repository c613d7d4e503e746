//! PodDisruptionBudgets: the disruption controller's status (a `maxUnavailable` budget takes
//! its expected count from the Deployment's scale) and the eviction subresource spending it,
//! refusing with 429 when it is spent, letting an unready pod go for free, and answering 500
//! for a pod two budgets guard.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{EvictParams, WatchEvent, WatchParams};

use super::*;

/// `(currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed)` once the status has
/// observed the budget's generation.
async fn budget_counts(api: &Api<PodDisruptionBudget>) -> Result<(i32, i32, i32, i32), String> {
    let pdb = api.get("web").await.map_err(|e| e.to_string())?;
    let s = pdb.status.clone().unwrap_or_default();
    if s.observed_generation != pdb.metadata.generation {
        return Err(format!("status not observed yet: {s:?}"));
    }
    let n = |v: Option<i32>| v.unwrap_or(0);
    Ok((
        n(s.current_healthy),
        n(s.desired_healthy),
        n(s.expected_pods),
        n(s.disruptions_allowed),
    ))
}

async fn wait_counts(api: &Api<PodDisruptionBudget>, want: (i32, i32, i32, i32)) -> Result<()> {
    until(30, &format!("pdb web counts {want:?}"), || async move {
        let got = budget_counts(api).await?;
        if got == want {
            Ok(Some(()))
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

fn budget(name: &str, spec: Value) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evictions_spend_the_disruption_budget() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    for n in ["pdb-1", "pdb-2"] {
        create_node(&client, n, "4", json!({})).await?;
    }
    let kubelet = FakeKubelet::start(client.clone(), &["pdb-1", "pdb-2"], true);
    let ns = "default";
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &deployment("web", 3, "web:v1", json!({})),
        )
        .await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    pdbs.create(
        &PostParams::default(),
        &budget(
            "web",
            json!({"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
        ),
    )
    .await?;
    // 3 expected from the Deployment's scale, 2 must stay, 1 may go.
    wait_counts(&pdbs, (3, 2, 3, 1)).await?;

    // New pods stay unready from here on, so the budget stays spent after one eviction.
    kubelet.auto_ready.store(false, Ordering::SeqCst);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ready: Vec<Pod> = pods_of(&client, ns, "web")
        .await
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|p| live(p) && is_ready(p))
        .collect();
    assert_eq!(ready.len(), 3);
    // The eviction's write to the budget, seen on a watch: one disruption taken, the pod
    // recorded (the controller drops the entry once it sees the pod gone).
    let evicted = ready[0].name_any();
    let rv = pdbs
        .get("web")
        .await?
        .resource_version()
        .unwrap_or_default();
    // Watch and evict together: the watch starts at `rv`, so it sees the eviction's write
    // whichever request lands first.
    let (only_web, evict) = (
        WatchParams::default().fields("metadata.name=web"),
        EvictParams::default(),
    );
    let (changes, eviction) =
        tokio::join!(pdbs.watch(&only_web, &rv), pods.evict(&evicted, &evict));
    let mut changes = changes?.boxed();
    eviction?;
    let recorded = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(WatchEvent::Modified(pdb))) = changes.next().await {
            let status = pdb.status.unwrap_or_default();
            if status
                .disrupted_pods
                .unwrap_or_default()
                .contains_key(&evicted)
            {
                return status.disruptions_allowed;
            }
        }
        None
    })
    .await;
    assert_eq!(
        recorded,
        Ok(Some(0)),
        "the eviction of {evicted} recorded in the budget with no disruption left"
    );
    let refused = pods
        .evict(&ready[1].name_any(), &EvictParams::default())
        .await
        .expect_err("a second eviction while the budget is spent");
    let kube::Error::Api(status) = refused else {
        panic!("not an API error: {refused}");
    };
    assert_eq!(
        (status.code, status.reason.as_str(), status.message.as_str()),
        (
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget."
        )
    );
    let cause = &status.details.as_ref().unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert!(
        cause
            .message
            .starts_with("The disruption budget web needs 2 healthy pods"),
        "{}",
        cause.message
    );
    assert!(live(&pods.get(&ready[1].name_any()).await?));

    // The replacement is Running but not Ready: with 2 healthy of 2 desired, it goes without
    // spending anything.
    let replacement = until(30, "an unready replacement pod", || {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, ns, "web").await?;
            Ok(pods
                .into_iter()
                .find(|p| live(p) && running(p) && !is_ready(p)))
        }
    })
    .await?;
    wait_counts(&pdbs, (2, 2, 3, 0)).await?;
    pods.evict(&replacement.name_any(), &EvictParams::default())
        .await?;
    assert_eq!(budget_counts(&pdbs).await.map_err(anyhow::Error::msg)?.3, 0);

    // Two budgets over one pod: upstream's 500.
    pdbs.create(
        &PostParams::default(),
        &budget(
            "web-too",
            json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}),
        ),
    )
    .await?;
    let err = pods
        .evict(&ready[1].name_any(), &EvictParams::default())
        .await
        .expect_err("eviction of a pod two budgets guard");
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(
        (status.code, status.message.as_str()),
        (
            500,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        )
    );
    pdbs.delete("web-too", &DeleteParams::default()).await?;

    // Once the new pods are Ready the budget has room again.
    kubelet.auto_ready.store(true, Ordering::SeqCst);
    for p in pods_of(&client, ns, "web")
        .await
        .map_err(anyhow::Error::msg)?
        .iter()
        .filter(|p| live(p) && !is_ready(p))
    {
        set_ready(&client, p, true).await?;
    }
    wait_counts(&pdbs, (3, 2, 3, 1)).await?;
    Ok(())
}

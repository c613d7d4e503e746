//! Deletion: owner references and propagation policies, and namespace termination.

use super::*;

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

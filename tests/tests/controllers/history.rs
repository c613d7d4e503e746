//! Revision history of DaemonSets and StatefulSets: the ControllerRevisions their controllers
//! keep, listed by the real kubectl's `rollout history` and put back by its `rollout undo`.

use super::*;
use k8s_openapi::api::apps::v1::ControllerRevision;

/// The revision numbers `kubectl rollout history <what>` lists.
fn history(server: &ServerProcess, what: &str) -> Vec<i64> {
    let out = ok(server.kubectl(&["rollout", "history", what]));
    out.lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// `(name, revision, image the revision restores)` of the revisions in the namespace, by
/// revision.
async fn revisions(client: &Client) -> Result<Vec<(String, i64, String)>, String> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let mut out: Vec<(String, i64, String)> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .iter()
        .map(|r| {
            let image = r
                .data
                .0
                .pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (r.name_any(), r.revision.unwrap_or(0), image)
        })
        .collect();
    out.sort_by_key(|r| r.1);
    Ok(out)
}

/// Waits until the owner's template and every live pod run `image`, the pods' revision label is
/// the newest revision's, and the revisions are `want` (`(revision, image)` by revision).
async fn settled(
    client: &Client,
    app: &str,
    template_image: impl Fn() -> futures::future::BoxFuture<'static, Result<String, String>>,
    image_want: &str,
    label_of: impl Fn(&str) -> String,
    want: &[(i64, &str)],
) -> Result<Vec<(String, i64, String)>> {
    until(60, &format!("{app} settles on {image_want}"), || {
        let client = client.clone();
        let template = template_image();
        let label_want = &label_of;
        async move {
            let template = template.await?;
            let revs: Vec<(String, i64, String)> = revisions(&client)
                .await?
                .into_iter()
                .filter(|r| r.0.starts_with(&format!("{app}-")))
                .collect();
            let pods = pods_of(&client, "default", app).await?;
            let pods: Vec<&Pod> = pods.iter().filter(|p| live(p)).collect();
            let newest = revs.last().map(|r| r.0.clone()).unwrap_or_default();
            let labels: BTreeSet<String> = pods
                .iter()
                .map(|p| {
                    p.labels()
                        .get("controller-revision-hash")
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            let got: Vec<(i64, &str)> = revs.iter().map(|r| (r.1, r.2.as_str())).collect();
            let done = template == image_want
                && !pods.is_empty()
                && pods.iter().all(|p| image(p) == image_want && is_ready(p))
                && labels == BTreeSet::from([label_want(&newest)])
                && got == want;
            if done {
                Ok(Some(revs.clone()))
            } else {
                Err(format!(
                    "template {template}, pods {:?} labelled {labels:?}, revisions {revs:?}",
                    pods.iter().map(|p| image(p)).collect::<Vec<_>>()
                ))
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_history_and_undo_with_kubectl() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "hist-node", "4", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["hist-node"], true);
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "logger"},
        "spec": {
            "selector": {"matchLabels": {"app": "logger"}},
            "template": {"metadata": {"labels": {"app": "logger"}}, "spec": {"containers": [{"name": "logger", "image": "busybox:1"}]}},
        },
    }))?;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &ds).await?;
    let template_image = || {
        let sets = sets.clone();
        let fut: futures::future::BoxFuture<'static, Result<String, String>> =
            Box::pin(async move {
                let ds = sets.get("logger").await.map_err(|e| e.to_string())?;
                Ok(ds.spec.template.spec.unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap_or_default())
            });
        fut
    };
    // A DaemonSet's pods carry the hash alone; its revision is `<set>-<hash>`.
    let label_of = |rev: &str| rev.trim_start_matches("logger-").to_string();
    let first = settled(
        &client,
        "logger",
        template_image,
        "busybox:1",
        label_of,
        &[(1, "busybox:1")],
    )
    .await?;
    ok(server.kubectl(&["set", "image", "daemonset/logger", "logger=busybox:2"]));
    let second = settled(
        &client,
        "logger",
        template_image,
        "busybox:2",
        label_of,
        &[(1, "busybox:1"), (2, "busybox:2")],
    )
    .await?;
    assert_eq!(history(&server, "daemonset/logger"), [1, 2]);
    // `kubectl get` prints upstream's columns.
    let table = ok(server.kubectl(&["get", "controllerrevisions"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CONTROLLER", "REVISION", "AGE"], "{table}");
    let row = [second[1].0.as_str(), "daemonset.apps/logger", "2"];
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(row.iter().copied())),
        "{table}"
    );

    let out = ok(server.kubectl(&["rollout", "undo", "daemonset/logger"]));
    assert_eq!(out, "daemonset.apps/logger rolled back\n");
    // The first template is back, as revision 3 under its old name (no copy is written).
    let third = settled(
        &client,
        "logger",
        template_image,
        "busybox:1",
        label_of,
        &[(2, "busybox:2"), (3, "busybox:1")],
    )
    .await?;
    assert_eq!(third[1].0, first[0].0);
    assert_eq!(history(&server, "daemonset/logger"), [2, 3]);

    ok(server.kubectl(&["rollout", "undo", "daemonset/logger", "--to-revision=2"]));
    settled(
        &client,
        "logger",
        template_image,
        "busybox:2",
        label_of,
        &[(3, "busybox:1"), (4, "busybox:2")],
    )
    .await?;
    let missing = server.kubectl(&["rollout", "undo", "daemonset/logger", "--to-revision=9"]);
    assert!(
        !missing.status.success(),
        "undo to a revision that is not there"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_history_undo_and_limit_with_kubectl() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "hist-sts-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["hist-sts-node"], true);
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "store"},
        "spec": {
            "replicas": 2,
            "serviceName": "store",
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": {"app": "store"}},
            "template": {"metadata": {"labels": {"app": "store"}}, "spec": {"containers": [{"name": "store", "image": "busybox:1"}]}},
        },
    }))?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &sts).await?;
    let template_image = || {
        let sets = sets.clone();
        let fut: futures::future::BoxFuture<'static, Result<String, String>> =
            Box::pin(async move {
                let sts = sets.get("store").await.map_err(|e| e.to_string())?;
                let status = sts.status.clone().unwrap_or_default();
                // Settled also means the status names the revision the pods run.
                if status.current_revision != status.update_revision {
                    return Err(format!("status {status:?}"));
                }
                Ok(sts.spec.template.spec.unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap_or_default())
            });
        fut
    };
    // A StatefulSet's pods carry the revision's name.
    let label_of = |rev: &str| rev.to_string();
    let first = settled(
        &client,
        "store",
        template_image,
        "busybox:1",
        label_of,
        &[(1, "busybox:1")],
    )
    .await?;
    ok(server.kubectl(&["set", "image", "statefulset/store", "store=busybox:2"]));
    settled(
        &client,
        "store",
        template_image,
        "busybox:2",
        label_of,
        &[(1, "busybox:1"), (2, "busybox:2")],
    )
    .await?;
    assert_eq!(history(&server, "statefulset/store"), [1, 2]);
    let sts = sets.get("store").await?;
    let status = sts.status.unwrap();
    assert_eq!(
        status.update_revision.as_deref(),
        history_name(&client, 2).await?.as_deref()
    );

    let out = ok(server.kubectl(&["rollout", "undo", "statefulset/store"]));
    assert_eq!(out, "statefulset.apps/store rolled back\n");
    let third = settled(
        &client,
        "store",
        template_image,
        "busybox:1",
        label_of,
        &[(2, "busybox:2"), (3, "busybox:1")],
    )
    .await?;
    assert_eq!(third[1].0, first[0].0, "the first revision, renumbered");

    // A third template: the limit of one old revision drops the oldest once no pod runs it.
    ok(server.kubectl(&["set", "image", "statefulset/store", "store=busybox:3"]));
    settled(
        &client,
        "store",
        template_image,
        "busybox:3",
        label_of,
        &[(3, "busybox:1"), (4, "busybox:3")],
    )
    .await?;
    assert_eq!(history(&server, "statefulset/store"), [3, 4]);

    // Below the partition a recreated pod gets the current revision's template back.
    let partition = json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}});
    sets.patch("store", &PatchParams::default(), &Patch::Merge(partition))
        .await?;
    ok(server.kubectl(&["set", "image", "statefulset/store", "store=busybox:4"]));
    let by_name = |want: &'static [(&'static str, &'static str)]| {
        let client = client.clone();
        async move {
            let pods = pods_of(&client, "default", "store").await?;
            let got: Vec<(String, String)> = pods
                .iter()
                .filter(|p| live(p) && is_ready(p))
                .map(|p| (p.name_any(), image(p)))
                .collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, i)| (n.to_string(), i.to_string()))
                .collect();
            if got == want {
                Ok(Some(pods))
            } else {
                Err(format!("{got:?}"))
            }
        }
    };
    until(60, "store-1 updated, store-0 kept", || {
        by_name(&[("store-0", "busybox:3"), ("store-1", "busybox:4")])
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let old_uid = pods.get("store-0").await?.uid();
    pods.delete("store-0", &DeleteParams::default()).await?;
    let pods_now = until(60, "store-0 recreated from the current revision", || {
        let pods = pods.clone();
        let old_uid = old_uid.clone();
        async move {
            let p = pods.get("store-0").await.map_err(|e| e.to_string())?;
            Ok((p.uid() != old_uid && running(&p)).then_some(p))
        }
    })
    .await?;
    assert_eq!(image(&pods_now), "busybox:3");
    let status = sets.get("store").await?.status.unwrap();
    assert_ne!(status.current_revision, status.update_revision);
    assert_eq!(
        pods_now.labels().get("controller-revision-hash"),
        status.current_revision.as_ref()
    );
    Ok(())
}

/// The name of revision number `n`.
async fn history_name(client: &Client, n: i64) -> Result<Option<String>> {
    Ok(revisions(client)
        .await
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .find(|r| r.1 == n)
        .map(|r| r.0))
}

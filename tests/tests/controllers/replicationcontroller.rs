//! ReplicationControllers: served in core/v1 with `scale` and `status`, kept at their replica
//! count by the controller-manager (as the ServiceAccount `replication-controller`), printed,
//! described and explained by the real kubectl, and their pods collected when they go.

use super::*;
use k8s_openapi::api::core::v1::ReplicationController;

const MANIFEST: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 3
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:latest
"#;

/// The live pods labelled `app=web`, with the uid of their controller.
async fn web_pods(client: &Client) -> Result<Vec<(Pod, Option<String>)>, String> {
    Ok(pods_of(client, "default", "web")
        .await?
        .into_iter()
        .filter(live)
        .map(|p| {
            let owner = p
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
                .map(|r| format!("{}/{}/{}", r.api_version, r.kind, r.uid));
            (p, owner)
        })
        .collect())
}

/// Waits until exactly `n` running pods are labelled `app=web`, all controlled by `rc_uid`, and
/// the RC's status counts them; returns the pods.
async fn wait_replicas(
    client: &Client,
    rcs: &Api<ReplicationController>,
    rc_uid: &str,
    n: usize,
) -> Result<Vec<Pod>> {
    let owner = format!("v1/ReplicationController/{rc_uid}");
    until(30, &format!("web runs {n} pods"), || {
        let (client, rcs, owner) = (client.clone(), rcs.clone(), owner.clone());
        async move {
            let pods = web_pods(&client).await?;
            let st = rcs
                .get("web")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            let settled = pods.len() == n
                && pods
                    .iter()
                    .all(|(p, o)| running(p) && o.as_deref() == Some(owner.as_str()))
                && st.replicas == n as i32
                && st.ready_replicas.unwrap_or(0) == n as i32
                && st.available_replicas.unwrap_or(0) == n as i32
                && st.fully_labeled_replicas.unwrap_or(0) == n as i32;
            if settled {
                Ok(Some(pods.into_iter().map(|(p, _)| p).collect()))
            } else {
                let seen: Vec<_> = pods
                    .iter()
                    .map(|(p, o)| (p.name_any(), phase(p), o.clone()))
                    .collect();
                Err(format!("pods {seen:?}, status {st:?}"))
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_controller_keeps_its_replicas_and_its_pods_go_with_it() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    create_node(&client, "rc-node", "16", json!({})).await?;
    let _kubelet = FakeKubelet::start(client.clone(), &["rc-node"], true);
    assert_eq!(
        ok(server.kubectl_stdin(&["apply", "-f", "-"], Some(MANIFEST))),
        "replicationcontroller/web created\n"
    );
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let rc = rcs.get("web").await?;
    let uid = rc.uid().unwrap();
    let spec = rc.spec.clone().unwrap();
    let app_web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    assert_eq!(
        spec.selector.as_ref(),
        Some(&app_web),
        "selector from template labels"
    );
    assert_eq!(rc.labels(), &app_web, "labels from template labels");
    let pods = wait_replicas(&client, &rcs, &uid, 3).await?;
    for p in &pods {
        assert!(p.name_any().starts_with("web-"), "{}", p.name_any());
    }
    let st = rcs.get("web").await?.status.unwrap_or_default();
    assert_eq!(st.observed_generation, Some(1));

    // kubectl get prints upstream's columns; -o wide adds containers, images and selector.
    let table = ok(server.kubectl(&["get", "rc", "web"]));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "{table}"
    );
    assert_eq!(rows[1][..4], ["web", "3", "3", "3"], "{table}");
    let wide = ok(server.kubectl(&["get", "replicationcontrollers", "-o", "wide"]));
    let rows: Vec<Vec<&str>> = wide
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{wide}"
    );
    assert_eq!(rows[1][5..], ["web", "busybox:latest", "app=web"], "{wide}");

    // The scale subresource, through the real kubectl.
    assert_eq!(
        ok(server.kubectl(&["scale", "rc/web", "--replicas=1"])),
        "replicationcontroller/web scaled\n"
    );
    let pods = wait_replicas(&client, &rcs, &uid, 1).await?;
    let scale = ok(server.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/web/scale",
    ]));
    let scale: Value = serde_json::from_str(&scale)?;
    assert_eq!(
        (&scale["spec"]["replicas"], &scale["status"]["selector"]),
        (&json!(1), &json!("app=web")),
        "{scale}"
    );

    // A deleted pod is replaced.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let gone = pods[0].name_any();
    pod_api.delete(&gone, &DeleteParams::default()).await?;
    let pods = until(30, "the deleted pod is replaced", || {
        let client = client.clone();
        let gone = gone.clone();
        async move {
            let pods = web_pods(&client).await?;
            let names: Vec<String> = pods.iter().map(|(p, _)| p.name_any()).collect();
            match pods.as_slice() {
                [(p, Some(_))] if p.name_any() != gone && running(p) => Ok(Some(p.clone())),
                _ => Err(format!("{names:?}")),
            }
        }
    })
    .await?;
    wait_replicas(&client, &rcs, &uid, 1).await?;

    // A pod relabelled out of the selector is released and replaced; relabelled back, it is
    // adopted again and the surplus removed.
    let released = pods.name_any();
    let relabel = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    pod_api
        .patch(&released, &PatchParams::default(), &relabel("loose"))
        .await?;
    until(30, "the relabelled pod is released", || {
        let pod_api = pod_api.clone();
        let released = released.clone();
        async move {
            let p = pod_api.get(&released).await.map_err(|e| e.to_string())?;
            let refs = p.owner_references();
            if refs.is_empty() {
                Ok(Some(()))
            } else {
                Err(format!("ownerReferences {refs:?}"))
            }
        }
    })
    .await?;
    wait_replicas(&client, &rcs, &uid, 1).await?;
    pod_api
        .patch(&released, &PatchParams::default(), &relabel("web"))
        .await?;
    wait_replicas(&client, &rcs, &uid, 1).await?;

    // kubectl describe reads the RC, its pods and its events.
    let described = ok(server.kubectl(&["describe", "rc", "web"]));
    let words = described.split_whitespace().collect::<Vec<_>>().join(" ");
    for expected in [
        "Name: web",
        "Selector: app=web",
        "Replicas: 1 current / 1 desired",
        "Pods Status: 1 Running / 0 Waiting / 0 Succeeded / 0 Failed",
        "SuccessfulCreate",
        "SuccessfulDelete",
    ] {
        assert!(words.contains(expected), "{expected:?} in:\n{described}");
    }
    // kubectl explain finds the schema.
    let explained = ok(server.kubectl(&["explain", "rc.spec.selector"]));
    assert!(
        explained.contains("ReplicationController") && explained.contains("map[string]string"),
        "{explained}"
    );

    // Deleting the RC takes its pods with it (the garbage collector, in the background).
    ok(server.kubectl(&["delete", "rc", "web"]));
    wait_gone(&rcs, "web", 30).await?;
    until(30, "web's pods are collected", || {
        let client = client.clone();
        async move {
            let pods = web_pods(&client).await?;
            if pods.is_empty() {
                Ok(Some(()))
            } else {
                Err(format!(
                    "{:?}",
                    pods.iter().map(|(p, _)| p.name_any()).collect::<Vec<_>>()
                ))
            }
        }
    })
    .await?;
    let loose = pod_api.list(&ListParams::default()).await?.items;
    assert!(
        loose.iter().all(|p| !live(p)),
        "no pod outlives the RC: {:?}",
        loose.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    Ok(())
}

/// Defaults and validation as a client sees them: the selector must match the template, an
/// RC without labels anywhere is refused, and `kubectl scale` refuses a negative count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_controller_is_validated_as_upstream() -> Result<()> {
    let server = ServerProcess::start(&[
        "--kube-controller-manager-arg=controllers=*,-replicationcontroller",
    ])?;
    let mismatched = MANIFEST.replace(
        "  replicas: 3\n",
        "  replicas: 3\n  selector:\n    app: db\n",
    );
    let out = server.kubectl_stdin(&["apply", "-f", "-"], Some(&mismatched));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.template.metadata.labels: Invalid value: map[app:web]: `selector` does not match template `labels`"),
        "{err}"
    );
    let unlabelled = MANIFEST.replace("    metadata:\n      labels:\n        app: web\n", "");
    let out = server.kubectl_stdin(&["apply", "-f", "-"], Some(&unlabelled));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.selector: Required value"), "{err}");
    ok(server.kubectl_stdin(&["apply", "-f", "-"], Some(MANIFEST)));
    let out = server.kubectl(&["scale", "rc/web", "--replicas=-1"]);
    assert!(!out.status.success(), "a negative scale is refused");
    let rc: Value = serde_json::from_str(&ok(server.kubectl(&["get", "rc", "web", "-o", "json"])))?;
    assert_eq!(rc["spec"]["replicas"], 3);
    assert_eq!(rc["status"], json!({"replicas": 0}), "no controller ran");
    Ok(())
}

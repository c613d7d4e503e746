//! HorizontalPodAutoscalers against a real server: `autoscaling/v1` and `v2` are one object,
//! invalid specs are refused with upstream's messages, the real `kubectl autoscale` and `kubectl
//! get hpa` work, and the controller reports a missing target as upstream does. Scaling on live
//! metrics needs the metrics API and kubelets, so it is tested on the lab, not here.

use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling_v2};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autoscaling_v1_and_v2_kubectl_validation_and_a_missing_target() -> Result<()> {
    let server = ServerProcess::start(&[])?;
    let client = server.client().await?;
    let ns = "default";
    let v1: Api<autoscaling_v1::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let v2: Api<autoscaling_v2::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);

    // Written as v1, read as v2: the CPU target is a Resource metric, the rest defaulted.
    let old: autoscaling_v1::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                 "maxReplicas": 4, "targetCPUUtilizationPercentage": 60},
    }))?;
    v1.create(&PostParams::default(), &old).await?;
    let mut new = v2.get("api").await?;
    let spec = &new.spec;
    assert_eq!(spec.min_replicas, Some(1));
    let metrics = spec.metrics.clone().unwrap_or_default();
    assert_eq!(metrics.len(), 1);
    let cpu = metrics[0].resource.as_ref().expect("a resource metric");
    assert_eq!(
        (cpu.name.as_str(), cpu.target.average_utilization),
        ("cpu", Some(60))
    );

    // A v2-only metric survives a v1 read-modify-write in the annotation.
    let mut extra = metrics[0].clone();
    extra.resource.as_mut().unwrap().name = "memory".into();
    extra.resource.as_mut().unwrap().target =
        serde_json::from_value(json!({"type": "AverageValue", "averageValue": "100Mi"}))?;
    new.spec.metrics = Some(vec![extra, metrics[0].clone()]);
    v2.replace("api", &PostParams::default(), &new).await?;
    let mut as_v1 = v1.get("api").await?;
    assert_eq!(as_v1.spec.target_cpu_utilization_percentage, Some(60));
    let annotation = as_v1
        .annotations()
        .get("autoscaling.alpha.kubernetes.io/metrics")
        .cloned()
        .unwrap_or_default();
    assert!(annotation.contains("100Mi"), "{annotation}");
    as_v1.spec.max_replicas = 6;
    v1.replace("api", &PostParams::default(), &as_v1).await?;
    let back = v2.get("api").await?;
    assert_eq!(back.spec.max_replicas, 6);
    let names: Vec<String> = back
        .spec
        .metrics
        .clone()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.resource.as_ref().map(|r| r.name.clone()))
        .collect();
    assert_eq!(names, ["memory", "cpu"]);
    assert!(
        !back
            .annotations()
            .contains_key("autoscaling.alpha.kubernetes.io/metrics"),
        "round-trip annotations are not stored"
    );

    // Invalid specs: 422 with upstream's field errors.
    let bad: autoscaling_v2::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 0, "maxReplicas": 3,
                 "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}}},
    }))?;
    match v2.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
            assert!(
                e.message.contains(
                    "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"
                ),
                "{}",
                e.message
            );
        }
        other => panic!("an HPA with minReplicas 0 was not refused: {other:?}"),
    }
    let out = server.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  maxReplicas: 3\n  behavior:\n    scaleDown:\n      policies: [{type: Percent, value: 10, periodSeconds: 1801}]\n",
        ),
    );
    let err = ekube_tests::stderr(&out);
    assert!(
        err.contains("spec.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800"),
        "{err}"
    );

    // The real kubectl: autoscale, then get with the server's columns.
    ok(server.kubectl(&["create", "deployment", "web", "--image=web:v1"]));
    ok(server.kubectl(&[
        "autoscale",
        "deployment",
        "web",
        "--cpu-percent=50",
        "--min=1",
        "--max=5",
    ]));
    let table = ok(server.kubectl(&["get", "hpa", "web"]));
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.starts_with("web")
            && row.contains("Deployment/web")
            && row.contains("cpu: <unknown>/50%"),
        "{table}"
    );
    let fields: Vec<&str> = row.split_whitespace().collect();
    // MINPODS and MAXPODS; REPLICAS is 0 until the controller's first sync, then 1.
    assert_eq!(
        fields[fields.len() - 4..fields.len() - 2],
        ["1", "5"],
        "{table}"
    );

    // A target that does not exist: AbleToScale=False, FailedGetScale, and a Warning event.
    let ghost: autoscaling_v2::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "ghost"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "missing"},
                 "maxReplicas": 3},
    }))?;
    v2.create(&PostParams::default(), &ghost).await?;
    let message = until(60, "hpa ghost reports FailedGetScale", || {
        let v2 = v2.clone();
        async move {
            let h = v2.get("ghost").await.map_err(|e| e.to_string())?;
            let conditions = h.status.and_then(|s| s.conditions).unwrap_or_default();
            Ok(conditions
                .iter()
                .find(|c| {
                    c.type_ == "AbleToScale"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("FailedGetScale")
                })
                .and_then(|c| c.message.clone()))
        }
    })
    .await?;
    assert!(
        message.starts_with("the HPA controller was unable to get the target's current scale:")
            && message.contains("missing"),
        "{message}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    until(30, "a FailedGetScale event for hpa ghost", || {
        let events = events.clone();
        async move {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            Ok(list
                .items
                .iter()
                .find(|e| {
                    e.involved_object.name.as_deref() == Some("ghost")
                        && e.reason.as_deref() == Some("FailedGetScale")
                        && e.type_.as_deref() == Some("Warning")
                })
                .map(|_| ()))
        }
    })
    .await?;
    // `kubectl describe` reads the conditions and the events.
    let described = ok(server.kubectl(&["describe", "hpa", "ghost"]));
    assert!(
        described.contains("FailedGetScale") && described.contains("Deployment/missing"),
        "{described}"
    );
    Ok(())
}

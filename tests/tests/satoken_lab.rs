//! A pod uses its own ServiceAccount token, end to end on a one-node lab cluster: the
//! ServiceAccount admission mounts `kube-api-access-*`, the kubelet writes the token bound to
//! the pod, `ca.crt` from `kube-root-ca.crt` and the namespace, sets
//! `KUBERNETES_SERVICE_HOST/PORT`, and the container lists pods over HTTPS with the token;
//! once the pod is deleted its token is refused.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::{Value, json};

const LAB: &str = "eksatok";
const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";
const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Reads the mounted files and lists the pods of its namespace with its token (busybox wget
/// speaks TLS; it does not check the certificate, the test compares `ca.crt` instead).
const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  containers:
  - name: main
    image: BUSYBOX
    command:
    - sh
    - -c
    - |
      D=DIR
      echo "namespace=$(cat $D/namespace)"
      echo "host=$KUBERNETES_SERVICE_HOST port=$KUBERNETES_SERVICE_PORT"
      URL="https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $D/namespace)/pods"
      if wget -q --no-check-certificate --header "Authorization: Bearer $(cat $D/token)" -O /tmp/pods "$URL"; then
        grep -o '"kind":"PodList"' /tmp/pods; grep -o '"name":"reader"' /tmp/pods | head -1
      else echo "wget with the token failed"; fi
      wget -q --no-check-certificate -O /tmp/anon "$URL" || echo "anonymous refused"
      sleep 3600
"#;

fn review(c: &LabCluster, token: &str) -> Result<Value> {
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    std::fs::write(file.path(), body.to_string())?;
    let out = c.kubectl(&[
        "create",
        "-f",
        &file.path().display().to_string(),
        "-o",
        "json",
    ])?;
    serde_json::from_str(&out).context("parsing the TokenReview")
}

#[test]
fn a_pod_lists_pods_with_its_own_token_until_it_is_deleted() -> Result<()> {
    let c = LabCluster::start(LAB, 1, ClusterOptions::default())?;
    c.apply(&POD.replace("BUSYBOX", BUSYBOX).replace("DIR", DIR))?;
    let pod = c.wait_pod("reader", Duration::from_secs(120), "listed pods", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let mut out = String::new();
    ekube_tests::wait_for(Duration::from_secs(30), "the reader's output", || {
        out = c.container_output(&pod, "main")?;
        Ok(out.contains("anonymous refused") || out.contains("wget with the token failed"))
    })?;
    let svc = c.get("service", "kubernetes")?;
    let host = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
    for line in [
        "namespace=default".to_string(),
        format!("host={host} port=443"),
        r#""kind":"PodList""#.into(),
        r#""name":"reader""#.into(),
        "anonymous refused".into(),
    ] {
        ensure!(
            out.contains(&line),
            "missing {line:?} in the pod's output:\n{out}"
        );
    }

    // ca.crt is the published cluster CA; the token is bound to this pod.
    let ca = c.kubectl(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ])?;
    let mounted = c.kubectl(&["exec", "reader", "--", "cat", &format!("{DIR}/ca.crt")])?;
    ensure!(
        !ca.is_empty() && mounted == ca,
        "ca.crt differs from kube-root-ca.crt:\n{mounted}"
    );
    let token = c.kubectl(&["exec", "reader", "--", "cat", &format!("{DIR}/token")])?;
    let r = review(&c, token.trim())?;
    ensure!(r["status"]["authenticated"] == true, "the pod's token: {r}");
    ensure!(
        r["status"]["user"]["username"] == "system:serviceaccount:default:default"
            && r["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"]
                == json!([pod["metadata"]["uid"]]),
        "the pod's token names someone else: {r}"
    );

    c.kubectl(&["delete", "pod", "reader", "--grace-period=1", "--wait=true"])?;
    let r = review(&c, token.trim())?;
    ensure!(
        r["status"]["authenticated"] == false,
        "the deleted pod's token still authenticates: {r}"
    );
    Ok(())
}

//! A pod uses its own ServiceAccount token, end to end on a one-node lab cluster: the
//! ServiceAccount admission mounts `kube-api-access-*`, the kubelet writes the token bound to
//! the pod, `ca.crt` from `kube-root-ca.crt` and the namespace, sets
//! `KUBERNETES_SERVICE_HOST/PORT`; the official Python client inside the pod
//! (`config.load_incluster_config()`, through the `kubernetes` Service's ClusterIP) is refused
//! until a RoleBinding lets it list the pods of its namespace; the token is who the pod is, and
//! once the pod is deleted it is refused.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::{Value, json};

const LAB: &str = "eksatok";
const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Shows what the container finds, then lists the pods of its namespace once a second with the
/// official Python client configured as in-cluster clients are.
const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  containers:
  - name: main
    image: lab/python-kubernetes
    env:
    - name: LISTER
      value: |
        import time
        from kubernetes import client, config
        config.load_incluster_config()
        api = client.CoreV1Api()
        namespace = open("DIR/namespace").read()
        while True:
            try:
                pods = api.list_namespaced_pod(namespace)
                print("listed", " ".join(p.metadata.name for p in pods.items), flush=True)
            except client.ApiException as e:
                print("refused", e.status, flush=True)
            except Exception as e:
                print("error", repr(e), flush=True)
            time.sleep(1)
    command:
    - sh
    - -c
    - |
      echo "namespace=$(cat DIR/namespace)"
      echo "host=$KUBERNETES_SERVICE_HOST port=$KUBERNETES_SERVICE_PORT"
      echo "token bytes=$(wc -c < DIR/token)"
      exec python3 -c "$LISTER"
"#;

/// `kubectl get pods` authenticated by `token` alone (no client certificate).
fn get_pods_with(c: &LabCluster, token: &str) -> Result<ekube_lab::ExecOutput> {
    let file = tempfile::Builder::new().suffix(".kubeconfig").tempfile()?;
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(c.lab.kubeconfig())?)?;
    config["users"] = json!([{"name": "token", "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = json!("token");
    std::fs::write(file.path(), serde_yaml::to_string(&config)?)?;
    let path = file.path().display().to_string();
    let out = c.sh(&format!("$K --kubeconfig {path} get pods"))?;
    Ok(out)
}

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
    let options = ClusterOptions {
        hub_images: true,
        ..ClusterOptions::default()
    };
    let c = LabCluster::start(LAB, 1, options)?;
    c.apply(&POD.replace("DIR", DIR))?;
    let pod = c.wait_pod("reader", Duration::from_secs(120), "listed pods", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let mut out = String::new();
    ekube_tests::wait_for(Duration::from_secs(30), "the reader's output", || {
        out = c.container_output(&pod, "main")?;
        Ok(out.contains("token bytes="))
    })?;
    let svc = c.get("service", "kubernetes")?;
    let host = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
    for line in [
        "namespace=default".to_string(),
        format!("host={host} port=443"),
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
    // RBAC lets the pod's ServiceAccount list pods only once a binding grants it: the client
    // in the pod is refused, and so is its token used from outside.
    ekube_tests::wait_for(
        Duration::from_secs(30),
        "the pod's client to be refused",
        || {
            out = c.container_output(&pod, "main")?;
            ensure!(!out.contains("error "), "the pod's client failed:\n{out}");
            Ok(out.contains("refused 403"))
        },
    )?;
    let refused = get_pods_with(&c, token.trim())?;
    ensure!(
        !refused.success() && refused.stderr.contains("cannot list resource \"pods\""),
        "listing pods with the pod's token before any binding: {refused:?}"
    );
    c.kubectl(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ])?;
    let mut listed = refused;
    ekube_tests::wait_for(
        Duration::from_secs(10),
        "the binding to take effect",
        || {
            listed = get_pods_with(&c, token.trim())?;
            Ok(listed.success())
        },
    )?;
    ensure!(
        listed.stdout.contains("reader"),
        "listing pods with the pod's token: {listed:?}"
    );
    ekube_tests::wait_for(
        Duration::from_secs(30),
        "the pod's client to list pods",
        || {
            out = c.container_output(&pod, "main")?;
            Ok(out.lines().any(|l| l == "listed reader"))
        },
    )?;

    c.kubectl(&["delete", "pod", "reader", "--grace-period=1", "--wait=true"])?;
    let r = review(&c, token.trim())?;
    ensure!(
        r["status"]["authenticated"] == false,
        "the deleted pod's token still authenticates: {r}"
    );
    Ok(())
}

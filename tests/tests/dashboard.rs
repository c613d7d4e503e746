//! The dashboard add-on end to end, as its users reach it: on a three-node lab, `ekube addons
//! enable dashboard`, then the real `kubectl proxy` in the external namespace, and headless
//! Chromium (driven by `tests/dashboard/drive.py` through playwright) at kube's usual URL:
//!
//! - a token the apiserver does not know is refused at sign-in;
//! - signed in with a ServiceAccount token that may read the cluster and scale Deployments,
//!   the Nodes page lists the three nodes with their `top` figures, the Pods page the `web`
//!   pods Running, a pod's page its events and its log;
//! - scaling `web` to 4 on the Workloads page gives 4 replicas, seen through the API;
//! - a token without rights is shown the apiserver's 403, and a call without a token never
//!   leaves the dashboard (401): the dashboard acts only as its viewer.
//!
//! Screenshots of each page go to `target/dashboard/`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::{Value, json};

const LAB: &str = "ekdash";
const PROXY_PORT: &str = "8001";
const LOG_TEXT: &str = "web pod serving";

/// kube's usual URL of the dashboard, through `kubectl proxy` (DESIGN.md §11).
const DASHBOARD_PATH: &str =
    "/api/v1/namespaces/kubernetes-dashboard/services/https:kubernetes-dashboard:/proxy/";

const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: 192.168.64.1:5000/busybox:latest
        command: [sh, -c, 'echo "web pod serving as $(hostname)"; exec httpd -f -p 8080']
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: operator}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nobody}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: dashboard-operator}
rules:
- apiGroups: [""]
  resources: [namespaces, nodes, pods, pods/log, events]
  verbs: [get, list]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get, patch, update]
- apiGroups: [metrics.k8s.io]
  resources: [nodes, pods]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dashboard-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dashboard-operator}
subjects: [{kind: ServiceAccount, name: operator, namespace: default}]
"#;

/// Where the screenshots go: the workspace's `target/dashboard`.
fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard")
}

#[test]
fn the_dashboard_through_kubectl_proxy() -> Result<()> {
    let c = LabCluster::start(LAB, 3, ClusterOptions::default())?;
    c.enable_addon("dashboard", &[])?;
    c.apply(WORKLOAD)?;

    // The add-on: its pod mounts no token, so the dashboard has no identity to act with.
    c.wait(
        Duration::from_secs(120),
        "the dashboard Deployment to be available",
        |c| {
            let d = c.kubectl(&[
                "-n",
                "kubernetes-dashboard",
                "get",
                "deployment",
                "kubernetes-dashboard",
                "-o",
                "json",
            ])?;
            let d: Value = serde_json::from_str(&d)?;
            Ok(d["status"]["availableReplicas"] == 1)
        },
    )
    .with_context(|| {
        let pods = c.run(&["-n", "kubernetes-dashboard", "describe", "pods"]);
        let logs = c.run(&[
            "-n",
            "kubernetes-dashboard",
            "logs",
            "deployment/kubernetes-dashboard",
        ]);
        format!(
            "{}\n{}",
            pods.map(|o| o.stdout).unwrap_or_default(),
            logs.map(|o| o.stdout + &o.stderr).unwrap_or_default()
        )
    })?;
    let pods = c.list("pods", &["-n", "kubernetes-dashboard"])?;
    for pod in &pods {
        let mounts = &pod["spec"]["containers"][0]["volumeMounts"];
        ensure!(
            !mounts.to_string().contains("serviceaccount"),
            "the dashboard pod mounts a ServiceAccount token: {mounts}"
        );
    }

    let proxy = c.lab.spawn(
        "ext",
        "kubectl-proxy",
        &c.argv(&["proxy", "--port", PROXY_PORT]),
    )?;
    let base = format!("http://127.0.0.1:{PROXY_PORT}");
    let url = format!("{base}{DASHBOARD_PATH}");
    let result = drive(&c, &base, &url);
    c.lab.stop(proxy)?;
    let seen = result?;

    ensure!(
        seen["bad_token"]
            .as_str()
            .unwrap_or_default()
            .contains("401"),
        "a bad token was not refused: {seen}"
    );
    let listed: Vec<String> = seen["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row[0].as_str().map(str::to_string))
        .collect();
    for short in ["n1", "n2", "n3"] {
        ensure!(
            listed.contains(&c.node_name(short)),
            "{short} missing from the Nodes page: {listed:?}"
        );
    }
    ensure!(
        seen["events"].to_string().contains("Started"),
        "the pod page shows no Started event: {}",
        seen["events"]
    );
    ensure!(
        seen["weak_nodes"]
            .as_str()
            .is_some_and(|m| m.contains("403") && m.contains("forbidden")),
        "a token without rights was not shown the apiserver's refusal: {}",
        seen["weak_nodes"]
    );

    // The scale the page asked for, seen through the API.
    c.wait(
        Duration::from_secs(90),
        "web to have 4 ready replicas",
        |c| {
            let d = c.get("deployment", "web")?;
            Ok(d["spec"]["replicas"] == 4 && d["status"]["readyReplicas"] == 4)
        },
    )?;
    Ok(())
}

/// Waits for the proxy and the dashboard, checks a call without a token is refused, then runs
/// the browser; returns what it saw.
fn drive(c: &LabCluster, base: &str, url: &str) -> Result<Value> {
    c.wait(Duration::from_secs(30), "kubectl proxy to answer", |c| {
        Ok(c.lab
            .http("ext", "GET", &format!("{base}/version"), &[])
            .is_ok_and(|r| r.status == 200))
    })?;
    let mut last = String::new();
    c.wait(
        Duration::from_secs(60),
        "the dashboard to answer through the service proxy",
        |c| {
            let answer = c.lab.http("ext", "GET", url, &[])?;
            last = format!(
                "{} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            Ok(answer.status == 200)
        },
    )
    .with_context(|| format!("the last answer: {last}"))?;
    let anonymous = c
        .lab
        .http("ext", "GET", &format!("{url}api/v1/nodes"), &[])?;
    ensure!(
        anonymous.status == 401,
        "a call without a token got {}: {}",
        anonymous.status,
        String::from_utf8_lossy(&anonymous.body)
    );

    let token = |sa: &str| -> Result<String> {
        Ok(c.kubectl(&["create", "token", sa, "--duration=1h"])?
            .trim()
            .to_string())
    };
    let nodes: Vec<String> = ["n1", "n2", "n3"].iter().map(|n| c.node_name(n)).collect();
    let config = json!({
        "url": url,
        "token": token("operator")?,
        "weak_token": token("nobody")?,
        "nodes": nodes,
        "deployment": "default/web",
        "replicas": 4,
        "log_text": LOG_TEXT,
        "shots": shots_dir(),
    });
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), config.to_string())?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboard/drive.py");
    let out = c.lab.exec_timeout(
        "ext",
        &[
            "python3".to_string(),
            script.display().to_string(),
            file.path().display().to_string(),
        ],
        Duration::from_secs(600),
    )?;
    ensure!(
        out.success(),
        "the browser stopped: {}\n{}",
        out.stderr.trim(),
        out.stdout.trim()
    );
    serde_json::from_str(out.stdout.trim()).context("the browser's report")
}

//! PodDisruptionBudgets end to end on a two-node lab, driven with the real kubectl: the
//! disruption controller's status and printed columns, the eviction subresource refusing with
//! upstream's 429 while the budget is spent, and `kubectl drain` of the node holding most of a
//! three-replica Deployment guarded by `minAvailable: 2` — it waits out the budget (retrying
//! the refused evictions), finishes, and leaves all three replicas running on the other node —
//! then `kubectl uncordon`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};
use serde_json::Value;

const LAB: &str = "ekpdb";

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: 192.168.64.1:5000/busybox:latest
        command: [sleep, '3600']
        readinessProbe:
          exec: {command: ['true']}
          periodSeconds: 1
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
";

const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// The web pods that are not being deleted, by name, with their node and readiness.
fn web_pods(c: &LabCluster) -> Result<Vec<(String, String, bool)>> {
    Ok(c.list("pods", &["-l", "app=web"])?
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                is_ready(p),
            )
        })
        .collect())
}

/// The budget's status counts `(currentHealthy, desiredHealthy, expectedPods,
/// disruptionsAllowed, observedGeneration)`.
fn counts(status: &Value) -> (i64, i64, i64, i64, i64) {
    let n = |f: &str| status[f].as_i64().unwrap_or(-1);
    (
        n("currentHealthy"),
        n("desiredHealthy"),
        n("expectedPods"),
        n("disruptionsAllowed"),
        n("observedGeneration"),
    )
}

fn wait_budget(c: &LabCluster, want: (i64, i64, i64, i64, i64)) -> Result<Value> {
    let mut last = Value::Null;
    c.wait(
        Duration::from_secs(60),
        &format!("pdb web status (current, desired, expected, allowed, generation) = {want:?}"),
        |c| {
            last = c.get("pdb", "web")?["status"].clone();
            Ok(counts(&last) == want)
        },
    )
    .with_context(|| format!("last status of pdb web: {last}"))?;
    Ok(last)
}

/// Posts an Eviction for `pod` through `kubectl create --raw`.
fn evict(c: &LabCluster, pod: &str) -> Result<ekube_lab::ExecOutput> {
    let body = tempfile::Builder::new().suffix(".json").tempfile()?;
    let eviction = serde_json::json!({
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": pod, "namespace": "default"},
    });
    std::fs::write(body.path(), eviction.to_string())?;
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    c.run(&[
        "create",
        "--raw",
        &path,
        "-f",
        &body.path().display().to_string(),
    ])
}

/// Sets the budget's `minAvailable` with `kubectl patch`.
fn set_min_available(c: &LabCluster, n: u32) -> Result<()> {
    let patch = format!(r#"{{"spec":{{"minAvailable":{n}}}}}"#);
    c.kubectl(&["patch", "pdb", "web", "--type=merge", "-p", &patch])?;
    Ok(())
}

#[test]
fn drain_honours_a_pod_disruption_budget() -> Result<()> {
    let c = LabCluster::start(LAB, 2, ClusterOptions::default())?;
    c.apply(WEB)?;
    c.wait(Duration::from_secs(120), "3 ready web pods", |c| {
        Ok(web_pods(c)?.iter().filter(|(_, _, ready)| *ready).count() == 3)
    })?;

    // The controller's view: 3 healthy, 2 needed, 3 expected, 1 disruption allowed.
    let status = wait_budget(&c, (3, 2, 3, 1, 1))?;
    let cond = &status["conditions"][0];
    ensure!(
        cond["type"] == "DisruptionAllowed"
            && cond["status"] == "True"
            && cond["reason"] == "SufficientPods",
        "condition of a budget with room: {cond}"
    );
    let table = c.kubectl(&["get", "pdb", "web"])?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header
            == [
                "NAME",
                "MIN",
                "AVAILABLE",
                "MAX",
                "UNAVAILABLE",
                "ALLOWED",
                "DISRUPTIONS",
                "AGE"
            ],
        "kubectl get pdb columns: {table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        row.get(..4) == Some(&["web", "2", "N/A", "1"][..]),
        "kubectl get pdb row: {table}"
    );

    // With minAvailable 3 nothing may go: the eviction subresource refuses with 429.
    set_min_available(&c, 3)?;
    wait_budget(&c, (3, 3, 3, 0, 2))?;
    let victim = web_pods(&c)?[0].0.clone();
    let refused = evict(&c, &victim)?;
    ensure!(
        !refused.success()
            && refused.stderr.contains("TooManyRequests")
            && refused.stderr.contains(REFUSED),
        "eviction of {victim} with no disruption allowed: exit {:?}, stderr {}",
        refused.code,
        refused.stderr
    );
    ensure!(
        web_pods(&c)?.iter().any(|(name, _, _)| *name == victim),
        "{victim} went although its eviction was refused"
    );
    set_min_available(&c, 2)?;
    wait_budget(&c, (3, 2, 3, 1, 3))?;

    // Drain the node holding most web pods: at least two, so the budget makes drain wait.
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (_, node, _) in web_pods(&c)? {
        *per_node.entry(node).or_default() += 1;
    }
    let (drained, held) = per_node
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(node, n)| (node.clone(), *n))
        .context("no web pods")?;
    let other = [c.node_name("n1"), c.node_name("n2")]
        .into_iter()
        .find(|n| *n != drained)
        .context("no second node")?;
    let drain = c.lab.exec_timeout(
        "n1",
        &c.argv(&[
            "drain",
            &drained,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=120s",
        ]),
        Duration::from_secs(180),
    )?;
    ensure!(
        drain.success(),
        "kubectl drain {drained}: exit {:?}\n{}\n{}",
        drain.code,
        drain.stdout,
        drain.stderr
    );
    let output = format!("{}{}", drain.stdout, drain.stderr);
    ensure!(
        output.contains(&format!("node/{drained} drained")),
        "drain output: {output}"
    );
    if held >= 2 {
        // Both were asked for at once; the budget let one go and refused the other until
        // the replacement was Ready.
        ensure!(
            output.contains(REFUSED),
            "drain of {held} guarded pods never waited for the budget: {output}"
        );
    }
    let node = c.get("node", &drained)?;
    ensure!(
        node["spec"]["unschedulable"] == true,
        "drained node is schedulable: {}",
        node["spec"]
    );

    c.wait(
        Duration::from_secs(120),
        &format!("3 ready web pods on {other}"),
        |c| {
            let pods = web_pods(c)?;
            Ok(pods.len() == 3 && pods.iter().all(|(_, node, ready)| *node == other && *ready))
        },
    )?;
    wait_budget(&c, (3, 2, 3, 1, 3))?;

    c.kubectl(&["uncordon", &drained])?;
    let node = c.get("node", &drained)?;
    ensure!(
        node["spec"]["unschedulable"] != true,
        "uncordoned node still unschedulable: {}",
        node["spec"]
    );
    Ok(())
}

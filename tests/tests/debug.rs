//! `kubectl debug` end to end on a one-node lab, driven with the real kubectl: an ephemeral
//! container added to a running pod through `pods/ephemeralcontainers` runs in the pod's
//! sandbox, its output reaches `kubectl logs -c`, and `ephemeralContainerStatuses` reports its
//! exit; `kubectl debug -it` attaches to a new one and feeds it stdin; one with a target shares
//! that container's PID namespace; the subresource refuses ports and the removal of an
//! existing ephemeral container with upstream's 422; `kubectl debug node/<node>` runs its
//! host-namespace pod with the node's root at `/host`; and RBAC guards the subresource.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::{Value, json};

const LAB: &str = "ekdebug";
const IMAGE: &str = "192.168.64.1:5000/busybox:latest";

const TARGET: &str = "apiVersion: v1
kind: Pod
metadata: {name: target}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: [sleep, '3600']
";

/// The status of ephemeral container `name` in `pod`.
fn ephemeral_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

/// PUTs `pod` to `pods/target/ephemeralcontainers`; kubectl's exit status and stderr (with
/// the response code, logged at `-v=6`).
fn put_ephemeral(c: &LabCluster, pod: &Value) -> Result<(bool, String)> {
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), pod.to_string())?;
    let path = file.path().display().to_string();
    let out = c.run(&[
        "replace",
        "-v=6",
        "--raw",
        "/api/v1/namespaces/default/pods/target/ephemeralcontainers",
        "-f",
        &path,
    ])?;
    Ok((out.success(), out.stderr))
}

#[test]
fn kubectl_debug_adds_ephemeral_containers() -> Result<()> {
    let c = LabCluster::start(LAB, 1, ClusterOptions::default())?;
    c.apply(TARGET)?;
    c.wait_pod("target", Duration::from_secs(120), "Running", |p| {
        p["status"]["phase"] == "Running"
    })?;

    // Discovery lists the subresource as upstream does.
    let resources: Value = serde_json::from_str(&c.kubectl(&["get", "--raw", "/api/v1"])?)?;
    let sub = resources["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "pods/ephemeralcontainers")
        .context("pods/ephemeralcontainers not in discovery")?;
    ensure!(
        sub["kind"] == "Pod" && sub["verbs"] == json!(["get", "patch", "update"]),
        "discovery entry: {sub}"
    );

    // Non-interactive: the container runs once, its output is in its log, and it stays
    // terminated with exit code 0.
    let out = c.kubectl(&[
        "debug",
        "target",
        &format!("--image={IMAGE}"),
        "--container=dbg",
        "--",
        "sh",
        "-c",
        "echo debug-ok; hostname",
    ])?;
    println!("kubectl debug: {out}");
    let pod = c.wait_pod("target", Duration::from_secs(60), "dbg terminated", |p| {
        ephemeral_status(p, "dbg").is_some_and(|s| !s["state"]["terminated"].is_null())
    })?;
    let dbg = ephemeral_status(&pod, "dbg").context("no status of dbg")?;
    ensure!(
        dbg["state"]["terminated"]["exitCode"] == 0 && dbg["restartCount"] == 0,
        "status of dbg: {dbg}"
    );
    let logs = c.kubectl(&["logs", "target", "-c", "dbg"])?;
    ensure!(
        logs.lines().collect::<Vec<_>>() == ["debug-ok", "target"],
        "logs of dbg: {logs:?}"
    );
    // Never restarted: still the one terminated run a little later.
    std::thread::sleep(Duration::from_secs(3));
    let later = c.get("pod", "target")?;
    let again = ephemeral_status(&later, "dbg").context("no status of dbg")?;
    ensure!(
        again["restartCount"] == 0 && again["containerID"] == dbg["containerID"],
        "dbg was restarted: {again}"
    );
    ensure!(
        later["status"]["phase"] == "Running",
        "target phase: {}",
        later["status"]["phase"]
    );

    // Interactive: kubectl waits for the container, attaches and sends it stdin.
    let out = c.sh(&format!(
        "printf 'echo hi-from-debug; exit 0\\n' | $K debug -it target --image={IMAGE} \
         --container=dbg2 -- sh"
    ))?;
    ensure!(
        out.success() && out.stdout.contains("hi-from-debug"),
        "kubectl debug -it: exit {:?}, stdout {:?}, stderr {:?}",
        out.code,
        out.stdout,
        out.stderr
    );
    c.wait_pod(
        "target",
        Duration::from_secs(30),
        "dbg2 terminated with 0",
        |p| ephemeral_status(p, "dbg2").is_some_and(|s| s["state"]["terminated"]["exitCode"] == 0),
    )?;

    // With a target, the ephemeral container sees the target container's processes.
    c.kubectl(&[
        "debug",
        "target",
        &format!("--image={IMAGE}"),
        "--container=dbg3",
        "--target=main",
        "--",
        "ps",
    ])?;
    c.wait_pod(
        "target",
        Duration::from_secs(60),
        "dbg3 terminated with 0",
        |p| ephemeral_status(p, "dbg3").is_some_and(|s| s["state"]["terminated"]["exitCode"] == 0),
    )?;
    let ps = c.kubectl(&["logs", "target", "-c", "dbg3"])?;
    ensure!(
        ps.lines().any(|l| l.ends_with("sleep 3600")),
        "ps in the target's PID namespace: {ps:?}"
    );

    // The subresource: GET answers the pod; ports and removals are refused with 422s.
    let mut pod: Value = serde_json::from_str(&c.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/target/ephemeralcontainers",
    ])?)?;
    ensure!(
        pod["kind"] == "Pod"
            && pod["spec"]["ephemeralContainers"].as_array().map(Vec::len) == Some(3),
        "GET pods/target/ephemeralcontainers: {}",
        pod["spec"]
    );
    let existing = pod["spec"]["ephemeralContainers"].clone();
    pod["spec"]["ephemeralContainers"]
        .as_array_mut()
        .context("ephemeralContainers")?
        .push(json!({"name": "web", "image": IMAGE, "ports": [{"containerPort": 80}]}));
    let (ok, err) = put_ephemeral(&c, &pod)?;
    ensure!(
        !ok && err.contains("status=\"422 Unprocessable Entity\"")
            && err.contains("Pod \"target\" is invalid")
            && err.contains(
                "spec.ephemeralContainers[3].ports: Forbidden: cannot be set for an Ephemeral Container"
            ),
        "ephemeral container with ports: {err}"
    );
    pod["spec"]["ephemeralContainers"] = json!([existing[0]]);
    let (ok, err) = put_ephemeral(&c, &pod)?;
    ensure!(
        !ok && err.contains("status=\"422 Unprocessable Entity\"")
            && err.contains("existing ephemeral containers \"dbg2\" may not be removed"),
        "removing an ephemeral container: {err}"
    );
    // Only `spec.ephemeralContainers` moves through the subresource.
    pod["spec"]["ephemeralContainers"] = existing;
    pod["metadata"]["labels"] = json!({"through": "ephemeralcontainers"});
    pod["spec"]["activeDeadlineSeconds"] = json!(600);
    // Unconditional: the kubelet may have written the status since the GET.
    pod["metadata"]
        .as_object_mut()
        .map(|m| m.remove("resourceVersion"));
    let (ok, err) = put_ephemeral(&c, &pod)?;
    ensure!(ok, "an unchanged list: {err}");
    let stored = c.get("pod", "target")?;
    ensure!(
        stored["metadata"]["labels"].get("through").is_none()
            && stored["spec"]["activeDeadlineSeconds"].is_null(),
        "fields outside spec.ephemeralContainers changed: {}",
        stored["metadata"]
    );

    // A node debugging pod: the node's namespaces and its root at /host.
    let node = c.node_name("n1");
    let out = c.kubectl(&[
        "debug",
        &format!("node/{node}"),
        &format!("--image={IMAGE}"),
        "--",
        "sh",
        "-c",
        "ls /host/etc",
    ])?;
    println!("kubectl debug node: {out}");
    let prefix = format!("node-debugger-{node}-");
    let mut name = String::new();
    c.wait(Duration::from_secs(30), "a node debugging pod", |c| {
        name = c
            .list("pods", &[])?
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .find(|n| n.starts_with(&prefix))
            .unwrap_or_default()
            .to_owned();
        Ok(!name.is_empty())
    })?;
    let debugger = c.wait_pod(&name, Duration::from_secs(60), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    let spec = &debugger["spec"];
    ensure!(
        spec["hostPID"] == true && spec["hostNetwork"] == true && spec["nodeName"] == node,
        "node debugging pod spec: {spec}"
    );
    let listing = c.kubectl(&["logs", &name])?;
    ensure!(
        listing.lines().any(|l| l == "passwd"),
        "ls /host/etc: {listing:?}"
    );

    // RBAC: adding an ephemeral container takes `patch` on `pods/ephemeralcontainers`; `get`
    // on pods is not enough.
    c.apply(&debugger_role(false))?;
    let debug_as = |container: &str| {
        c.run(&[
            "debug",
            "--as=debugger",
            "target",
            &format!("--image={IMAGE}"),
            &format!("--container={container}"),
            "--",
            "true",
        ])
    };
    let out = debug_as("dbg4")?;
    ensure!(
        !out.success()
            && out.stderr.contains(
                "User \"debugger\" cannot patch resource \"pods/ephemeralcontainers\" in API \
                 group \"\" in the namespace \"default\""
            ),
        "debug without the grant: exit {:?}, stderr {:?}",
        out.code,
        out.stderr
    );
    c.apply(&debugger_role(true))?;
    c.wait(Duration::from_secs(10), "the grant to take effect", |_| {
        Ok(debug_as("dbg4")?.success())
    })?;
    c.wait_pod("target", Duration::from_secs(60), "dbg4 terminated", |p| {
        ephemeral_status(p, "dbg4").is_some_and(|s| s["state"]["terminated"]["exitCode"] == 0)
    })?;
    Ok(())
}

/// A Role (and its binding to user `debugger`) that reads pods and, with `ephemeral`, may add
/// ephemeral containers to them.
fn debugger_role(ephemeral: bool) -> String {
    let extra = if ephemeral {
        "\n- apiGroups: ['']\n  resources: [pods/ephemeralcontainers]\n  verbs: [patch]"
    } else {
        ""
    };
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: debugger}}
rules:
- apiGroups: ['']
  resources: [pods]
  verbs: [get, list, watch]{extra}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: debugger}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: debugger}}
subjects:
- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: debugger}}
"
    )
}

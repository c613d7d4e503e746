//! Device plugins on a two-node lab cluster, with `ekube device-plugin example` (four devices
//! backed by `/dev/null`) on n2 only:
//! - n2 offers `vendor.example/dev` 4 (capacity and allocatable), n1 none;
//! - a pod asking for 2 lands on n2 and finds its two device nodes and the plugin's env;
//! - a pod asking for 3 waits with upstream's `Insufficient vendor.example/dev` until the first
//!   is deleted, then runs with three devices;
//! - the agent restarts under the running pod: the pod keeps its devices, the plugin registers
//!   again, and a new pod gets the one device left, not one of the running pod's;
//! - the plugin dies: allocatable 0 and the pods' devices read Unknown; it comes back with a
//!   device turning unhealthy: allocatable 4, then 3;
//! - bad input: a plugin with a wrong API version or resource name is refused with the
//!   reason, and the apiserver refuses requests that differ from limits and fractional counts.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use ekube_tests::ekube_bin;
use serde_json::Value;

const LAB: &str = "ekdev";
const RESOURCE: &str = "vendor.example/dev";
const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";

fn pod(name: &str, request: &str, limit: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n\
         spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    \
         image: {BUSYBOX}\n    command: [sleep, '3600']\n    resources:\n      \
         requests: {{{RESOURCE}: '{request}'}}\n      limits: {{{RESOURCE}: '{limit}'}}\n"
    )
}

/// `(capacity, allocatable)` of the resource on `node`, empty strings when absent.
fn offered(c: &LabCluster, node: &str) -> Result<(String, String)> {
    let n = c.get("node", node)?;
    let get = |field: &str| {
        n["status"][field][RESOURCE]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    Ok((get("capacity"), get("allocatable")))
}

fn wait_offered(c: &LabCluster, node: &str, want: (&str, &str)) -> Result<()> {
    let mut last = (String::new(), String::new());
    c.wait(
        Duration::from_secs(60),
        &format!("{node} offering {want:?} of {RESOURCE}"),
        |c| {
            last = offered(c, node)?;
            Ok((last.0.as_str(), last.1.as_str()) == want)
        },
    )
    .with_context(|| format!("last seen {last:?}"))
}

/// The device nodes and the `EXAMPLE_DEVICES` env a running pod's container sees.
fn devices_in(c: &LabCluster, pod: &str) -> Result<(Vec<String>, String)> {
    let out = c.kubectl(&[
        "exec",
        pod,
        "--",
        "sh",
        "-c",
        "ls /dev/example; echo \"env=$EXAMPLE_DEVICES\"; echo x > /dev/example/$(ls /dev/example | head -n1) && echo writable",
    ])?;
    ensure!(
        out.contains("writable"),
        "{pod}: device node not writable: {out}"
    );
    let nodes = out
        .lines()
        .filter(|l| l.starts_with("dev-"))
        .map(str::to_owned)
        .collect();
    let env = out
        .lines()
        .find_map(|l| l.strip_prefix("env="))
        .unwrap_or_default()
        .to_owned();
    Ok((nodes, env))
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

#[test]
fn device_plugin_devices_reach_pods() -> Result<()> {
    let c = LabCluster::start(LAB, 2, ClusterOptions::default())?;
    let (n1, n2) = (c.node_name("n1"), c.node_name("n2"));
    let plugin_dir = c.lab.host("n2")?.dir.join("data/kubelet/device-plugins");
    let plugin = |extra: &[&str]| -> Vec<String> {
        let mut argv = vec![
            ekube_bin().display().to_string(),
            "device-plugin".into(),
            "example".into(),
            "--resource".into(),
            RESOURCE.into(),
            "--count".into(),
            "4".into(),
            "--device-plugin-path".into(),
            plugin_dir.display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    };
    let first = c.lab.spawn("n2", "plugin", &plugin(&[]))?;
    wait_offered(&c, &n2, ("4", "4"))?;
    ensure!(
        offered(&c, &n1)? == (String::new(), String::new()),
        "n1 has no plugin"
    );
    let described = c.kubectl(&["describe", "node", &n2])?;
    ensure!(
        described.matches(RESOURCE).count() >= 3,
        "describe node shows capacity, allocatable and allocated: {described}"
    );

    // Two devices for the first pod, on n2, visible inside.
    c.apply(&pod("dev-a", "2", "2"))?;
    let a = c.wait_pod("dev-a", Duration::from_secs(120), "running", running)?;
    ensure!(
        a["spec"]["nodeName"] == n2.as_str(),
        "dev-a on {}",
        a["spec"]["nodeName"]
    );
    let (nodes_a, env_a) = devices_in(&c, "dev-a")?;
    ensure!(nodes_a.len() == 2, "dev-a sees {nodes_a:?}");
    ensure!(
        env_a == nodes_a.join(","),
        "dev-a env {env_a:?} vs nodes {nodes_a:?}"
    );

    // Three more do not fit until the first pod goes.
    c.apply(&pod("dev-b", "3", "3"))?;
    let mut events = Vec::new();
    c.wait(Duration::from_secs(60), "dev-b FailedScheduling", |c| {
        events = c.events_of("dev-b")?;
        Ok(events.iter().any(|(reason, message)| {
            reason == "FailedScheduling" && message.contains(&format!("Insufficient {RESOURCE}"))
        }))
    })
    .with_context(|| format!("events of dev-b: {events:?}"))?;
    ensure!(c.get("pod", "dev-b")?["status"]["phase"] == "Pending");
    c.kubectl(&["delete", "pod", "dev-a", "--wait=false"])?;
    let b = c.wait_pod("dev-b", Duration::from_secs(120), "running", running)?;
    ensure!(b["spec"]["nodeName"] == n2.as_str());
    let (nodes_b, env_b) = devices_in(&c, "dev-b")?;
    ensure!(
        nodes_b.len() == 3 && env_b == nodes_b.join(","),
        "dev-b: {nodes_b:?} {env_b:?}"
    );

    // The agent restarts under dev-b: same container, same devices, none given twice.
    let container = b["status"]["containerStatuses"][0]["containerID"].clone();
    let plugin_log = c.lab.log_path("n2", "plugin")?;
    let registrations = || {
        std::fs::read_to_string(&plugin_log)
            .unwrap_or_default()
            .matches("registered with the kubelet")
            .count()
    };
    ensure!(registrations() == 1, "the plugin registered once so far");
    c.stop_agent("n2")?;
    c.start_agent("n2")?;
    // The Node and its counts still show the old kubelet's last status: wait for the new one
    // to serve the pod, and for the plugin to register with it (until then it refuses to
    // allocate, as upstream's device manager does).
    let mut seen = (Vec::new(), String::new());
    c.wait(
        Duration::from_secs(90),
        "dev-b through the restarted kubelet",
        |c| {
            seen = devices_in(c, "dev-b")?;
            Ok(true)
        },
    )?;
    ensure!(
        seen == (nodes_b.clone(), env_b),
        "dev-b lost its devices: {seen:?}"
    );
    c.wait(
        Duration::from_secs(30),
        "the plugin registering again",
        |_| Ok(registrations() == 2),
    )?;
    wait_offered(&c, &n2, ("4", "4"))?;
    let b = c.get("pod", "dev-b")?;
    ensure!(
        b["status"]["containerStatuses"][0]["containerID"] == container,
        "dev-b's container was replaced: {}",
        b["status"]
    );
    c.apply(&pod("dev-c", "1", "1"))?;
    c.wait_pod("dev-c", Duration::from_secs(120), "running", running)?;
    let (nodes_c, _) = devices_in(&c, "dev-c")?;
    ensure!(
        nodes_c.len() == 1 && !nodes_b.contains(&nodes_c[0]),
        "dev-c got {nodes_c:?}, dev-b holds {nodes_b:?}"
    );

    // The plugin dies: nothing allocatable, the pods' devices Unknown.
    c.lab.stop(first)?;
    wait_offered(&c, &n2, ("4", "0"))?;
    c.wait_pod("dev-b", Duration::from_secs(30), "devices Unknown", |p| {
        let status = &p["status"]["containerStatuses"][0]["allocatedResourcesStatus"][0];
        status["name"] == RESOURCE
            && status["resources"]
                .as_array()
                .is_some_and(|r| r.len() == 3 && r.iter().all(|d| d["health"] == "Unknown"))
    })?;
    // It comes back, registers again, and one device turns unhealthy.
    c.lab
        .spawn("n2", "plugin", &plugin(&["--unhealthy-after", "8s"]))?;
    wait_offered(&c, &n2, ("4", "4"))?;
    wait_offered(&c, &n2, ("4", "3"))?;

    // Bad input.
    let refused = c.lab.exec("n2", &plugin(&["--api-version", "v1alpha"]))?;
    ensure!(
        !refused.success() && refused.stderr.contains("is not supported by kubelet"),
        "wrong version: {refused:?}"
    );
    let mut bad_name = plugin(&[]);
    bad_name[4] = "dev".into();
    let refused = c.lab.exec("n2", &bad_name)?;
    ensure!(
        !refused.success()
            && refused
                .stderr
                .contains(r#"the ResourceName "dev" is invalid"#),
        "bad resource name: {refused:?}"
    );
    for (manifest, want) in [
        (pod("bad-unequal", "1", "2"), "must be equal to"),
        (pod("bad-fraction", "500m", "500m"), "must be an integer"),
    ] {
        let file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
        std::fs::write(file.path(), &manifest)?;
        let out = c.run(&["apply", "-f", &file.path().display().to_string()])?;
        ensure!(
            !out.success() && out.stderr.contains("is invalid") && out.stderr.contains(want),
            "{manifest}: {out:?}"
        );
    }
    Ok(())
}

//! Image garbage collection on a one-node lab cluster whose kubelet collects at any usage
//! (`--image-gc-high-threshold=1`) down to none (`--image-gc-low-threshold=0`): an image only a
//! deleted pod used is removed from the node's runtime, images running pods use stay (and so
//! do the pods), and since usage can never reach 0 % the Node gets upstream's
//! `FreeDiskSpaceFailed` warning.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};

const LAB: &str = "ekimggc";
const KEEP: &str = "192.168.64.1:5000/busybox:latest";
const ONCE: &str = "192.168.64.1:5000/web:v2";

/// The repo tags of the images the node's runtime holds (its image records).
fn stored_tags(node_dir: &Path) -> Result<Vec<String>> {
    let dir = node_dir.join("data/kubelet/runtime/images/images");
    let mut tags = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let record: serde_json::Value = serde_json::from_slice(&std::fs::read(entry?.path())?)?;
        for t in record["repo_tags"].as_array().into_iter().flatten() {
            tags.push(t.as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(tags)
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n\
         spec:\n  containers:\n  - name: main\n    image: {image}\n    \
         command: [sleep, '3600']\n"
    )
}

#[test]
fn unused_images_are_collected_and_used_ones_kept() -> Result<()> {
    let options = ClusterOptions {
        agent_args: &[
            "--kubelet-arg=image-gc-high-threshold=1",
            "--kubelet-arg=image-gc-low-threshold=0",
            // Long enough to cover a pull and the container's creation right after it.
            "--kubelet-arg=minimum-image-ttl-duration=5s",
            "--kubelet-arg=image-gc-period=1s",
        ],
        ..ClusterOptions::default()
    };
    let c = LabCluster::start(LAB, 1, options)?;
    let node_dir = c.lab.host("n1")?.dir.clone();
    c.apply(&pod("keep", KEEP))?;
    c.apply(&pod("once", ONCE))?;
    c.wait_pod("keep", Duration::from_secs(120), "running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    c.wait_pod("once", Duration::from_secs(120), "running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    // Two more collection passes (each fails to reach 0 % and says so on the Node), and the
    // images in use are all still there.
    let node = c.node_name("n1");
    let failures = |c: &LabCluster| -> Result<usize> {
        Ok(c.events_of(&node)?
            .iter()
            .filter(|(reason, _)| reason == "FreeDiskSpaceFailed")
            .count())
    };
    let before = failures(&c)?;
    c.wait(Duration::from_secs(60), "two more collection passes", |c| {
        Ok(failures(c)? >= before + 2)
    })?;
    let tags = stored_tags(&node_dir)?;
    ensure!(
        tags.iter().any(|t| t == ONCE) && tags.iter().any(|t| t == KEEP),
        "an image a running container uses was collected: {tags:?}"
    );

    c.kubectl(&["delete", "pod", "once", "--wait=true"])?;
    c.wait(
        Duration::from_secs(60),
        "the deleted pod's image to be collected",
        |_| Ok(!stored_tags(&node_dir)?.iter().any(|t| t == ONCE)),
    )?;
    let tags = stored_tags(&node_dir)?;
    ensure!(
        tags.iter().any(|t| t == KEEP),
        "the running pod's image went: {tags:?}"
    );
    let keep = c.get("pod", "keep")?;
    ensure!(
        keep["status"]["phase"] == "Running",
        "the pod whose image stayed: {}",
        keep["status"]
    );
    let events = c.events_of(&node)?;
    ensure!(
        events
            .iter()
            .any(|(reason, message)| reason == "FreeDiskSpaceFailed"
                && message.starts_with("Failed to garbage collect required amount of images.")),
        "no FreeDiskSpaceFailed event on {node}: {events:?}"
    );
    Ok(())
}

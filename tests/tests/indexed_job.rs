//! Indexed Jobs on a one-node lab cluster: a Job with `completionMode: Indexed`, 3 completions
//! 2 at a time, runs one pod per index whose container reads its index from
//! `JOB_COMPLETION_INDEX`; the Job completes with `completedIndexes: "0-2"`. An Indexed Job
//! without completions is refused with upstream's 422, and the completion mode of an existing
//! Job cannot change.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use serde_json::Value;

const LAB: &str = "ekidx";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn job(name: &str, completions: Option<u32>) -> String {
    let completions = completions
        .map(|c| format!("  completions: {c}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  \
         completionMode: Indexed\n{completions}  parallelism: 2\n  template:\n    spec:\n      \
         restartPolicy: Never\n      containers:\n      - name: main\n        \
         image: 192.168.64.1:5000/busybox:latest\n        \
         command: [sh, -c, 'echo index=$JOB_COMPLETION_INDEX']\n"
    )
}

fn complete(job: &Value) -> bool {
    job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Complete" && c["status"] == "True")
    })
}

#[test]
fn indexed_job_runs_each_index_once_and_completes() -> Result<()> {
    let c = LabCluster::start(LAB, 1, ClusterOptions::default())?;

    // Refused before anything runs: upstream's wording, as a 422 through kubectl apply.
    let refused = c
        .apply(&job("nocount", None))
        .err()
        .context("an Indexed Job without completions was accepted")?;
    let text = format!("{refused:#}");
    ensure!(
        text.contains("spec.completions: Required value: when completion mode is Indexed"),
        "unexpected refusal: {text}"
    );
    ensure!(
        !c.run(&["get", "job", "nocount"])?.success(),
        "the refused Job exists"
    );

    c.apply(&job("idx", Some(3)))?;
    let mut last = Value::Null;
    c.wait(Duration::from_secs(180), "job idx Complete", |c| {
        last = c.get("job", "idx")?;
        Ok(complete(&last))
    })
    .with_context(|| format!("last status of job idx: {}", last["status"]))?;
    ensure!(
        last["status"]["completedIndexes"] == "0-2",
        "completedIndexes: {}",
        last["status"]
    );
    ensure!(
        last["status"]["succeeded"] == 3,
        "succeeded: {}",
        last["status"]
    );

    // One succeeded pod per index, named and hosted by it, whose output is its own index.
    let pods = c.list("pods", &["-l", "batch.kubernetes.io/job-name=idx"])?;
    let mut by_index: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p["status"]["phase"] == "Succeeded") {
        let annotation = pod["metadata"]["annotations"][INDEX]
            .as_str()
            .with_context(|| format!("pod without index annotation: {}", pod["metadata"]))?;
        by_index
            .entry(annotation.to_owned())
            .or_default()
            .push(pod.clone());
    }
    ensure!(
        by_index.keys().map(String::as_str).eq(["0", "1", "2"]),
        "succeeded pods by index: {:?}",
        by_index.keys().collect::<Vec<_>>()
    );
    for (index, pods) in &by_index {
        ensure!(
            pods.len() == 1,
            "index {index} succeeded {} times",
            pods.len()
        );
        let pod = &pods[0];
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        ensure!(
            pod["metadata"]["labels"][INDEX] == index.as_str(),
            "pod {name} labels: {}",
            pod["metadata"]["labels"]
        );
        ensure!(
            name.starts_with(&format!("idx-{index}-"))
                && name.len() == format!("idx-{index}-").len() + 5,
            "pod name {name} for index {index}"
        );
        ensure!(
            pod["spec"]["hostname"] == format!("idx-{index}"),
            "pod {name} hostname: {}",
            pod["spec"]["hostname"]
        );
        let env = &pod["spec"]["containers"][0]["env"];
        ensure!(
            env.as_array()
                .is_some_and(|e| e.iter().any(|v| v["name"] == "JOB_COMPLETION_INDEX"
                    && v["valueFrom"]["fieldRef"]["fieldPath"]
                        == format!("metadata.annotations['{INDEX}']"))),
            "pod {name} env: {env}"
        );
        let output = c.container_output(pod, "main")?;
        ensure!(
            output.lines().any(|l| l.trim() == format!("index={index}")),
            "pod {name} (index {index}) printed: {output:?}"
        );
    }

    // kubectl's views: the completions column and the completion mode and indexes.
    let table = c.kubectl(&["get", "job", "idx"])?;
    ensure!(table.contains("3/3"), "kubectl get job: {table}");
    let described = c.kubectl(&["describe", "job", "idx"])?;
    let line = |key: &str| {
        described
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(str::to_owned)
    };
    ensure!(
        line("Completion Mode:").is_some_and(|l| l.trim_end().ends_with("Indexed")),
        "kubectl describe job: {described}"
    );
    ensure!(
        line("Completed Indexes:").is_some_and(|l| l.trim_end().ends_with("0-2")),
        "kubectl describe job: {described}"
    );

    // The completion mode of an existing Job is immutable.
    let out = c.run(&[
        "patch",
        "job",
        "idx",
        "--type=merge",
        "-p",
        r#"{"spec":{"completionMode":"NonIndexed"}}"#,
    ])?;
    ensure!(
        !out.success()
            && out
                .stderr
                .contains("spec.completionMode: Invalid value: \"NonIndexed\": field is immutable"),
        "changing completionMode: exit {:?}: {}",
        out.code,
        out.stderr
    );
    Ok(())
}

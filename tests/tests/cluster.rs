//! The whole cluster on a 3-node lab: `ekube server` on n1, `ekube agent` (kubelet, overlay,
//! proxy) on every node, real images from the lab registry, the real kubectl. One lab serves the
//! whole file, in phases that build on each other: n3 joins late (its DaemonSet pod follows),
//! and the last phase kills a node.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, WEB, is_ready};
use serde_json::Value;

const LAB: &str = "ekclus";

/// An HTTP request for busybox `nc` (Debian's static busybox `wget` crashes in containers);
/// the web pods answer with their hostname as the last line.
const GET: &str = r"printf 'GET / HTTP/1.0\r\n\r\n'";

const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["sleep", "3600"]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["true"]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: three}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "sleep 2"]}
"#;

fn names_of(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

/// Nodes running a Ready pod matching `selector`.
fn running_nodes(c: &LabCluster, selector: &str) -> Result<BTreeSet<String>> {
    let pods = c.list("pods", &["-l", selector])?;
    let running: Vec<Value> = pods
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Running" && is_ready(p))
        .collect();
    Ok(names(&running, |p| &p["spec"]["nodeName"]))
}

fn names(items: &[Value], field: impl Fn(&Value) -> &Value) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|i| field(i).as_str().map(str::to_owned))
        .collect()
}

/// Running, Ready, not terminating pods of the web Deployment.
fn ready_web_pods(c: &LabCluster) -> Result<Vec<Value>> {
    Ok(c.list("pods", &["-l", "app=web"])?
        .into_iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && p["status"]["phase"] == "Running"
                && is_ready(p)
        })
        .collect())
}

/// The ready addresses of the web Service's EndpointSlices.
fn slice_addresses(c: &LabCluster) -> Result<BTreeSet<String>> {
    let slices = c.list("endpointslices", &["-l", "kubernetes.io/service-name=web"])?;
    Ok(slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect())
}

/// `replicas` ready web pods and a slice listing exactly their IPs (else what is there instead,
/// as the error a timed-out wait reports).
fn converged(c: &LabCluster, replicas: usize) -> Result<bool> {
    let pods = ready_web_pods(c)?;
    let all = c.list("pods", &["-l", "app=web"])?;
    let ips = names(&pods, |p| &p["status"]["podIP"]);
    let slice = slice_addresses(c)?;
    if pods.len() == replicas && all.len() == replicas && slice == ips {
        return Ok(true);
    }
    let phases: Vec<String> = all
        .iter()
        .map(|p| {
            format!(
                "{} {} {}",
                p["metadata"]["name"], p["status"]["phase"], p["spec"]["nodeName"]
            )
        })
        .collect();
    anyhow::bail!(
        "{} ready of {phases:?}; ready IPs {ips:?}, slice {slice:?}",
        pods.len()
    )
}

#[test]
fn a_three_node_cluster_serves_scales_and_heals() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        3,
        ClusterOptions {
            controller_manager_args: &["node-monitor-grace-period=20s", "pod-eviction-timeout=10s"],
            later: &["n3"],
            ..Default::default()
        },
    )?;

    // Workloads that run on their own while the rest goes on: a DaemonSet (one pod per node,
    // n3 included once it joins), a Job of 3 completions 2 at a time, a CronJob every minute.
    c.apply(WORKLOADS)?;
    c.wait(
        Duration::from_secs(90),
        "a DaemonSet pod running on n1 and n2",
        |c| {
            Ok(running_nodes(c, "app=everywhere")?
                == names_of(&[c.node_name("n1"), c.node_name("n2")]))
        },
    )?;
    c.start_agent("n3")?;
    c.wait(
        Duration::from_secs(90),
        "the DaemonSet pod on n3, which joined later",
        |c| Ok(running_nodes(c, "app=everywhere")?.len() == 3),
    )?;
    // DaemonSet pods tolerate `not-ready`; the placement checks below need n3 untainted.
    c.wait_nodes_schedulable(3)?;

    // Node IPAM: one distinct /24 of the cluster CIDR per node.
    let mut cidrs = BTreeSet::new();
    c.wait(Duration::from_secs(30), "a podCIDR on every node", |c| {
        cidrs = names(&c.list("nodes", &[])?, |n| &n["spec"]["podCIDR"]);
        Ok(cidrs.len() == 3)
    })?;
    ensure!(
        cidrs
            .iter()
            .all(|s| s.starts_with("10.244.") && s.ends_with(".0/24")),
        "podCIDRs {cidrs:?}"
    );

    placement_waits_for_a_fitting_node(&c)?;

    // Three replicas land one per node; the slice lists exactly the ready pod IPs.
    c.apply(WEB)?;
    c.wait(
        Duration::from_secs(120),
        "3 ready web pods in the slice",
        |c| converged(c, 3),
    )?;
    let pods = ready_web_pods(&c)?;
    let spread = names(&pods, |p| &p["spec"]["nodeName"]);
    ensure!(
        spread.len() == 3,
        "replicas not spread over the nodes: {spread:?}"
    );

    // From a pod on n1: the ClusterIP (eBPF socket LB in the agent's cgroup) and every web pod
    // by IP, across nodes through the overlay.
    let cluster_ip = c.get("service", "web")?["spec"]["clusterIP"]
        .as_str()
        .context("clusterIP")?
        .to_owned();
    let targets: Vec<String> = std::iter::repeat_n(format!("{cluster_ip}:8080"), 6)
        .chain(
            pods.iter()
                .filter_map(|p| p["status"]["podIP"].as_str())
                .map(|ip| format!("{ip}:80")),
        )
        .collect();
    let script = format!(
        "for t in {}; do a=$({GET} | nc -w 5 ${{t%:*}} ${{t#*:}} | tail -n1); echo \"$t ${{a:-FAILED}}\"; done; \
         echo DONE; sleep 3600",
        targets.join(" ")
    );
    let n1 = format!("{LAB}-n1");
    c.apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"client"}},
            "spec":{{"nodeName":"{n1}","containers":[{{"name":"c","image":"192.168.64.1:5000/busybox:latest",
            "command":["sh","-c",{}]}}]}}}}"#,
        serde_json::to_string(&script)?
    ))?;
    let mut output = String::new();
    c.wait(Duration::from_secs(60), "the client pod's requests", |c| {
        output = c.container_output(&c.get("pod", "client")?, "c")?;
        Ok(output.contains("DONE"))
    })?;
    let answers: Vec<(&str, &str)> = output.lines().filter_map(|l| l.split_once(' ')).collect();
    ensure!(
        !output.contains("FAILED"),
        "requests from the client pod failed:\n{output}"
    );
    let pod_names = names(&pods, |p| &p["metadata"]["name"]);
    for (target, answer) in &answers {
        ensure!(
            pod_names.contains(*answer),
            "{target} answered {answer:?}, not a web pod ({pod_names:?})"
        );
    }
    for pod in &pods {
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        ensure!(
            answers.contains(&(&format!("{ip}:80"), name)),
            "pod {name} at {ip} did not answer as itself:\n{output}"
        );
    }

    node_ports_answer_from_outside(&c, &pod_names)?;
    rolling_updates_drop_nothing(&c, &cluster_ip)?;

    // Scaling converges, the slice with it.
    for replicas in [10, 2] {
        c.kubectl(&[
            "scale",
            "deployment",
            "web",
            &format!("--replicas={replicas}"),
        ])?;
        c.wait(
            Duration::from_secs(120),
            &format!("{replicas} ready web pods in the slice"),
            |c| converged(c, replicas),
        )?;
    }
    c.kubectl(&["scale", "deployment", "web", "--replicas=3"])?;
    c.wait(Duration::from_secs(120), "3 ready web pods again", |c| {
        converged(c, 3)
    })?;

    // The Job completed its 3 runs; the CronJob made Jobs and keeps one finished one.
    c.wait(
        Duration::from_secs(60),
        "job/three Complete with 3 succeeded",
        |c| {
            let job = c.get("job", "three")?;
            let complete = job["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|k| k["type"] == "Complete" && k["status"] == "True")
            });
            Ok(complete && job["status"]["succeeded"] == 3)
        },
    )?;
    c.wait(
        Duration::from_secs(90),
        "a finished Job of cronjob/tick",
        |c| {
            let cron = c.get("cronjob", "tick")?;
            Ok(!cron["status"]["lastSuccessfulTime"].is_null())
        },
    )?;
    let finished_ticks = |c: &LabCluster| -> Result<BTreeSet<String>> {
        let jobs: Vec<Value> = c
            .list("jobs", &[])?
            .into_iter()
            .filter(|j| {
                j["metadata"]["ownerReferences"][0]["name"] == "tick"
                    && !j["status"]["completionTime"].is_null()
            })
            .collect();
        Ok(names(&jobs, |j| &j["metadata"]["name"]))
    };
    let first_tick = finished_ticks(&c)?
        .into_iter()
        .next()
        .context("a finished Job of cronjob/tick")?;

    owners_and_namespaces_clean_up(&c)?;

    // A node dies: NotReady within 50 s, its pods evicted after the shortened timeout, and the
    // Deployment back at full strength on the other two.
    let n3 = format!("{LAB}-n3");
    let agent = c
        .lab
        .pids("n3", "agent")
        .into_iter()
        .next()
        .context("n3's agent pid")?;
    c.lab.stop(agent)?;
    c.wait(Duration::from_secs(50), "n3 NotReady", |c| {
        Ok(!is_ready(&c.get("node", &n3)?))
    })?;
    c.wait(
        Duration::from_secs(120),
        "3 ready web pods on n1 and n2",
        |c| {
            let pods = ready_web_pods(c)?;
            Ok(pods.len() == 3 && pods.iter().all(|p| p["spec"]["nodeName"] != n3.as_str()))
        },
    )?;

    // By now the CronJob ran again: its history limit of one finished Job removed the first.
    c.wait(
        Duration::from_secs(150),
        &format!("job {first_tick} replaced by a newer finished one"),
        |c| {
            let finished = finished_ticks(c)?;
            Ok(finished.len() == 1 && !finished.contains(&first_tick))
        },
    )?;
    Ok(())
}

/// `kubectl set image`, `kubectl apply` of a changed template and `kubectl rollout undo` while a
/// pod sends requests through the ClusterIP: none fails, and the pod count never leaves the
/// strategy's bounds (3 replicas, maxSurge 1, maxUnavailable 0).
fn rolling_updates_drop_nothing(c: &LabCluster, cluster_ip: &str) -> Result<()> {
    let script = format!(
        "while true; do a=$({GET} | nc -w 2 {cluster_ip} 8080 | tail -n1); \
         if [ -n \"$a\" ]; then echo OK; else echo FAIL $(date +%T); fi; sleep 0.1; done"
    );
    c.apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"traffic"}},
            "spec":{{"nodeName":"{}","terminationGracePeriodSeconds":1,"containers":[{{"name":"c",
            "image":"192.168.64.1:5000/busybox:latest","command":["sh","-c",{}]}}]}}}}"#,
        c.node_name("n2"),
        serde_json::to_string(&script)?
    ))?;
    let output = |c: &LabCluster| c.container_output(&c.get("pod", "traffic")?, "c");
    c.wait(
        Duration::from_secs(60),
        "the traffic pod's first answers",
        |c| Ok(output(c)?.matches("OK").count() >= 5),
    )?;

    let rollouts: [(&str, &dyn Fn() -> Result<String>); 3] = [
        ("set image", &|| {
            c.kubectl(&[
                "set",
                "image",
                "deployment/web",
                "web=192.168.64.1:5000/web:v2",
            ])
        }),
        ("apply of a changed template", &|| {
            c.apply(
                &WEB.replace("web:latest", "web:v2")
                    .replace("periodSeconds: 1", "periodSeconds: 2"),
            )
        }),
        ("rollout undo", &|| {
            c.kubectl(&["rollout", "undo", "deployment/web"])
        }),
    ];
    for (what, start) in rollouts {
        let before = c.get("deployment", "web")?["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0);
        start()?;
        c.wait(
            Duration::from_secs(120),
            &format!("the rollout of {what}, within its bounds"),
            |c| {
                let pods: Vec<Value> = c
                    .list("pods", &["-l", "app=web"])?
                    .into_iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .collect();
                let ready = pods.iter().filter(|p| is_ready(p)).count();
                ensure!(
                    pods.len() <= 4,
                    "{what}: {} pods, more than replicas + maxSurge",
                    pods.len()
                );
                ensure!(
                    ready >= 3 || pods.len() < 3,
                    "{what}: only {ready} ready pods, fewer than replicas - maxUnavailable"
                );
                let d = c.get("deployment", "web")?;
                let status = &d["status"];
                Ok(d["metadata"]["generation"].as_i64().unwrap_or(0) > before
                    && status["observedGeneration"] == d["metadata"]["generation"]
                    && status["updatedReplicas"] == 3
                    && status["replicas"] == 3
                    && status["availableReplicas"] == 3)
            },
        )?;
    }
    let image =
        c.get("deployment", "web")?["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    ensure!(
        image == "192.168.64.1:5000/web:v2",
        "rollout undo went back to {image}, not to the previous template"
    );

    let log = output(c)?;
    c.kubectl(&["delete", "pod", "traffic", "--wait=false"])?;
    let failed: Vec<&str> = log.lines().filter(|l| l.starts_with("FAIL")).collect();
    ensure!(
        failed.is_empty(),
        "{} of {} requests failed during the rollouts: {failed:?}",
        failed.len(),
        log.lines().count()
    );
    Ok(())
}

/// Deleting with `--cascade=orphan` leaves the dependents, background deletion takes them,
/// and deleting a namespace removes everything in it (the pods really stop).
fn owners_and_namespaces_clean_up(c: &LabCluster) -> Result<()> {
    let sleeper = |name: &str, namespace: &str| {
        format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}","namespace":"{namespace}"}},
            "spec":{{"replicas":2,"selector":{{"matchLabels":{{"app":"{name}"}}}},"template":{{"metadata":{{"labels":{{"app":"{name}"}}}},
            "spec":{{"terminationGracePeriodSeconds":1,"containers":[{{"name":"main","image":"192.168.64.1:5000/busybox:latest","command":["sleep","3600"]}}]}}}}}}}}"#
        )
    };
    c.kubectl(&["create", "namespace", "scratch"])?;
    c.apply(&sleeper("gc", "default"))?;
    c.apply(&sleeper("doomed", "scratch"))?;
    let running = |c: &LabCluster, ns: &str, app: &str| -> Result<usize> {
        let pods = c.list("pods", &["-n", ns, "-l", &format!("app={app}")])?;
        Ok(pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count())
    };
    c.wait(
        Duration::from_secs(90),
        "2 running pods of gc and of scratch/doomed",
        |c| Ok(running(c, "default", "gc")? == 2 && running(c, "scratch", "doomed")? == 2),
    )?;

    c.kubectl(&["delete", "deployment", "gc", "--cascade=orphan"])?;
    let replicasets = |c: &LabCluster| c.list("replicasets", &["-l", "app=gc"]);
    c.wait(
        Duration::from_secs(30),
        "the orphaned ReplicaSet without its owner",
        |c| {
            let sets = replicasets(c)?;
            Ok(sets.len() == 1
                && sets[0]["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|o| o.is_empty()))
        },
    )?;
    ensure!(
        running(c, "default", "gc")? == 2,
        "orphan deletion took the pods"
    );
    let set = replicasets(c)?[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    c.kubectl(&["delete", "replicaset", &set, "--cascade=background"])?;
    c.wait(
        Duration::from_secs(60),
        "the ReplicaSet's pods gone after background deletion",
        |c| Ok(c.list("pods", &["-l", "app=gc"])?.is_empty()),
    )?;

    c.kubectl(&["delete", "namespace", "scratch", "--wait=false"])?;
    c.wait(
        Duration::from_secs(90),
        "namespace scratch and everything in it gone",
        |c| {
            let namespaces = c.list("namespaces", &[])?;
            Ok(!namespaces
                .iter()
                .any(|n| n["metadata"]["name"] == "scratch"))
        },
    )?;
    Ok(())
}

/// From the external namespace, 300 connections to each node's :32143 all succeed, and each
/// node's connections reach pods on every node (the eBPF NodePort path, remote backends
/// through the overlay).
fn node_ports_answer_from_outside(c: &LabCluster, pods: &BTreeSet<String>) -> Result<()> {
    for node in c.lab.nodes() {
        // One line per attempt: the answer (the web pods end theirs with a newline) or nothing.
        let script = format!(
            "for i in $(seq 300); do curl -s -m 3 http://{}:32143/ || echo; done",
            node.ip
        );
        let out = c.lab.exec("ext", &["sh", "-c", &script])?;
        let answers: Vec<&str> = out.stdout.lines().collect();
        let ok = answers.iter().filter(|a| pods.contains(**a)).count();
        let failed: Vec<(usize, &str)> = answers
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, a)| !pods.contains(*a))
            .collect();
        ensure!(
            ok == 300,
            "{}:32143 answered {ok} of 300 from outside; failed (attempt, answer): {failed:?}",
            node.ip
        );
        let seen: BTreeSet<&str> = answers.into_iter().filter(|a| pods.contains(*a)).collect();
        ensure!(
            seen.len() == pods.len(),
            "{}:32143 reached only {seen:?} of {pods:?}",
            node.ip
        );
    }
    Ok(())
}

/// A pod whose nodeSelector nobody matches stays Pending with the scheduler's wording until a
/// node is labelled; one asking for more CPU than any node has stays Pending as Insufficient.
fn placement_waits_for_a_fitting_node(c: &LabCluster) -> Result<()> {
    c.apply(
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"picky"},
            "spec":{"nodeSelector":{"disk":"ssd"},"terminationGracePeriodSeconds":1,"containers":[{"name":"main",
            "image":"192.168.64.1:5000/busybox:latest","command":["sleep","3600"]}]}}"#,
    )?;
    c.apply(
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"greedy"},
            "spec":{"terminationGracePeriodSeconds":1,"containers":[{"name":"main",
            "image":"192.168.64.1:5000/busybox:latest","command":["sleep","3600"],
            "resources":{"requests":{"cpu":"500"}}}]}}"#,
    )?;
    let failed_scheduling = |c: &LabCluster, pod: &str| -> Result<String> {
        let events = c.list("events", &[])?;
        let last = events
            .iter()
            .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == "FailedScheduling")
            .filter_map(|e| e["message"].as_str())
            .next_back();
        Ok(last.unwrap_or_default().to_owned())
    };
    c.wait(Duration::from_secs(30), "FailedScheduling for both pods", |c| {
        let picky = failed_scheduling(c, "picky")?;
        let greedy = failed_scheduling(c, "greedy")?;
        // Kubernetes' wording, which goes on with what preemption could do.
        ensure!(
            picky.is_empty() || picky.starts_with("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."),
            "picky: {picky}"
        );
        ensure!(greedy.is_empty() || greedy.starts_with("0/3 nodes are available: 3 Insufficient cpu."), "greedy: {greedy}");
        Ok(!picky.is_empty() && !greedy.is_empty())
    })?;
    for pod in ["picky", "greedy"] {
        let p = c.get("pod", pod)?;
        ensure!(
            p["status"]["phase"] == "Pending" && p["spec"]["nodeName"].is_null(),
            "{pod} was placed: {}",
            p["spec"]
        );
    }
    let n2 = c.node_name("n2");
    c.kubectl(&["label", "node", &n2, "disk=ssd"])?;
    c.wait(
        Duration::from_secs(60),
        "picky Running on the labelled node",
        |c| {
            let p = c.get("pod", "picky")?;
            Ok(p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == n2.as_str())
        },
    )?;
    c.kubectl(&["delete", "pod", "picky", "greedy", "--wait=false"])?;
    Ok(())
}

//! A highly available control plane on a three-node lab: an etcd member on each node (TLS with
//! the lab's etcd CA), `ekube init --upload-certs` on n1 and `ekube join --control-plane` on
//! n2 and n3 (so three servers), every agent with its API server load balancer.
//!
//! While 16 clients create, update and delete 1,000 ConfigMaps through the three servers
//! (`ha-churn`, from outside the cluster), the server holding the controller-manager's and
//! scheduler's leases and the etcd member of another node are killed with SIGKILL, and a
//! Deployment is rolled. Afterwards: every acknowledged write is there, no resourceVersion
//! was given twice, every watcher that had to reconnect missed no event, the leases moved to a
//! survivor within 20 s, the rollout completed, NodePort traffic from outside was answered
//! throughout, and the node whose server died kept its pods and its heartbeat. Then a server
//! stopped cleanly leaves the endpoints at once, and with two of three etcd members down a
//! write is refused (503/504 with a Status) within the request timeout, and works again
//! once quorum is back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster, WEB, is_ready};
use ekube_tests::{sibling_bin, wait_for};
use serde_json::Value;

const LAB: &str = "ekha";
const NAMESPACE: &str = "churn";
const OBJECTS: usize = 1000;

/// The holders of the controller-manager's and the scheduler's leases.
fn lease_holders(c: &LabCluster) -> Result<Vec<String>> {
    ["kube-controller-manager", "kube-scheduler"]
        .iter()
        .map(|name| {
            let lease = c.kubectl(&["get", "lease", "-n", "kube-system", name, "-o", "json"])?;
            let lease: Value = serde_json::from_str(&lease)?;
            Ok(lease["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or_default()
                .to_string())
        })
        .collect()
}

/// Every pod's uid and restart count, by `namespace/name`.
fn pod_restarts(c: &LabCluster) -> Result<BTreeMap<String, (String, i64)>> {
    Ok(c.list("pods", &["-A"])?
        .iter()
        .map(|p| {
            let restarts = p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["restartCount"].as_i64().unwrap_or(0))
                .sum();
            (
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or_default(),
                    p["metadata"]["name"].as_str().unwrap_or_default()
                ),
                (
                    p["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    restarts,
                ),
            )
        })
        .collect())
}

#[test]
fn losing_a_server_and_an_etcd_member_loses_nothing() -> Result<()> {
    let mut c = LabCluster::start(
        LAB,
        3,
        ClusterOptions {
            ha: true,
            ..Default::default()
        },
    )?;
    let hosts: Vec<_> = c.lab.nodes().cloned().collect();

    // Three servers, each in the `kubernetes` EndpointSlice; the joined hosts are control-plane
    // nodes; the uploaded certificates are owned by a short-lived token.
    let ips: BTreeSet<String> = hosts.iter().map(|h| h.ip.to_string()).collect();
    c.wait(
        Duration::from_secs(30),
        "every server in the kubernetes EndpointSlice",
        |c| Ok(slice_addresses(c)? == ips),
    )?;
    for node in c.list("nodes", &[])? {
        ensure!(
            node["metadata"]["labels"]
                .get("node-role.kubernetes.io/control-plane")
                .is_some(),
            "node {} is not marked as a control-plane node",
            node["metadata"]["name"]
        );
    }
    let certs = c.kubectl(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        "kubeadm-certs",
        "-o",
        "json",
    ])?;
    let certs: Value = serde_json::from_str(&certs)?;
    ensure!(
        certs["metadata"]["ownerReferences"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("bootstrap-token-")),
        "kubeadm-certs is not owned by a bootstrap token: {}",
        certs["metadata"]
    );
    ensure!(
        !certs["data"]["ca.key"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "kubeadm-certs holds no ca.key"
    );
    let members = c.lab.exec(
        "n1",
        &ekube_lab::etcd::etcdctl_argv(
            &c.lab.config().lab_dir(),
            &ekube_lab::etcd::endpoints(&hosts),
            &["member", "list"],
        ),
    )?;
    ensure!(
        members.success() && members.stdout.matches("started").count() == 3,
        "etcd member list: {}{}",
        members.stdout,
        members.stderr
    );

    // A wrong certificate key opens nothing, and leaves nothing behind.
    let spare = c.lab.config().lab_dir().join("spare");
    std::fs::create_dir_all(&spare)?;
    let vars = c.lab.config().vars.clone();
    let at = |p: &str| spare.join(p).display().to_string();
    let wrong_key = "cd".repeat(32);
    let out = c.lab.exec(
        "ext",
        &[
            ekube_tests::ekube_bin().display().to_string().as_str(),
            "join",
            "192.168.64.10:6443",
            "--token",
            &vars["token"],
            "--discovery-token-ca-cert-hash",
            &vars["ca_hash"],
            "--control-plane",
            "--certificate-key",
            &wrong_key,
            "--apiserver-advertise-address",
            "192.168.64.100",
            "--data-dir",
            &at("data"),
            "--cert-dir",
            &at("pki"),
            "--node-name",
            "spare",
            "--foreground",
            "--",
            "--kubeconfig",
            &at("kubelet.conf"),
        ],
    )?;
    let said = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        !out.success() && said.contains("does not open with this certificate key"),
        "a join with a wrong certificate key: {said}"
    );
    for left in ["pki/ca.key", "kubelet.conf", "bootstrap-kubelet.conf"] {
        ensure!(
            !spare.join(left).exists(),
            "a join with a wrong certificate key left {left}"
        );
    }

    // A workload, and traffic to its NodePort on every node from outside.
    c.apply(WEB)?;
    c.wait(Duration::from_secs(120), "3 ready web pods", |c| {
        let pods = c.list("pods", &["-l", "app=web"])?;
        Ok(pods.len() == 3 && pods.iter().all(is_ready))
    })?;
    let probe = format!(
        "while true; do for ip in {}; do \
         if curl -s -m 2 -o /dev/null http://$ip:32143/; then echo OK; \
         else echo FAIL $ip $(date +%T.%N); fi; done; sleep 0.05; done",
        hosts
            .iter()
            .map(|h| h.ip.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let probe_pid = c
        .lab
        .spawn("ext", "nodeport-probe", &["sh", "-c", &probe])?;
    let pods_before = pod_restarts(&c)?;

    // The victims: the server holding the leases, and the etcd member of another node.
    let holders = lease_holders(&c)?;
    let victim = hosts
        .iter()
        .find(|h| holders[0].ends_with(&format!("_{}:6443", h.ip)))
        .with_context(|| format!("no lab node holds the lease: {holders:?}"))?
        .clone();
    let etcd_victim = hosts
        .iter()
        .find(|h| h.short != victim.short)
        .expect("three nodes")
        .clone();
    let survivor = hosts
        .iter()
        .find(|h| h.short != victim.short)
        .expect("three nodes");
    c.use_kubeconfig(survivor.dir.join("admin.conf"));

    c.kubectl(&["create", "namespace", NAMESPACE])?;
    let out = c.lab.config().lab_dir().join("churn.json");
    let servers = hosts
        .iter()
        .map(|h| format!("https://{}:6443", h.ip))
        .collect::<Vec<_>>()
        .join(",");
    let churn_pid = c.lab.spawn(
        "ext",
        "churn",
        &[
            sibling_bin("ha-churn").display().to_string(),
            "--kubeconfig".into(),
            survivor.dir.join("admin.conf").display().to_string(),
            "--servers".into(),
            servers,
            "--clients".into(),
            "16".into(),
            "--objects".into(),
            OBJECTS.to_string(),
            "--namespace".into(),
            NAMESPACE.into(),
            "--out".into(),
            out.display().to_string(),
        ],
    )?;
    let progress = |out: &PathBuf| -> u64 {
        std::fs::read_to_string(out.with_extension("progress"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(120), "the writers to get going", || {
        std::thread::sleep(Duration::from_millis(50));
        Ok(progress(&out) >= 150)
    })?;

    // The failure, under load.
    let server_pid: u32 = std::fs::read_to_string(victim.dir.join("run/ekube/server.pid"))?
        .trim()
        .parse()?;
    let etcd_pid = *c
        .lab
        .pids(&etcd_victim.short, "etcd")
        .first()
        .context("no etcd member runs on the chosen node")?;
    // Both were started by this lab (the server by `ekube join` or `init` on the victim).
    let status = std::process::Command::new("kill")
        .args(["-9", &server_pid.to_string(), &etcd_pid.to_string()])
        .status()?;
    let killed = Instant::now();
    ensure!(status.success(), "kill -9 {server_pid} {etcd_pid} failed");
    let written_at_kill = progress(&out);
    let victim_identity = holders[0].clone();
    let mut rolled = false;
    let mut moved = None;
    while moved.is_none() {
        if !rolled {
            rolled = c
                .kubectl(&[
                    "set",
                    "image",
                    "deployment/web",
                    "web=192.168.64.1:5000/web:v2",
                ])
                .is_ok();
        }
        if let Ok(now) = lease_holders(&c)
            && now.iter().all(|h| !h.is_empty() && *h != victim_identity)
        {
            moved = Some((killed.elapsed(), now));
        }
        ensure!(
            killed.elapsed() < Duration::from_secs(40),
            "the leases stayed with {victim_identity} for 40 s after its server died"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (lease_moved, new_holders) = moved.expect("set above");
    ensure!(
        lease_moved <= Duration::from_secs(20),
        "the leases moved to {new_holders:?} only {lease_moved:?} after the server died"
    );
    ensure!(
        rolled,
        "the Deployment could not be rolled during the failure"
    );
    eprintln!("the leases moved to {new_holders:?} {lease_moved:?} after the server died");

    wait_for(Duration::from_secs(300), "the writers to finish", || {
        std::thread::sleep(Duration::from_millis(200));
        Ok(c.lab.pids("ext", "churn").is_empty())
    })?;
    let log = std::fs::read_to_string(c.lab.log_path("ext", "churn")?)?;
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&out)
            .with_context(|| format!("ha-churn (pid {churn_pid}) wrote no report: {log}"))?,
    )?;
    ensure!(
        written_at_kill < OBJECTS as u64,
        "the writers were done before the failure"
    );
    check_writes(&c, &report)?;
    eprintln!(
        "writes: {} acknowledged, {} uncertain, {} attempts retried, {} ms; watchers \
         reconnected {:?} times",
        report["acknowledged"].as_array().map_or(0, Vec::len),
        report["uncertain"].as_array().map_or(0, Vec::len),
        report["retried"],
        report["writes_ms"],
        report["watchers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w["reconnects"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>()
    );

    c.wait(Duration::from_secs(120), "the rollout to complete", |c| {
        let d = c.get("deployment", "web")?;
        let status = &d["status"];
        Ok(status["observedGeneration"] == d["metadata"]["generation"]
            && status["updatedReplicas"] == 3
            && status["replicas"] == 3
            && status["availableReplicas"] == 3
            && d["spec"]["template"]["spec"]["containers"][0]["image"]
                == "192.168.64.1:5000/web:v2")
    })?;

    // The datapath never depended on a server: NodePort answered throughout.
    c.lab.stop(probe_pid)?;
    let probes = std::fs::read_to_string(c.lab.log_path("ext", "nodeport-probe")?)?;
    let failed: Vec<&str> = probes.lines().filter(|l| l.starts_with("FAIL")).collect();
    ensure!(
        probes.lines().filter(|l| *l == "OK").count() > 100,
        "too few NodePort probes: {probes}"
    );
    ensure!(
        failed.is_empty(),
        "{} of {} NodePort requests failed: {failed:?}",
        failed.len(),
        probes.lines().count()
    );
    eprintln!(
        "NodePort: {} requests from outside, none failed",
        probes.lines().count()
    );

    // The agents failed over without restarting anything: the pods that are not the rolled
    // Deployment's are the same pods, never restarted, and the node whose server died still
    // renews its heartbeat.
    let pods_after = pod_restarts(&c)?;
    for (pod, before) in &pods_before {
        if pod.starts_with("default/web-") {
            continue;
        }
        ensure!(
            pods_after.get(pod) == Some(before),
            "pod {pod} changed across the failure: {before:?} → {:?}",
            pods_after.get(pod)
        );
    }
    let node = c.node_name(&victim.short);
    let renewed = |c: &LabCluster| -> Result<String> {
        let lease = c.kubectl(&["get", "lease", "-n", "kube-node-lease", &node, "-o", "json"])?;
        let lease: Value = serde_json::from_str(&lease)?;
        Ok(lease["spec"]["renewTime"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let first = renewed(&c)?;
    c.wait(
        Duration::from_secs(30),
        &format!("node {node} (its server dead) to renew its lease"),
        |c| Ok(renewed(c)? != first),
    )?;
    ensure!(
        is_ready(&c.get("node", &node)?),
        "node {node} is not Ready after its server died"
    );

    // A server that stops cleanly leaves the endpoints at once, not when its record expires.
    let third = hosts
        .iter()
        .find(|h| h.short != victim.short && h.short != survivor.short)
        .expect("three nodes");
    let third_pid = std::fs::read_to_string(third.dir.join("run/ekube/server.pid"))?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", third_pid.trim()])
        .status()?;
    ensure!(status.success(), "kill -TERM {third_pid}");
    let survivor_only = BTreeSet::from([survivor.ip.to_string()]);
    let stopped = Instant::now();
    c.wait(
        Duration::from_secs(5),
        "a cleanly stopped server to leave the kubernetes EndpointSlice",
        |c| Ok(slice_addresses(c)? == survivor_only),
    )?;
    eprintln!(
        "a stopped server left the endpoints after {:?}",
        stopped.elapsed()
    );

    // Quorum lost (two of three members down): a write is answered 503 or 504 with a Status,
    // within the request timeout; quorum back, writes work again.
    let etcd_pid = *c
        .lab
        .pids(&victim.short, "etcd")
        .first()
        .context("no etcd member runs on the victim's node")?;
    c.lab.stop(etcd_pid)?;
    let (code, body, took) = post_configmap(&c, survivor, "quorum-lost")?;
    ensure!(
        (code == 503 || code == 504) && body.contains("\"kind\":\"Status\""),
        "a write without quorum: {code} {body}"
    );
    // The request timeout (`--datastore-timeout`, 10 s) and a little.
    ensure!(
        took < Duration::from_secs(13),
        "a write without quorum took {took:?} to be refused"
    );
    eprintln!("without quorum a write was refused with {code} after {took:?}");
    c.lab.restart_etcd_member(&victim.short)?;
    c.lab.restart_etcd_member(&etcd_victim.short)?;
    wait_for(
        Duration::from_secs(60),
        "writes to work with quorum back",
        || {
            let (code, body, _) = post_configmap(&c, survivor, "quorum-back")?;
            if code != 201 && code != 409 {
                eprintln!("not yet: {code} {body}");
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(code == 201 || code == 409)
        },
    )?;
    Ok(())
}

/// The addresses of the `kubernetes` EndpointSlice.
fn slice_addresses(c: &LabCluster) -> Result<BTreeSet<String>> {
    let slice = c.get("endpointslice", "kubernetes")?;
    Ok(slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
        .collect())
}

/// Creates ConfigMap `name` through `host`'s server with curl (no client retries): the status
/// code, the body and how long it took.
fn post_configmap(
    c: &LabCluster,
    host: &ekube_lab::Host,
    name: &str,
) -> Result<(u16, String, Duration)> {
    let pki = |f: &str| host.dir.join("pki").join(f).display().to_string();
    let body =
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
    let started = Instant::now();
    let out = c.lab.exec(
        "n1",
        &[
            "curl",
            "-sS",
            "-m",
            "40",
            "--cacert",
            &pki("ca.crt"),
            "--cert",
            &pki("admin.crt"),
            "--key",
            &pki("admin.key"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            "-w",
            "\n%{http_code}",
            &format!(
                "https://{}:6443/api/v1/namespaces/default/configmaps",
                host.ip
            ),
        ],
    )?;
    let took = started.elapsed();
    let (text, code) = out
        .stdout
        .rsplit_once('\n')
        .with_context(|| format!("curl: {}{}", out.stdout, out.stderr))?;
    Ok((code.trim().parse().unwrap_or(0), text.to_string(), took))
}

/// What the writers were told happened, happened, once; and every watcher saw it.
fn check_writes(c: &LabCluster, report: &Value) -> Result<()> {
    let final_list = c.list("configmaps", &["-n", NAMESPACE])?;
    let stored: BTreeMap<String, (String, String)> = final_list
        .iter()
        .map(|cm| {
            (
                cm["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                (
                    cm["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    cm["data"]["v"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    let ops = |key: &str| -> Vec<(String, String, String)> {
        report[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                (
                    w["name"].as_str().unwrap_or_default().to_string(),
                    w["op"].as_str().unwrap_or_default().to_string(),
                    w["rv"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let (acknowledged, uncertain) = (ops("acknowledged"), ops("uncertain"));
    ensure!(
        acknowledged.len() + uncertain.len() == OBJECTS * 2 + OBJECTS.div_ceil(3) + 1,
        "{} acknowledged and {} uncertain writes; every write must have been done",
        acknowledged.len(),
        uncertain.len()
    );

    // Every write acknowledged or found done is in the store.
    let mut deleted = BTreeSet::new();
    let mut updated = BTreeSet::new();
    for (name, op, _) in acknowledged.iter().chain(&uncertain) {
        match op.as_str() {
            "delete" => {
                deleted.insert(name.clone());
            }
            "update" => {
                updated.insert(name.clone());
            }
            _ => {}
        }
    }
    for j in 0..OBJECTS {
        let name = format!("cm-{j:04}");
        match (deleted.contains(&name), stored.get(&name)) {
            (true, Some(_)) => bail!("{name} was deleted, and is there"),
            (false, None) => bail!("{name} was written, and is gone"),
            (false, Some((_, v))) if updated.contains(&name) && v != "1" => {
                bail!("{name}'s update was acknowledged, and it holds v={v}")
            }
            _ => {}
        }
    }

    // No resourceVersion was given twice, and each object's grew.
    let mut seen = BTreeMap::new();
    let mut by_object: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (name, op, rv) in &acknowledged {
        if rv.is_empty() {
            continue;
        }
        if let Some(other) = seen.insert(rv.clone(), (name.clone(), op.clone())) {
            bail!("resourceVersion {rv} was given to {op} {name} and to {other:?}");
        }
        if op != "delete" {
            by_object.entry(name).or_default().push(rv.parse()?);
        }
    }
    for (name, rvs) in by_object {
        ensure!(
            rvs.windows(2).all(|w| w[0] < w[1]),
            "{name}'s resourceVersions went back: {rvs:?}"
        );
    }

    // Each watcher ends where the store is, and one that resumed (not relisted) saw every
    // acknowledged write.
    let wanted: BTreeMap<&String, &String> = stored
        .iter()
        .filter(|(name, _)| name.starts_with("cm-") || *name == "zz-end")
        .map(|(name, (rv, _))| (name, rv))
        .collect();
    for w in report["watchers"].as_array().into_iter().flatten() {
        ensure!(
            w["error"].is_null(),
            "watcher {}: {}",
            w["server"],
            w["error"]
        );
        let view: BTreeMap<String, String> = serde_json::from_value(w["view"].clone())?;
        let view: BTreeMap<&String, &String> = view
            .iter()
            .filter(|(name, _)| name.starts_with("cm-") || *name == "zz-end")
            .collect();
        ensure!(
            view == wanted,
            "watcher {} (reconnected {} times, relisted {}) ends with {} objects, the store holds {}",
            w["server"],
            w["reconnects"],
            w["relists"],
            view.len(),
            wanted.len()
        );
        if w["relists"] != 0 {
            continue;
        }
        let events: BTreeSet<(String, String, String)> = w["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_string(),
                    e["name"].as_str().unwrap_or_default().to_string(),
                    e["rv"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let deleted_names: BTreeSet<&String> = events
            .iter()
            .filter(|(t, ..)| t == "deleted")
            .map(|(_, name, _)| name)
            .collect();
        for (name, op, rv) in &acknowledged {
            let saw = match op.as_str() {
                "delete" => deleted_names.contains(name),
                _ => events.contains(&("set".to_string(), name.clone(), rv.clone())),
            };
            ensure!(
                saw,
                "watcher {} (reconnected {} times) missed {op} {name} at {rv}",
                w["server"],
                w["reconnects"]
            );
        }
    }
    Ok(())
}

//! The kubelet and its CRI runtime on a one-node lab cluster: `ekube server` on n1 and
//! `ekube agent` (kubelet with the runtime in-process, runc under the node's cgroup, the VXLAN
//! overlay writing the CNI config, the proxy) on the node, images from the lab registry.
//! Everything is driven with the real kubectl run inside the node's namespace (the root
//! namespace never talks to the underlay); container output is read from the CRI log files.
//!
//! One lab serves the whole file: one test first starts the agent without its overlay to see
//! the node NotReady for want of a network config, then applies every pod at once and checks them in
//! turn (env, restart policies, probes, hooks, volumes, limits, pull policies, static pods),
//! restarts the agent, stops it until the node goes NotReady, and finally churns 50 short-lived
//! pods and checks that nothing of any pod is left on the node.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ekube_tests::cluster::{ClusterOptions, LabCluster, is_ready};
use ekube_tests::wait_for;
use serde_json::Value;

const LAB: &str = "ekkubelet";

/// Probes, hooks, volumes and limits; `HOSTDIR` is a directory on the node for hostPath.
const FEATURES: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probes}
spec:
  nodeName: NODE
  containers:
  - name: http
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && httpd -p 8080 -h /www && sleep 10 && echo ok > /www/ready && exec sleep 3600"]
    readinessProbe:
      httpGet: {path: /ready, port: 8080}
      periodSeconds: 1
  - name: tcp
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && httpd -f -p 8081 -h /www"]
    ports: [{name: alt, containerPort: 8081}]
    startupProbe:
      exec: {command: ["test", "-e", "/bin/sh"]}
      periodSeconds: 1
    readinessProbe:
      tcpSocket: {port: alt}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {name: lifecycle}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 4
  initContainers:
  - {name: init, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "echo INIT >> /data/lifecycle.log"], volumeMounts: [{name: data, mountPath: /data}]}
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "echo START >> /data/lifecycle.log; trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{name: data, mountPath: /data}]
    lifecycle:
      postStart: {exec: {command: ["sh", "-c", "sleep 1; echo POST-START >> /data/lifecycle.log"]}}
      preStop: {exec: {command: ["sh", "-c", "echo PRE-STOP >> /data/lifecycle.log"]}}
    readinessProbe:
      exec: {command: ["sh", "-c", "grep -q READINESS /data/lifecycle.log || echo READINESS >> /data/lifecycle.log"]}
      initialDelaySeconds: 1
      periodSeconds: 2
    livenessProbe:
      exec: {command: ["sh", "-c", "grep -q LIVENESS /data/lifecycle.log || echo LIVENESS >> /data/lifecycle.log"]}
      initialDelaySeconds: 3
      periodSeconds: 2
  - name: stubborn
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
  volumes:
  - {name: data, hostPath: {path: HOSTDIR, type: DirectoryOrCreate}}
---
apiVersion: v1
kind: Pod
metadata: {name: volumes}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "echo CM=$(cat /cm/greeting) SECRET=$(cat /sec/password)"]
    volumeMounts: [{name: cm, mountPath: /cm}, {name: sec, mountPath: /sec}]
  volumes:
  - {name: cm, configMap: {name: settings}}
  - {name: sec, secret: {secretName: creds}}
---
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "x=aaaaaaaa; while true; do x=$x$x; done"]
    resources: {limits: {memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: cpu}
spec:
  nodeName: NODE
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "while :; do :; done"]
    resources: {limits: {cpu: 100m}}
"#;

/// Pull policies, applied once busybox:latest is on the node (web:v2 never is).
const PULLS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: pull-never}
spec:
  nodeName: NODE
  containers: [{name: main, image: "192.168.64.1:5000/busybox:latest", imagePullPolicy: Never, command: ["sleep", "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: pull-never-absent}
spec:
  nodeName: NODE
  containers: [{name: main, image: "192.168.64.1:5000/web:v2", imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: pull-ifnotpresent}
spec:
  nodeName: NODE
  containers: [{name: main, image: "192.168.64.1:5000/busybox:latest", imagePullPolicy: IfNotPresent, command: ["sleep", "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: pull-always}
spec:
  nodeName: NODE
  containers: [{name: main, image: "192.168.64.1:5000/busybox:latest", imagePullPolicy: Always, command: ["sleep", "3600"]}]
"#;

/// Reads what the lifecycle pod left in its hostPath after that pod is gone.
const READER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hostpath-reader}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["cat", "/data/lifecycle.log"], volumeMounts: [{name: data, mountPath: /data}]}
  volumes:
  - {name: data, hostPath: {path: HOSTDIR}}
"#;

const STATIC: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: static-web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["sleep", "3600"]}
"#;

const PODS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello-from-cm, color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: NODE
  containers:
  - name: web
    image: 192.168.64.1:5000/web:latest
  - name: sidecar
    image: 192.168.64.1:5000/busybox:latest
    command:
    - sh
    - -c
    - |
      echo GREETING=$GREETING PASSWORD=$PASSWORD POD=$POD_NAME
      echo FROM=$CM_greeting,$CM_color,$SEC_password,$GREETING_OVERRIDE
      while true; do printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 127.0.0.1 80 | tail -n1; sleep 1; done
    envFrom:
    - {configMapRef: {name: settings}, prefix: CM_}
    - {secretRef: {name: creds}, prefix: SEC_}
    env:
    - name: GREETING_OVERRIDE
      value: $(CM_color)-sky
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
---
apiVersion: v1
kind: Pod
metadata: {name: never-ok}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "exit 0"]}
---
apiVersion: v1
kind: Pod
metadata: {name: never-fail}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "exit 1"]}
---
apiVersion: v1
kind: Pod
metadata: {name: onfailure-ok}
spec:
  nodeName: NODE
  restartPolicy: OnFailure
  initContainers:
  - {name: init, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "echo init > /work/marker"], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "cat /work/marker"], volumeMounts: [{name: work, mountPath: /work}]}
  volumes:
  - {name: work, emptyDir: {}}
---
apiVersion: v1
kind: Pod
metadata: {name: crashing}
spec:
  nodeName: NODE
  containers:
  - {name: main, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "exit 1"]}
---
apiVersion: v1
kind: Pod
metadata: {name: badimage}
spec:
  nodeName: NODE
  containers:
  - {name: main, image: "192.168.64.1:5000/does-not-exist:latest"}
"#;

/// Short-lived pods for the churn check: volumes, an init container and a graceful stop, so
/// every kind of per-pod state is made and torn down. `INDEX` tells them apart.
const CHURN: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: churn-INDEX, labels: {churn: "yes"}}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 2
  initContainers:
  - {name: init, image: "192.168.64.1:5000/busybox:latest", command: ["sh", "-c", "echo INDEX > /scratch/index"], volumeMounts: [{name: scratch, mountPath: /scratch}]}
  containers:
  - name: main
    image: 192.168.64.1:5000/busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts: [{name: scratch, mountPath: /scratch}, {name: cm, mountPath: /cm}]
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cm, configMap: {name: settings}}
"#;

/// Pods per churn round, and rounds: 50 pod lifecycles in all.
const CHURN_WIDTH: usize = 10;
const CHURN_ROUNDS: usize = 5;

/// What the checks need on top of [`LabCluster`] for the one node of this file.
trait NodeExt {
    /// The node's name.
    fn node(&self) -> String;
    /// The node's directory (its kubelet state, CNI data, logs and manifests are under it).
    fn node_dir(&self) -> PathBuf;
    /// The hostPath directory of the lifecycle demo.
    fn host_dir(&self) -> PathBuf;
    /// Applies `yaml` with `NODE` and `HOSTDIR` filled in.
    fn apply_on_node(&self, yaml: &str) -> Result<()>;
    /// Events about one pod as (reason, message).
    fn events(&self, pod: &str) -> Result<Vec<(String, String)>>;
    /// The output so far of a pod's container (every run), or nothing when the pod is gone.
    fn output(&self, pod: &str, container: &str) -> String;
}

impl NodeExt for LabCluster {
    fn node(&self) -> String {
        self.node_name("n1")
    }

    fn node_dir(&self) -> PathBuf {
        self.lab.host("n1").expect("n1").dir.clone()
    }

    fn host_dir(&self) -> PathBuf {
        self.node_dir().join("hostdata")
    }

    fn apply_on_node(&self, yaml: &str) -> Result<()> {
        self.apply(
            &yaml
                .replace("NODE", &self.node())
                .replace("HOSTDIR", &self.host_dir().display().to_string()),
        )
        .map(drop)
    }

    fn events(&self, pod: &str) -> Result<Vec<(String, String)>> {
        self.events_of(pod)
    }

    fn output(&self, pod: &str, container: &str) -> String {
        self.get("pod", pod)
            .and_then(|p| self.container_output(&p, container))
            .unwrap_or_default()
    }
}

/// The end of the node agent's log and its warnings, for failure messages.
fn agent_log(c: &LabCluster) -> String {
    let text = c
        .lab
        .log_path("n1", "agent")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    // Backtraces of a failed agent would crowd out what it said (its error and causes stay).
    let mut in_backtrace = false;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            if l.starts_with("Stack backtrace:") {
                in_backtrace = true;
            } else if l.starts_with("Error") || l.contains("Z ") {
                in_backtrace = false;
            }
            !in_backtrace
        })
        .collect();
    let warnings: Vec<&str> = lines
        .iter()
        .filter(|l| {
            l.contains("WARN")
                || l.contains("ERROR")
                || l.starts_with("Error")
                || l.starts_with("    ")
        })
        .take(40)
        .copied()
        .collect();
    format!(
        "agent warnings:\n{}\nagent log (end):\n{}",
        warnings.join("\n"),
        lines[lines.len().saturating_sub(60)..].join("\n")
    )
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn wait_pod(
    c: &LabCluster,
    name: &str,
    secs: u64,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    c.wait_pod(name, Duration::from_secs(secs), what, check)
}

/// The node's Ready condition.
fn node_ready_condition(c: &LabCluster) -> Result<Value> {
    let n = c.get("node", &c.node())?;
    n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["type"] == "Ready")
        .cloned()
        .context("no Ready condition yet")
}

/// Waits (up to 60 s) until the node's Ready condition has `status`; returns the condition.
fn wait_node_ready(c: &LabCluster, status: &str, what: &str) -> Result<Value> {
    let mut last = Value::Null;
    wait_for(Duration::from_secs(60), what, || {
        last = node_ready_condition(c)?;
        Ok(last["status"] == status)
    })
    .with_context(|| format!("last Ready condition: {last}"))?;
    Ok(last)
}

/// Names of the entries of `dir` (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whatever pods left on the node: runc containers, mounts (rootfs overlays and the bind
/// mounts that keep sandbox namespaces), sandbox and container state, pod volume and log
/// directories, pod cgroups in every hierarchy, pod veths and IP allocations.
fn leftovers(c: &LabCluster) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let dir = c.node_dir();
    let kubelet = dir.join("data/kubelet");
    let runc = std::process::Command::new("runc")
        .arg("--root")
        .arg(kubelet.join("runc"))
        .args(["list", "-q"])
        .output()?;
    let ids = String::from_utf8_lossy(&runc.stdout).trim().to_owned();
    if !ids.is_empty() {
        left.push(format!("runc containers: {ids}"));
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts: Vec<String> = info
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let point = *fields.get(4)?;
            // Filesystem type follows the " - " separator.
            let fs = fields.iter().skip_while(|f| **f != "-").nth(1).copied()?;
            Path::new(point)
                .starts_with(&kubelet)
                .then(|| format!("{point} ({fs})"))
        })
        .collect();
    if !mounts.is_empty() {
        left.push(format!(
            "mounts (nsfs ones are network namespaces): {mounts:?}"
        ));
    }
    for state in ["runtime/sandboxes", "runtime/containers", "pods"] {
        let names = entries(&kubelet.join(state));
        if !names.is_empty() {
            left.push(format!("{state}: {names:?}"));
        }
    }
    let logs = entries(&dir.join("logs/pods"));
    if !logs.is_empty() {
        left.push(format!("pod log directories: {logs:?}"));
    }
    let cgroup = &c.lab.host("n1")?.cgroup;
    for hierarchy in entries(Path::new("/sys/fs/cgroup")) {
        let pods: Vec<String> = entries(&Path::new("/sys/fs/cgroup").join(&hierarchy).join(cgroup))
            .into_iter()
            .filter(|n| n.starts_with("pod"))
            .collect();
        if !pods.is_empty() {
            left.push(format!("{hierarchy} cgroups: {pods:?}"));
        }
    }
    // The node's own underlay link (eth0, to the fabric) is a veth too; pod ends are not.
    let links = c
        .lab
        .exec("n1", &["ip", "-o", "link", "show", "type", "veth"])?
        .stdout;
    let veths: Vec<&str> = links.lines().filter(|l| !l.contains(" eth0@")).collect();
    if !veths.is_empty() {
        left.push(format!("veths: {veths:?}"));
    }
    // The host-local style store: one file per allocated address in each network's directory.
    let cni = dir.join("data/cni");
    for network in entries(&cni) {
        let ips: Vec<String> = entries(&cni.join(&network))
            .into_iter()
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        if !ips.is_empty() {
            left.push(format!("IPs allocated in {network}: {ips:?}"));
        }
    }
    Ok(left)
}

/// Waits until no pod is left in the API and nothing of them on the node.
fn wait_clean(c: &LabCluster, after: &str) -> Result<()> {
    wait_for(
        Duration::from_secs(90),
        &format!("all pods gone {after}"),
        || Ok(c.kubectl(&["get", "pods", "-o", "name"])?.trim().is_empty()),
    )?;
    let mut left = Vec::new();
    wait_for(
        Duration::from_secs(30),
        &format!("nothing left on the node {after}"),
        || {
            left = leftovers(c)?;
            Ok(left.is_empty())
        },
    )
    .with_context(|| format!("left behind: {left:#?}"))
}

/// Whether `ip` is inside `cidr` (`a.b.c.d/len`).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let parse = || -> Option<bool> {
        let ip: Ipv4Addr = ip.parse().ok()?;
        let (net, len) = cidr.split_once('/')?;
        let (net, len): (Ipv4Addr, u32) = (net.parse().ok()?, len.parse().ok()?);
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        Some(u32::from(ip) & mask == u32::from(net) & mask)
    };
    parse().unwrap_or(false)
}

#[test]
fn kubelet_runs_pods_end_to_end() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        1,
        ClusterOptions {
            controller_manager_args: &["node-monitor-grace-period=15s"],
            later: &["n1"],
            no_dns: true,
            ..Default::default()
        },
    )?;
    checks(&c).with_context(|| agent_log(&c))
}

fn checks(c: &LabCluster) -> Result<()> {
    network_gates_readiness(c)?;
    let node = c.node();
    let n = c.get("node", &node)?;
    assert_eq!(
        n["metadata"]["labels"]["kubernetes.io/hostname"],
        node.as_str()
    );
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/os"], "linux");
    let ip = c.lab.host("n1")?.ip.to_string();
    assert!(
        n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == ip.as_str())
    );
    assert!(
        n["status"]["capacity"]["cpu"].is_string() && n["status"]["allocatable"]["pods"] == "110"
    );
    let version: Value = serde_json::from_str(&c.kubectl(&["version", "-o", "json"])?)?;
    assert_eq!(
        n["status"]["nodeInfo"]["kubeletVersion"], version["serverVersion"]["gitVersion"],
        "the kubelet reports another Kubernetes version than the apiserver"
    );
    c.kubectl(&["get", "lease", "-n", "kube-node-lease", &node])?;

    c.apply_on_node(PODS)?;
    c.apply_on_node(FEATURES)?;
    let manifests = c.node_dir().join("manifests");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(manifests.join("static-web.yaml"), STATIC)?;

    // web + sidecar: Running with an IP of the node's pod CIDR; the sidecar reaches web over
    // localhost and sees its env (valueFrom, envFrom with prefixes, $(VAR) references).
    let web = wait_pod(c, "web", 120, "Running and Ready with an IP", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string() && is_ready(p)
    })?;
    let pod_ip = web["status"]["podIP"].as_str().unwrap();
    let cidr = c.get("node", &node)?["spec"]["podCIDR"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(in_cidr(pod_ip, &cidr), "pod IP {pod_ip} outside {cidr}");
    assert_eq!(web["status"]["hostIP"], ip.as_str());
    let mut log = String::new();
    wait_for(
        Duration::from_secs(30),
        "sidecar output shows env and the web answer",
        || {
            log = c.output("web", "sidecar");
            let lines: Vec<&str> = log.lines().collect();
            Ok(
                lines.contains(&"GREETING=hello-from-cm PASSWORD=s3cret POD=web")
                    && lines.contains(&"FROM=hello-from-cm,blue,s3cret,blue-sky")
                    && lines.contains(&"web"),
            )
        },
    )
    .with_context(|| format!("sidecar output: {log}"))?;

    // Restart policies.
    let p = wait_pod(c, "never-ok", 90, "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    assert_eq!(
        container_status(&p, "main").unwrap()["state"]["terminated"]["reason"],
        "Completed"
    );
    let p = wait_pod(c, "never-fail", 90, "Failed", |p| {
        p["status"]["phase"] == "Failed"
    })?;
    let t = &container_status(&p, "main").unwrap()["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("Error"), Some(1))
    );
    let p = wait_pod(
        c,
        "onfailure-ok",
        90,
        "Succeeded after its init container",
        |p| p["status"]["phase"] == "Succeeded",
    )?;
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    let out = c.output("onfailure-ok", "main");
    assert!(out.lines().any(|l| l == "init"), "{out}");
    let p = wait_pod(c, "crashing", 90, "CrashLoopBackOff", |p| {
        container_status(p, "main").is_some_and(|s| {
            s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                && s["lastState"]["terminated"]["exitCode"] == 1
        })
    })?;
    assert_eq!(p["status"]["phase"], "Running");
    wait_pod(c, "crashing", 60, "restarted after the back-off", |p| {
        container_status(p, "main").is_some_and(|s| s["restartCount"].as_i64() >= Some(1))
    })?;

    // A missing image.
    wait_pod(c, "badimage", 60, "ErrImagePull", |p| {
        container_status(p, "main")
            .is_some_and(|s| s["state"]["waiting"]["reason"] == "ErrImagePull")
    })?;
    let p = wait_pod(c, "badimage", 60, "ImagePullBackOff", |p| {
        container_status(p, "main")
            .is_some_and(|s| s["state"]["waiting"]["reason"] == "ImagePullBackOff")
    })?;
    assert_eq!(p["status"]["phase"], "Pending");
    let events = c.kubectl(&["get", "events", "-o", "json"])?;
    for reason in [
        "Pulling", "Pulled", "Created", "Started", "BackOff", "Failed",
    ] {
        assert!(
            events.contains(&format!("\"reason\": \"{reason}\"")),
            "no {reason} event"
        );
    }

    probes(c)?;
    lifecycle(c)?;
    volumes_and_limits(c)?;
    pull_policies(c)?;
    static_pod(c)?;
    agent_restart(c)?;

    // Deleting frees everything; so do many short pod lifecycles.
    c.kubectl(&["delete", "pod", "--all", "--wait=false"])?;
    wait_clean(c, "after the checks")?;
    churn(c)
}

/// The node stays NotReady, with upstream's reason and message, while no CNI network config
/// is in the kubelet's `--cni-conf-dir` (an agent without the overlay never writes one); with
/// the overlay the config is written and the node turns Ready.
fn network_gates_readiness(c: &LabCluster) -> Result<()> {
    c.start_agent_with("n1", &["--disable-flannel"])?;
    let last = wait_node_ready(c, "False", "node registered NotReady for want of a network")?;
    assert_eq!(last["reason"], "KubeletNotReady", "{last}");
    assert_eq!(
        last["message"],
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady \
         message:Network plugin returns error: cni plugin not initialized",
        "{last}"
    );
    c.stop_agent("n1")?;
    c.start_agent("n1")?;
    let last = wait_node_ready(
        c,
        "True",
        "node Ready once the overlay wrote its CNI config",
    )?;
    assert_eq!(last["reason"], "KubeletReady", "{last}");
    Ok(())
}

/// Pods created and deleted [`CHURN_WIDTH`] at a time leave nothing behind. All rounds but
/// the last wait for their pods to run; the last deletes its pods while they are starting, so
/// teardown races sandbox, network and container creation.
fn churn(c: &LabCluster) -> Result<()> {
    let began = Instant::now();
    for round in 0..CHURN_ROUNDS {
        let yaml: Vec<String> = (0..CHURN_WIDTH)
            .map(|i| CHURN.replace("INDEX", &(round * CHURN_WIDTH + i).to_string()))
            .collect();
        c.apply_on_node(&yaml.join("---\n"))?;
        if round + 1 < CHURN_ROUNDS {
            let mut last = Vec::new();
            wait_for(
                Duration::from_secs(120),
                &format!("churn round {round}: {CHURN_WIDTH} pods Running with IPs"),
                || {
                    last = c.list("pods", &["-l", "churn=yes"])?;
                    Ok(last.len() == CHURN_WIDTH
                        && last.iter().all(|p| {
                            p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()
                        }))
                },
            )
            .with_context(|| {
                let phases: Vec<String> = last
                    .iter()
                    .map(|p| format!("{}: {}", p["metadata"]["name"], p["status"]["phase"]))
                    .collect();
                format!("pods: {phases:?}")
            })?;
        }
        c.kubectl(&["delete", "pod", "-l", "churn=yes", "--wait=false"])?;
        wait_for(
            Duration::from_secs(90),
            &format!("churn round {round}: pods deleted"),
            || Ok(c.list("pods", &["-l", "churn=yes"])?.is_empty()),
        )?;
    }
    wait_clean(c, "after 50 pod lifecycles")?;
    eprintln!(
        "{} pod lifecycles, {CHURN_WIDTH} at a time, in {:?}",
        CHURN_ROUNDS * CHURN_WIDTH,
        began.elapsed()
    );
    Ok(())
}

/// Seconds since the epoch of a UTC RFC 3339 time (`2006-01-02T15:04:05Z`, fraction ignored).
fn unix_seconds(t: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?)
}

/// Readiness over httpGet and tcpSocket, a startup probe, and a liveness restart.
fn probes(c: &LabCluster) -> Result<()> {
    // The http container serves 404 for /ready for its first 10 s: the pod turns Ready only
    // after that (judged from the condition's transition time against the start).
    let p = wait_pod(c, "probes", 90, "Ready once /ready answers 200", is_ready)?;
    let at = |v: &Value| v.as_str().and_then(unix_seconds).context("timestamp");
    let started = at(&container_status(&p, "http").unwrap()["state"]["running"]["startedAt"])?;
    let ready = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "Ready")
        .unwrap();
    let waited = at(&ready["lastTransitionTime"])? - started;
    assert!(
        waited >= 8,
        "pod Ready {waited}s after the start, before its readiness probe could pass"
    );
    for name in ["http", "tcp"] {
        let s = container_status(&p, name).unwrap();
        assert_eq!(
            (s["ready"].as_bool(), s["started"].as_bool()),
            (Some(true), Some(true)),
            "{name}: {s}"
        );
    }
    assert!(
        c.events("probes")?.iter().any(|(r, m)| r == "Unhealthy"
            && m.starts_with("Readiness probe failed: HTTP probe failed with statuscode: 404")),
        "no Unhealthy event for the 404 readiness answers: {:?}",
        c.events("probes")?
    );

    // Liveness: healthy for 4 s, then two failures a second apart restart the container.
    let p = wait_pod(c, "liveness", 90, "restarted by its liveness probe", |p| {
        container_status(p, "main").is_some_and(|s| s["restartCount"].as_i64() >= Some(1))
    })?;
    let s = container_status(&p, "main").unwrap();
    assert!(
        s["lastState"]["terminated"]["exitCode"].as_i64().is_some(),
        "{s}"
    );
    let events = c.events("liveness")?;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed: ")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(r, m)| r == "Killing"
            && m == "Container main failed liveness probe, will be restarted"),
        "{events:?}"
    );
    Ok(())
}

/// The lifecycle demo: every step appends to a hostPath file; deletion honours the grace
/// period for a container that ignores SIGTERM; the file outlives the pod.
fn lifecycle(c: &LabCluster) -> Result<()> {
    let log = c.host_dir().join("lifecycle.log");
    wait_for(
        Duration::from_secs(90),
        "lifecycle.log shows the liveness probe ran",
        || {
            Ok(std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("LIVENESS"))
        },
    )?;
    wait_pod(c, "lifecycle", 30, "Ready", is_ready)?;
    let began = Instant::now();
    c.kubectl(&["delete", "pod", "lifecycle", "--timeout=60s"])?;
    let took = began.elapsed();
    // `stubborn` ignores SIGTERM: it is killed once the 4 s grace period is over.
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "deletion took {took:?} with a 4 s grace period"
    );
    let lines: Vec<String> = std::fs::read_to_string(&log)?
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines,
        [
            "INIT",
            "START",
            "POST-START",
            "READINESS",
            "LIVENESS",
            "PRE-STOP"
        ],
        "lifecycle.log"
    );
    c.apply_on_node(READER)?;
    wait_pod(c, "hostpath-reader", 60, "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    wait_for(
        Duration::from_secs(10),
        "the new pod reads the old pod's hostPath data",
        || {
            Ok(c.output("hostpath-reader", "main")
                .lines()
                .any(|l| l == "PRE-STOP"))
        },
    )?;
    Ok(())
}

/// The CPU time a container's cgroup used so far, in nanoseconds (cgroup v1 cpuacct).
fn cpu_usage(c: &LabCluster, pod: &Value, container: &str) -> Result<u64> {
    let id = container_status(pod, container)
        .and_then(|s| s["containerID"].as_str())
        .context("no container ID")?;
    let id = id.trim_start_matches("ekube://");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let cgroup = &c.lab.host("n1")?.cgroup;
    let path = Path::new("/sys/fs/cgroup/cpuacct")
        .join(cgroup)
        .join(format!("pod{uid}"))
        .join(id)
        .join("cpuacct.usage");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .parse()?)
}

/// configMap and secret volumes, the memory limit (OOMKilled) and the CPU limit (CFS quota).
fn volumes_and_limits(c: &LabCluster) -> Result<()> {
    wait_pod(c, "volumes", 60, "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    let out = c.output("volumes", "main");
    assert!(
        out.lines().any(|l| l == "CM=hello-from-cm SECRET=s3cret"),
        "{out}"
    );

    let p = wait_pod(c, "oom", 90, "Failed", |p| p["status"]["phase"] == "Failed")?;
    let t = &container_status(&p, "main").unwrap()["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("OOMKilled"), Some(137)),
        "{t}"
    );

    let p = wait_pod(c, "cpu", 60, "Running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let (t0, u0) = (Instant::now(), cpu_usage(c, &p, "main")?);
    wait_for(Duration::from_secs(10), "3 s of busy loop", || {
        Ok(t0.elapsed() >= Duration::from_secs(3))
    })?;
    let share = (cpu_usage(c, &p, "main")? - u0) as f64 / t0.elapsed().as_nanos() as f64;
    assert!(
        (0.03..0.2).contains(&share),
        "a 100m CPU limit let the busy loop use {:.0}% of a core",
        share * 100.0
    );
    c.kubectl(&["delete", "pod", "cpu", "--wait=false"])?;
    Ok(())
}

fn pull_policies(c: &LabCluster) -> Result<()> {
    c.apply_on_node(PULLS)?;
    for name in ["pull-never", "pull-ifnotpresent", "pull-always"] {
        wait_pod(c, name, 60, "Running", |p| {
            p["status"]["phase"] == "Running"
        })?;
    }
    wait_pod(c, "pull-never-absent", 60, "ErrImageNeverPull", |p| {
        container_status(p, "main")
            .is_some_and(|s| s["state"]["waiting"]["reason"] == "ErrImageNeverPull")
    })?;
    let pulled =
        |pod: &str| -> Result<bool> { Ok(c.events(pod)?.iter().any(|(r, _)| r == "Pulling")) };
    assert!(
        !pulled("pull-never")? && !pulled("pull-ifnotpresent")? && !pulled("pull-never-absent")?,
        "a pod pulled against its policy"
    );
    assert!(
        pulled("pull-always")?,
        "imagePullPolicy Always did not pull"
    );
    Ok(())
}

/// A manifest in --pod-manifest-path runs with a mirror pod; the mirror comes back when
/// deleted (the pod keeps running); removing the file stops the pod and deletes the mirror.
fn static_pod(c: &LabCluster) -> Result<()> {
    let name = format!("static-web-{}", c.node());
    let p = wait_pod(c, &name, 90, "mirror Running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let ann = &p["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert!(
        ann["kubernetes.io/config.mirror"].is_string()
            && ann["kubernetes.io/config.mirror"] == ann["kubernetes.io/config.hash"],
        "{ann}"
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Node");
    let (uid, id) = (
        p["metadata"]["uid"].clone(),
        container_status(&p, "main").unwrap()["containerID"].clone(),
    );
    c.kubectl(&["delete", "pod", &name, "--wait=false"])?;
    let p = wait_pod(c, &name, 30, "mirror recreated", |p| {
        p["metadata"]["uid"] != uid && p["status"]["phase"] == "Running"
    })?;
    assert_eq!(
        container_status(&p, "main").unwrap()["containerID"],
        id,
        "deleting the mirror restarted the static pod"
    );
    std::fs::remove_file(c.node_dir().join("manifests/static-web.yaml"))?;
    wait_for(
        Duration::from_secs(30),
        "mirror pod deleted with its manifest",
        || {
            Ok(c.kubectl(&["get", "pods", "-o", "name"])?
                .lines()
                .all(|l| l != format!("pod/{name}")))
        },
    )?;
    Ok(())
}

/// A restarted agent's kubelet adopts running containers; a stopped one lets the Node go
/// NotReady once its Lease expires.
fn agent_restart(c: &LabCluster) -> Result<()> {
    let before = wait_pod(c, "web", 30, "Ready", is_ready)?;
    let ids = |p: &Value| -> Vec<(String, i64)> {
        p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["containerID"].as_str().unwrap_or("").to_owned(),
                    s["restartCount"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let liveness = c.get("pod", "liveness")?;
    let agent_log = c.lab.log_path("n1", "agent")?;
    let adopted = || -> Result<usize> {
        Ok(std::fs::read_to_string(&agent_log)?
            .matches("adopted sandbox")
            .count())
    };
    let adopted_before = adopted()?;
    c.stop_agent("n1")?;
    let lines = c.output("web", "sidecar").lines().count();
    c.start_agent("n1")?;
    wait_for(
        Duration::from_secs(30),
        "agent log shows the adoption",
        || Ok(adopted()? > adopted_before),
    )?;
    wait_for(
        Duration::from_secs(30),
        "the sidecar output keeps growing across the restart",
        || Ok(c.output("web", "sidecar").lines().count() > lines + 2),
    )?;
    let after = wait_pod(c, "web", 30, "Ready after the agent restart", is_ready)?;
    assert_eq!(
        ids(&after),
        ids(&before),
        "containers were replaced by the agent restart"
    );
    let l = c.get("pod", "liveness")?;
    let count = |p: &Value| {
        container_status(p, "main")
            .and_then(|s| s["restartCount"].as_i64())
            .unwrap_or(-1)
    };
    assert!(
        count(&l) >= count(&liveness),
        "restartCount went back from {} to {}",
        count(&liveness),
        count(&l)
    );

    // Stopped: the lease runs out (grace period 15 s on this server) and the node is NotReady.
    c.stop_agent("n1")?;
    wait_for(
        Duration::from_secs(60),
        "node NotReady after the agent stopped",
        || Ok(node_ready_condition(c)?["status"] != "True"),
    )?;
    c.start_agent("n1")?;
    wait_node_ready(c, "True", "node Ready again")?;
    Ok(())
}

//! The kubelet and its CRI runtime on a one-node lab: `ekube server` on n1 and `ekube kubelet`
//! (runtime in-process, runc under the node's cgroup) on the node, images from the lab
//! registry, and the CNI conflist written with a fixed per-node subnet. Everything is driven
//! with the real kubectl run inside the node's namespace (the root namespace never talks to
//! the underlay); container output is read from the CRI log files.
//!
//! One lab serves the whole file: one test applies every pod at once and checks them in turn
//! (restart policies, probes, hooks, volumes, limits, pull policies, static pods), then
//! restarts the kubelet, stops it until the node goes NotReady, and cleans up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ekube_lab::{CmdTemplate, Lab, LabConfig};
use ekube_tests::{ekube_bin, kubectl_bin, wait_for};
use serde_json::Value;
use std::time::Instant;

const LAB: &str = "ekkubelet";

const NODE_CMD: &str = "{ekube} kubelet --kubeconfig {kubeconfig} --hostname-override {node} \
    --node-ip {ip} --root-dir {dir}/data/kubelet --cgroup-root {cgroup} --cni-bin-dir {cnibin} \
    --cni-conf-dir {dir}/cni/net.d --pod-logs-dir {dir}/logs/pods --insecure-registry {registry} \
    --pod-manifest-path {dir}/manifests";

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
data: {greeting: hello-from-cm}
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
    command: ["sh", "-c", "echo GREETING=$GREETING PASSWORD=$PASSWORD POD=$POD_NAME; while true; do wget -qO- http://127.0.0.1:80/ || echo fail; sleep 1; done"]
    env:
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

struct Cluster {
    lab: Lab,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    /// PID of the running kubelet.
    kubelet: u32,
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec![
            self.kubectl.display().to_string(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        let out = self.lab.exec("n1", &argv)?;
        if !out.success() {
            bail!("kubectl {}: {}", args.join(" "), out.stderr);
        }
        Ok(out.stdout)
    }

    /// Applies `yaml` with `NODE` and `HOSTDIR` filled in.
    fn apply(&self, file: &str, yaml: &str) -> Result<()> {
        let path = self.node_dir().join(file);
        std::fs::write(
            &path,
            yaml.replace("NODE", &self.node())
                .replace("HOSTDIR", &self.host_dir().display().to_string()),
        )?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
            .map(drop)
    }

    fn node(&self) -> String {
        self.lab.host("n1").expect("n1").netns.clone()
    }

    /// The hostPath directory of the lifecycle demo.
    fn host_dir(&self) -> PathBuf {
        self.node_dir().join("hostdata")
    }

    fn start_kubelet(&mut self) -> Result<()> {
        let n1 = self.lab.host("n1")?.clone();
        let argv = CmdTemplate::parse(NODE_CMD).render(&n1.vars(self.lab.config()));
        self.kubelet = self.lab.spawn("n1", "kubelet", &argv)?;
        Ok(())
    }

    /// Events about one pod as (reason, message).
    fn events(&self, pod: &str) -> Result<Vec<(String, String)>> {
        let v: Value = serde_json::from_str(&self.kubectl(&[
            "get",
            "events",
            "-o",
            "json",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
        ])?)?;
        Ok(v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["reason"].as_str().unwrap_or("").to_owned(),
                    e["message"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect())
    }

    fn get(&self, kind: &str, name: &str) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.kubectl(&["get", kind, name, "-o", "json"])?,
        )?)
    }

    fn node_dir(&self) -> PathBuf {
        self.lab.host("n1").expect("n1").dir.clone()
    }

    /// The CRI log of a pod's container (first run), once it exists.
    fn container_log(&self, pod: &str, container: &str) -> String {
        let logs = self.node_dir().join("logs/pods");
        let Ok(entries) = std::fs::read_dir(&logs) else {
            return String::new();
        };
        entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("default_{pod}_"))
            })
            .map(|e| {
                std::fs::read_to_string(e.path().join(container).join("0.log")).unwrap_or_default()
            })
            .collect()
    }
}

fn start() -> Result<Cluster> {
    let ekube = ekube_bin();
    let cnibin = ekube.parent().unwrap().to_owned();
    assert!(
        cnibin.join("ekube-cni").exists(),
        "ekube-cni missing next to ekube: cargo build --bins"
    );
    let mut config = LabConfig::new(LAB);
    config.nodes = 1;
    config.images = Some(PathBuf::from(ekube_lab::images::DEFAULT_LAYOUT));
    config
        .vars
        .insert("ekube".into(), ekube.display().to_string());
    config
        .vars
        .insert("cnibin".into(), cnibin.display().to_string());
    config.server = Some(CmdTemplate::parse(
        "{ekube} server --data-dir {dir}/data/server --bind-address {ip} --advertise-address {ip} --write-kubeconfig {kubeconfig} \
         --kube-controller-manager-arg node-monitor-grace-period=15s",
    ));
    let lab = Lab::up(config)?;
    let n1 = lab.host("n1")?.clone();
    ekube_cni::write_conflist(
        &n1.cni_conf_dir(),
        &ekube_cni::NodeConflist {
            subnet: Some("10.244.1.0/24".parse()?),
            cluster_cidr: Some("10.244.0.0/16".parse()?),
            subnet_file: n1.run_dir().join("subnet.env"),
            data_dir: n1.dir.join("data/cni"),
            ..Default::default()
        },
    )?;
    let mut c = Cluster {
        kubeconfig: lab.kubeconfig(),
        kubectl: kubectl_bin(),
        lab,
        kubelet: 0,
    };
    c.start_kubelet()?;
    Ok(c)
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn wait_pod(
    c: &Cluster,
    name: &str,
    secs: u64,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let mut last = Value::Null;
    let r = wait_for(
        Duration::from_secs(secs),
        &format!("pod {name}: {what}"),
        || {
            last = c.get("pod", name)?;
            Ok(check(&last))
        },
    );
    r.with_context(|| format!("last status of {name}: {}", last["status"]))?;
    Ok(last)
}

fn leftovers(c: &Cluster) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let dir = c.node_dir();
    let runc = std::process::Command::new("runc")
        .arg("--root")
        .arg(dir.join("data/kubelet/runc"))
        .args(["list", "-q"])
        .output()?;
    let ids = String::from_utf8_lossy(&runc.stdout).trim().to_owned();
    if !ids.is_empty() {
        left.push(format!("runc containers: {ids}"));
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir.join("data/kubelet")))
        .collect();
    if !mounts.is_empty() {
        left.push(format!("mounts: {mounts:?}"));
    }
    let cg = Path::new("/sys/fs/cgroup/memory").join(&c.lab.host("n1")?.cgroup);
    let pods: Vec<String> = std::fs::read_dir(&cg)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pod"))
        .collect();
    if !pods.is_empty() {
        left.push(format!("pod cgroups: {pods:?}"));
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
    Ok(left)
}

#[test]
fn kubelet_runs_pods_end_to_end() -> Result<()> {
    let mut c = start()?;
    let node = c.lab.host("n1")?.netns.clone();
    wait_for(Duration::from_secs(60), "node registered and Ready", || {
        let n = c.get("node", &node)?;
        Ok(n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|x| x["type"] == "Ready" && x["status"] == "True")
        }))
    })?;
    let n = c.get("node", &node)?;
    assert_eq!(
        n["metadata"]["labels"]["kubernetes.io/hostname"],
        node.as_str()
    );
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert!(
        n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "192.168.64.10")
    );
    assert!(
        n["status"]["capacity"]["cpu"].is_string() && n["status"]["allocatable"]["pods"] == "110"
    );
    c.kubectl(&["get", "lease", "-n", "kube-node-lease", &node])?;

    c.apply("pods.yaml", PODS)?;
    c.apply("features.yaml", FEATURES)?;
    std::fs::write(c.node_dir().join("manifests/static-web.yaml"), STATIC)?;

    // web + sidecar: Running with an IP; the sidecar reaches web over localhost and sees its env.
    let web = wait_pod(&c, "web", 120, "Running and Ready with an IP", |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["podIP"].is_string()
            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
            })
    })?;
    let ip = web["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("10.244.1."), "pod IP {ip}");
    assert_eq!(web["status"]["hostIP"], "192.168.64.10");
    wait_for(
        Duration::from_secs(30),
        "sidecar log shows env and the web answer",
        || {
            let log = c.container_log("web", "sidecar");
            Ok(
                log.contains("stdout F GREETING=hello-from-cm PASSWORD=s3cret POD=web")
                    && log.contains("stdout F web"),
            )
        },
    )?;

    // Restart policies.
    let p = wait_pod(&c, "never-ok", 90, "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    assert_eq!(
        container_status(&p, "main").unwrap()["state"]["terminated"]["reason"],
        "Completed"
    );
    let p = wait_pod(&c, "never-fail", 90, "Failed", |p| {
        p["status"]["phase"] == "Failed"
    })?;
    let t = &container_status(&p, "main").unwrap()["state"]["terminated"];
    assert_eq!(
        (t["reason"].as_str(), t["exitCode"].as_i64()),
        (Some("Error"), Some(1))
    );
    let p = wait_pod(
        &c,
        "onfailure-ok",
        90,
        "Succeeded after its init container",
        |p| p["status"]["phase"] == "Succeeded",
    )?;
    assert_eq!(
        p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert!(
        c.container_log("onfailure-ok", "main")
            .contains("stdout F init")
    );
    let p = wait_pod(&c, "crashing", 90, "CrashLoopBackOff", |p| {
        container_status(p, "main").is_some_and(|s| {
            s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                && s["lastState"]["terminated"]["exitCode"] == 1
        })
    })?;
    assert_eq!(p["status"]["phase"], "Running");
    wait_pod(&c, "crashing", 60, "restarted after the back-off", |p| {
        container_status(p, "main").is_some_and(|s| s["restartCount"].as_i64() >= Some(1))
    })?;

    // A missing image.
    wait_pod(&c, "badimage", 60, "ErrImagePull", |p| {
        container_status(p, "main")
            .is_some_and(|s| s["state"]["waiting"]["reason"] == "ErrImagePull")
    })?;
    let p = wait_pod(&c, "badimage", 60, "ImagePullBackOff", |p| {
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

    let phases = (|| {
        probes(&c)?;
        lifecycle(&c)?;
        volumes_and_limits(&c)?;
        pull_policies(&c)?;
        static_pod(&c)?;
        kubelet_restart(&mut c)
    })();
    if phases.is_err() {
        // The lab and its logs go away with the guard: show the kubelet's last words first.
        let log = std::fs::read_to_string(c.lab.log_path("n1", "kubelet")?).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        eprintln!(
            "kubelet log tail:\n{}",
            lines[lines.len().saturating_sub(60)..].join("\n")
        );
        eprintln!(
            "kubelet warnings:\n{}",
            lines
                .iter()
                .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("static"))
                .take(40)
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    phases?;

    // Deleting frees everything.
    c.kubectl(&["delete", "pod", "--all", "--wait=false"])?;
    wait_for(Duration::from_secs(90), "all pods gone", || {
        Ok(c.kubectl(&["get", "pods", "-o", "name"])?.trim().is_empty())
    })?;
    wait_for(Duration::from_secs(30), "nothing left on the node", || {
        let left = leftovers(&c)?;
        if left.is_empty() {
            Ok(true)
        } else {
            bail!("{left:?}")
        }
    })?;
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

fn ready_condition(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|x| x["type"] == "Ready" && x["status"] == "True")
    })
}

/// Readiness over httpGet and tcpSocket, a startup probe, and a liveness restart.
fn probes(c: &Cluster) -> Result<()> {
    // The http container serves 404 for /ready for its first 10 s: the pod turns Ready only
    // after that (judged from the condition's transition time against the start).
    let p = wait_pod(
        c,
        "probes",
        90,
        "Ready once /ready answers 200",
        ready_condition,
    )?;
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
fn lifecycle(c: &Cluster) -> Result<()> {
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
    wait_pod(c, "lifecycle", 30, "Ready", ready_condition)?;
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
    c.apply("reader.yaml", READER)?;
    wait_pod(c, "hostpath-reader", 60, "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    wait_for(
        Duration::from_secs(10),
        "the new pod reads the old pod's hostPath data",
        || {
            Ok(c.container_log("hostpath-reader", "main")
                .contains("stdout F PRE-STOP"))
        },
    )?;
    Ok(())
}

/// The CPU time a container's cgroup used so far, in nanoseconds (cgroup v1 cpuacct).
fn cpu_usage(c: &Cluster, pod: &Value, container: &str) -> Result<u64> {
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
fn volumes_and_limits(c: &Cluster) -> Result<()> {
    wait_pod(c, "volumes", 60, "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    assert!(
        c.container_log("volumes", "main")
            .contains("stdout F CM=hello-from-cm SECRET=s3cret"),
        "{}",
        c.container_log("volumes", "main")
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

fn pull_policies(c: &Cluster) -> Result<()> {
    c.apply("pulls.yaml", PULLS)?;
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
fn static_pod(c: &Cluster) -> Result<()> {
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

/// A restarted kubelet adopts running containers; a stopped one lets the Node go NotReady.
fn kubelet_restart(c: &mut Cluster) -> Result<()> {
    let before = wait_pod(c, "web", 30, "Ready", ready_condition)?;
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
    c.lab.stop(c.kubelet)?;
    let lines = c.container_log("web", "sidecar").lines().count();
    c.start_kubelet()?;
    wait_for(
        Duration::from_secs(30),
        "kubelet log shows the adoption",
        || {
            Ok(std::fs::read_to_string(c.lab.log_path("n1", "kubelet")?)?
                .matches("adopted sandbox")
                .count()
                >= 1)
        },
    )?;
    wait_for(
        Duration::from_secs(30),
        "the sidecar log keeps growing across the restart",
        || Ok(c.container_log("web", "sidecar").lines().count() > lines + 2),
    )?;
    let after = wait_pod(
        c,
        "web",
        30,
        "Ready after the kubelet restart",
        ready_condition,
    )?;
    assert_eq!(
        ids(&after),
        ids(&before),
        "containers were replaced by the kubelet restart"
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
    let node = c.node();
    c.lab.stop(c.kubelet)?;
    wait_for(
        Duration::from_secs(60),
        "node NotReady after the kubelet stopped",
        || {
            let n = c.get("node", &node)?;
            Ok(n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|x| x["type"] == "Ready" && x["status"] != "True")
            }))
        },
    )?;
    c.start_kubelet()?;
    wait_for(Duration::from_secs(60), "node Ready again", || {
        let n = c.get("node", &node)?;
        Ok(n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|x| x["type"] == "Ready" && x["status"] == "True")
        }))
    })?;
    Ok(())
}

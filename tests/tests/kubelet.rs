//! The kubelet and its CRI runtime on a one-node lab: `ekube server` on n1 and `ekube kubelet`
//! (runtime in-process, runc under the node's cgroup) on the node, images from the lab
//! registry, and the CNI conflist written with a fixed per-node subnet. Everything is driven
//! with the real kubectl run inside the node's namespace (the root namespace never talks to
//! the underlay); container output is read from the CRI log files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ekube_lab::{CmdTemplate, Lab, LabConfig};
use ekube_tests::{ekube_bin, kubectl_bin, wait_for};
use serde_json::Value;

const LAB: &str = "ekkubelet";

const NODE_CMD: &str = "{ekube} kubelet --kubeconfig {kubeconfig} --hostname-override {node} \
    --node-ip {ip} --root-dir {dir}/data/kubelet --cgroup-root {cgroup} --cni-bin-dir {cnibin} \
    --cni-conf-dir {dir}/cni/net.d --pod-logs-dir {dir}/logs/pods --insecure-registry {registry}";

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
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec![self.kubectl.display().to_string(), "--kubeconfig".into(), self.kubeconfig.display().to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let out = self.lab.exec("n1", &argv)?;
        if !out.success() {
            bail!("kubectl {}: {}", args.join(" "), out.stderr);
        }
        Ok(out.stdout)
    }

    fn get(&self, kind: &str, name: &str) -> Result<Value> {
        Ok(serde_json::from_str(&self.kubectl(&["get", kind, name, "-o", "json"])?)?)
    }

    fn node_dir(&self) -> PathBuf {
        self.lab.host("n1").expect("n1").dir.clone()
    }

    /// The CRI log of a pod's container (first run), once it exists.
    fn container_log(&self, pod: &str, container: &str) -> String {
        let logs = self.node_dir().join("logs/pods");
        let Ok(entries) = std::fs::read_dir(&logs) else { return String::new() };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("default_{pod}_")))
            .map(|e| std::fs::read_to_string(e.path().join(container).join("0.log")).unwrap_or_default())
            .collect()
    }
}

fn start() -> Result<Cluster> {
    let ekube = ekube_bin();
    let cnibin = ekube.parent().unwrap().to_owned();
    assert!(cnibin.join("ekube-cni").exists(), "ekube-cni missing next to ekube: cargo build --bins");
    let mut config = LabConfig::new(LAB);
    config.nodes = 1;
    config.images = Some(PathBuf::from(ekube_lab::images::DEFAULT_LAYOUT));
    config.vars.insert("ekube".into(), ekube.display().to_string());
    config.vars.insert("cnibin".into(), cnibin.display().to_string());
    config.server = Some(CmdTemplate::parse(
        "{ekube} server --data-dir {dir}/data/server --bind-address {ip} --advertise-address {ip} --write-kubeconfig {kubeconfig}",
    ));
    config.node = Some(CmdTemplate::parse(NODE_CMD));
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
    Ok(Cluster { kubeconfig: lab.kubeconfig(), kubectl: kubectl_bin(), lab })
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"].as_array()?.iter().find(|c| c["name"] == name)
}

fn wait_pod(c: &Cluster, name: &str, secs: u64, what: &str, check: impl Fn(&Value) -> bool) -> Result<Value> {
    let mut last = Value::Null;
    let r = wait_for(Duration::from_secs(secs), &format!("pod {name}: {what}"), || {
        last = c.get("pod", name)?;
        Ok(check(&last))
    });
    r.with_context(|| format!("last status of {name}: {}", last["status"]))?;
    Ok(last)
}

fn leftovers(c: &Cluster) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let dir = c.node_dir();
    let runc = std::process::Command::new("runc").arg("--root").arg(dir.join("data/kubelet/runc")).args(["list", "-q"]).output()?;
    let ids = String::from_utf8_lossy(&runc.stdout).trim().to_owned();
    if !ids.is_empty() {
        left.push(format!("runc containers: {ids}"));
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| Path::new(m).starts_with(dir.join("data/kubelet"))).collect();
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
    let links = c.lab.exec("n1", &["ip", "-o", "link", "show", "type", "veth"])?.stdout;
    let veths: Vec<&str> = links.lines().filter(|l| !l.contains(" eth0@")).collect();
    if !veths.is_empty() {
        left.push(format!("veths: {veths:?}"));
    }
    Ok(left)
}

#[test]
fn pods_run_report_status_and_clean_up() -> Result<()> {
    let c = start()?;
    let node = c.lab.host("n1")?.netns.clone();
    wait_for(Duration::from_secs(60), "node registered and Ready", || {
        let n = c.get("node", &node)?;
        Ok(n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|x| x["type"] == "Ready" && x["status"] == "True")))
    })?;
    let n = c.get("node", &node)?;
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], node.as_str());
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert!(n["status"]["addresses"].as_array().unwrap().iter().any(|a| a["type"] == "InternalIP" && a["address"] == "192.168.64.10"));
    assert!(n["status"]["capacity"]["cpu"].is_string() && n["status"]["allocatable"]["pods"] == "110");
    c.kubectl(&["get", "lease", "-n", "kube-node-lease", &node])?;

    let manifest = c.node_dir().join("pods.yaml");
    std::fs::write(&manifest, PODS.replace("NODE", &node))?;
    c.kubectl(&["apply", "-f", &manifest.display().to_string()])?;

    // web + sidecar: Running with an IP; the sidecar reaches web over localhost and sees its env.
    let web = wait_pod(&c, "web", 120, "Running and Ready with an IP", |p| {
        p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string() && p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|x| x["type"] == "Ready" && x["status"] == "True"))
    })?;
    let ip = web["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("10.244.1."), "pod IP {ip}");
    assert_eq!(web["status"]["hostIP"], "192.168.64.10");
    wait_for(Duration::from_secs(30), "sidecar log shows env and the web answer", || {
        let log = c.container_log("web", "sidecar");
        Ok(log.contains("stdout F GREETING=hello-from-cm PASSWORD=s3cret POD=web") && log.contains("stdout F web"))
    })?;

    // Restart policies.
    let p = wait_pod(&c, "never-ok", 90, "Succeeded", |p| p["status"]["phase"] == "Succeeded")?;
    assert_eq!(container_status(&p, "main").unwrap()["state"]["terminated"]["reason"], "Completed");
    let p = wait_pod(&c, "never-fail", 90, "Failed", |p| p["status"]["phase"] == "Failed")?;
    let t = &container_status(&p, "main").unwrap()["state"]["terminated"];
    assert_eq!((t["reason"].as_str(), t["exitCode"].as_i64()), (Some("Error"), Some(1)));
    let p = wait_pod(&c, "onfailure-ok", 90, "Succeeded after its init container", |p| p["status"]["phase"] == "Succeeded")?;
    assert_eq!(p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    assert!(c.container_log("onfailure-ok", "main").contains("stdout F init"));
    let p = wait_pod(&c, "crashing", 90, "CrashLoopBackOff", |p| {
        container_status(p, "main").is_some_and(|s| s["state"]["waiting"]["reason"] == "CrashLoopBackOff" && s["lastState"]["terminated"]["exitCode"] == 1)
    })?;
    assert_eq!(p["status"]["phase"], "Running");
    wait_pod(&c, "crashing", 60, "restarted after the back-off", |p| container_status(p, "main").is_some_and(|s| s["restartCount"].as_i64() >= Some(1)))?;

    // A missing image.
    wait_pod(&c, "badimage", 60, "ErrImagePull", |p| container_status(p, "main").is_some_and(|s| s["state"]["waiting"]["reason"] == "ErrImagePull"))?;
    let p = wait_pod(&c, "badimage", 60, "ImagePullBackOff", |p| container_status(p, "main").is_some_and(|s| s["state"]["waiting"]["reason"] == "ImagePullBackOff"))?;
    assert_eq!(p["status"]["phase"], "Pending");
    let events = c.kubectl(&["get", "events", "-o", "json"])?;
    for reason in ["Pulling", "Pulled", "Created", "Started", "BackOff", "Failed"] {
        assert!(events.contains(&format!("\"reason\": \"{reason}\"")), "no {reason} event");
    }

    // Deleting frees everything.
    c.kubectl(&["delete", "pod", "--all", "--wait=false"])?;
    wait_for(Duration::from_secs(90), "all pods gone", || Ok(c.kubectl(&["get", "pods", "-o", "name"])?.trim().is_empty()))?;
    wait_for(Duration::from_secs(30), "nothing left on the node", || {
        let left = leftovers(&c)?;
        if left.is_empty() { Ok(true) } else { bail!("{left:?}") }
    })?;
    Ok(())
}

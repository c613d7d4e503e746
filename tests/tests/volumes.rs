//! Volumes keep to themselves, end to end on a one-node lab cluster: the apiserver refuses
//! paths that leave a volume; a subPath a container turned into a link to the host fails the
//! container instead of exposing the host; a container cannot plant links in a downwardAPI
//! volume that the kubelet's next write would follow; secret volumes are read-only tmpfs with
//! upstream's modes; hostPath volumes behave as on Kubernetes (a missing path is made, a
//! failed type check is a FailedMount event). At the end nothing of the pods stays mounted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ekube_tests::cluster::{ClusterOptions, LabCluster};
use ekube_tests::wait_for;
use serde_json::Value;

const LAB: &str = "ekvol";

const BUSYBOX: &str = "192.168.64.1:5000/busybox:latest";

/// Pods whose paths leave their volume, each with the field the apiserver must name.
const REFUSED: [(&str, &str); 2] = [
    (
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad-subpath"}, "spec": {
            "containers": [{"name": "c", "image": "BUSYBOX",
                "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "../.."}]}],
            "volumes": [{"name": "v", "emptyDir": {}}]}}"#,
        "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../..\": must not contain '..'",
    ),
    (
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad-item"}, "spec": {
            "containers": [{"name": "c", "image": "BUSYBOX"}],
            "volumes": [{"name": "v", "configMap": {"name": "settings",
                "items": [{"key": "greeting", "path": "../x"}]}}]}}"#,
        "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'",
    ),
];

/// The pods of the checks. `NODE`, `HOSTDIR` (a directory on the node that does not exist
/// yet), `ABSENT` (a file that does not exist) and `SENTINEL` (a host file no pod may change)
/// are filled in.
const PODS: &str = r#"
{apiVersion: v1, kind: ConfigMap, metadata: {name: settings}, data: {greeting: hello}}
---
{apiVersion: v1, kind: Secret, metadata: {name: creds}, stringData: {password: s3cret}}
---
apiVersion: v1
kind: Pod
metadata: {name: escape}
spec:
  nodeName: NODE
  initContainers:
  - name: plant
    image: BUSYBOX
    command: ["sh", "-c", "ln -s / /scratch/root && ln -s /etc /scratch/etc && mkdir /scratch/real && echo inside > /scratch/real/f"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  containers:
  - name: root
    image: BUSYBOX
    command: ["sh", "-c", "ls /host; sleep 3600"]
    volumeMounts: [{name: scratch, mountPath: /host, subPath: root}]
  - name: etc
    image: BUSYBOX
    command: ["sh", "-c", "cat /host/hostname; sleep 3600"]
    volumeMounts: [{name: scratch, mountPath: /host, subPath: etc}]
  - name: inside
    image: BUSYBOX
    command: ["sh", "-c", "cat /real/f; cat /cm/greeting; echo; ls /scratch/by-pod; sleep 3600"]
    env:
    - name: POD
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    volumeMounts:
    - {name: scratch, mountPath: /real, subPath: real}
    - {name: cm, mountPath: /cm/greeting, subPath: greeting}
    - {name: scratch, mountPath: /per-pod, subPathExpr: "by-pod/$(POD)"}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cm, configMap: {name: settings}}
---
apiVersion: v1
kind: Pod
metadata: {name: downward, labels: {tier: one}}
spec:
  nodeName: NODE
  containers:
  - name: main
    image: BUSYBOX
    command:
    - sh
    - -c
    - |
      for n in labels ..data ..data_tmp; do rm -rf /podinfo/$n; ln -sfn SENTINEL /podinfo/$n; done
      echo x > /podinfo/new
      echo tried
      sleep 3600
    volumeMounts: [{name: podinfo, mountPath: /podinfo}]
  volumes:
  - name: podinfo
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
---
apiVersion: v1
kind: Pod
metadata: {name: secrets}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - name: main
    image: BUSYBOX
    volumeMounts: [{name: sec, mountPath: /sec}, {name: sec400, mountPath: /sec400}]
    # Each mount's file mode, file system and first mount option, then a write attempt.
    args:
    - |
      for d in /sec /sec400; do
        echo $d $(stat -L -c %a $d/password) $(awk -v d=$d '$2 == d {print $3, substr($4, 1, 2)}' /proc/mounts)
      done
      touch /sec/x 2>/dev/null || echo read-only
    command: [sh, -c]
  volumes:
  - {name: sec, secret: {secretName: creds}}
  - {name: sec400, secret: {secretName: creds, defaultMode: 0400}}
---
apiVersion: v1
kind: Pod
metadata: {name: absent-file}
spec:
  nodeName: NODE
  containers:
  - {name: main, image: BUSYBOX, command: ["sleep", "3600"], volumeMounts: [{name: f, mountPath: /f}]}
  volumes:
  - {name: f, hostPath: {path: ABSENT, type: File}}
"#;

/// A pod that runs `script` with the node's `HOSTDIR` at `/data` (hostPath of type `""`).
const HOSTPATH: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - {name: main, image: BUSYBOX, command: ["sh", "-c", "SCRIPT"], volumeMounts: [{name: data, mountPath: /data}]}
  volumes:
  - {name: data, hostPath: {path: HOSTDIR}}
"#;

/// Paths on the node the checks use.
struct Paths {
    node: String,
    host_dir: PathBuf,
    absent: PathBuf,
    sentinel: PathBuf,
    kubelet: PathBuf,
}

impl Paths {
    fn new(c: &LabCluster) -> Result<Self> {
        let dir = c.lab.host("n1")?.dir.clone();
        Ok(Self {
            node: c.node_name("n1"),
            host_dir: dir.join("hostpath/mysql/data"),
            absent: dir.join("absent-file"),
            sentinel: dir.join("sentinel"),
            kubelet: dir.join("data/kubelet"),
        })
    }

    fn fill(&self, yaml: &str) -> String {
        yaml.replace("BUSYBOX", BUSYBOX)
            .replace("NODE", &self.node)
            .replace("HOSTDIR", &self.host_dir.display().to_string())
            .replace("ABSENT", &self.absent.display().to_string())
            .replace("SENTINEL", &self.sentinel.display().to_string())
    }
}

fn container_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

fn waiting_reason(pod: &Value, name: &str) -> String {
    container_status(pod, name)
        .and_then(|s| s["state"]["waiting"]["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn volumes_keep_to_themselves() -> Result<()> {
    let c = LabCluster::start(
        LAB,
        1,
        ClusterOptions {
            no_dns: true,
            ..Default::default()
        },
    )?;
    let paths = Paths::new(&c)?;
    std::fs::write(&paths.sentinel, "host data\n")?;
    refused(&c, &paths)?;
    c.apply(&paths.fill(PODS))?;
    subpath_links(&c)?;
    downward_links(&c, &paths)?;
    secrets(&c)?;
    host_paths(&c, &paths)?;
    c.kubectl(&["delete", "pod", "--all", "--wait=false"])?;
    nothing_left(&c, &paths)
}

/// (a) Pods whose subPath or item path leaves the volume are refused with 422 naming the field.
fn refused(c: &LabCluster, paths: &Paths) -> Result<()> {
    for (pod, field) in REFUSED {
        let file = tempfile::Builder::new().suffix(".json").tempfile()?;
        std::fs::write(file.path(), paths.fill(pod))?;
        let out = c.run(&["create", "-f", &file.path().display().to_string(), "-v=6"])?;
        ensure!(!out.success(), "the apiserver accepted {pod}");
        ensure!(
            out.stderr.contains("422 Unprocessable Entity") && out.stderr.contains(field),
            "no 422 naming {field}: {}",
            out.stderr
        );
    }
    Ok(())
}

/// (b) Links a container planted in its emptyDir, used as subPaths: the containers that
/// would see the host's `/` and `/etc` fail to start with an error event; a subPath inside
/// the volume, a configMap key and a `subPathExpr` work.
fn subpath_links(c: &LabCluster) -> Result<()> {
    let pod = c.wait_pod("escape", Duration::from_secs(120), "links refused", |p| {
        waiting_reason(p, "root") == "CreateContainerConfigError"
            && waiting_reason(p, "etc") == "CreateContainerConfigError"
            && container_status(p, "inside").is_some_and(|s| s["state"]["running"].is_object())
    })?;
    for name in ["root", "etc"] {
        let s = container_status(&pod, name).context("status")?;
        ensure!(
            s["state"]["running"].is_null() && s["restartCount"] == 0,
            "{name} ran: {s}"
        );
    }
    let events = c.events_of("escape")?;
    for link in ["root", "etc"] {
        ensure!(
            events.iter().any(|(reason, m)| reason == "Failed"
                && m.contains("failed to prepare subPath for volumeMount \"scratch\"")
                && m.contains(&format!("subPath \"{link}\" resolves to"))
                && m.contains("outside the volume")),
            "no Failed event for the {link} link: {events:?}"
        );
    }
    let mut out = String::new();
    wait_for(
        Duration::from_secs(30),
        "the inside container's output",
        || {
            out = c.container_output(&c.get("pod", "escape")?, "inside")?;
            Ok(out.lines().count() >= 3)
        },
    )
    .with_context(|| format!("output: {out:?}"))?;
    ensure!(
        out.lines().collect::<Vec<_>>() == ["inside", "hello", "escape"],
        "inside container saw {out:?}"
    );
    Ok(())
}

/// (c) A container replacing the files and `..data` of its downwardAPI volume with links to a
/// host file: the volume is read-only, and the rewrite after a relabel changes no host file.
fn downward_links(c: &LabCluster, paths: &Paths) -> Result<()> {
    let before = std::fs::symlink_metadata(&paths.sentinel)?;
    c.wait_pod("downward", Duration::from_secs(90), "Running", |p| {
        p["status"]["phase"] == "Running"
    })?;
    let mut out = String::new();
    wait_for(Duration::from_secs(30), "the planting attempt", || {
        out = c.container_output(&c.get("pod", "downward")?, "main")?;
        Ok(out.contains("tried"))
    })?;
    ensure!(
        out.contains("Read-only file system"),
        "the downwardAPI volume was writable: {out}"
    );
    c.kubectl(&["label", "pod", "downward", "tier=two", "--overwrite"])?;
    let mut labels = String::new();
    wait_for(
        Duration::from_secs(30),
        "the relabel reaches the volume",
        || {
            labels = c.kubectl(&["exec", "downward", "--", "cat", "/podinfo/labels"])?;
            Ok(labels.contains("tier=\"two\""))
        },
    )
    .with_context(|| format!("labels file: {labels:?}"))?;
    let after = std::fs::symlink_metadata(&paths.sentinel)?;
    ensure!(
        after.is_file()
            && std::fs::read_to_string(&paths.sentinel)? == "host data\n"
            && after.modified()? == before.modified()?,
        "the host sentinel {} changed",
        paths.sentinel.display()
    );
    Ok(())
}

/// Secret volumes: tmpfs, read-only, files 0644 or `defaultMode`.
fn secrets(c: &LabCluster) -> Result<()> {
    c.wait_pod("secrets", Duration::from_secs(90), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    let out = c.container_output(&c.get("pod", "secrets")?, "main")?;
    ensure!(
        out.lines().collect::<Vec<_>>()
            == ["/sec 644 tmpfs ro", "/sec400 400 tmpfs ro", "read-only"],
        "secret volumes: {out:?}"
    );
    Ok(())
}

/// (d) A hostPath that does not exist is made; its data outlives the pod. A `type: File`
/// hostPath to a missing file keeps the pod from starting, with a FailedMount event.
fn host_paths(c: &LabCluster, paths: &Paths) -> Result<()> {
    ensure!(
        !paths.host_dir.exists(),
        "{} exists already",
        paths.host_dir.display()
    );
    let pod = |name: &str, script: &str| {
        paths
            .fill(HOSTPATH)
            .replace("NAME", name)
            .replace("SCRIPT", script)
    };
    c.apply(&pod("writer", "echo persisted > /data/table"))?;
    c.wait_pod("writer", Duration::from_secs(90), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    c.kubectl(&["delete", "pod", "writer"])?;
    c.apply(&pod("reader", "cat /data/table"))?;
    let reader = c.wait_pod("reader", Duration::from_secs(90), "Succeeded", |p| {
        p["status"]["phase"] == "Succeeded"
    })?;
    let out = c.container_output(&reader, "main")?;
    ensure!(out == "persisted\n", "reader read {out:?}");
    ensure!(paths.host_dir.join("table").is_file());

    let message = format!(
        "MountVolume.SetUp failed for volume \"f\" : hostPath type check failed: {} is not a file",
        paths.absent.display()
    );
    wait_for(Duration::from_secs(60), "a FailedMount event", || {
        Ok(c.events_of("absent-file")?
            .iter()
            .any(|(reason, m)| reason == "FailedMount" && *m == message))
    })
    .with_context(|| format!("events: {:?}", c.events_of("absent-file")))?;
    let p = c.get("pod", "absent-file")?;
    ensure!(
        p["status"]["phase"] == "Pending" && waiting_reason(&p, "main") == "ContainerCreating",
        "absent-file: {}",
        p["status"]
    );
    ensure!(!paths.absent.exists(), "a type File hostPath was created");
    Ok(())
}

/// Once the pods are gone nothing under the kubelet's pod directories stays mounted or left.
fn nothing_left(c: &LabCluster, paths: &Paths) -> Result<()> {
    wait_for(Duration::from_secs(90), "all pods gone", || {
        Ok(c.kubectl(&["get", "pods", "-o", "name"])?.trim().is_empty())
    })?;
    let pods = paths.kubelet.join("pods");
    let mut left = Vec::new();
    wait_for(
        Duration::from_secs(30),
        "pod directories unmounted and removed",
        || {
            left = mounts_under(&pods)?;
            left.extend(
                std::fs::read_dir(&pods)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
            Ok(left.is_empty())
        },
    )
    .with_context(|| format!("left: {left:?}"))?;
    ensure!(
        std::fs::read_to_string(&paths.sentinel)? == "host data\n",
        "the sentinel changed"
    );
    Ok(())
}

/// Mount points at or below `dir`.
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect())
}
